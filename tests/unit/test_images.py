"""images/*/Dockerfile: each installs its lock with hashes and the project without dependencies (no other
package), is multi-stage, pinned and non-root, runs tini as PID 1 and carries the OCI labels; the extras
behind the locks keep TensorFlow/Torch out of jobs-cpu and numpy/pandas out of the operator."""

from __future__ import annotations

import fnmatch
import re
import shlex
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
HEAVY = ("tensorflow", "torch", "keras", "jax")
IMAGES = ("jobs-cpu", "jobs-gpu", "operator")
# image -> (the lock of its dependencies, the locks it installs with --no-deps)
LOCKS = {
    "operator": ("locks/operator.txt", set()),
    "jobs-cpu": ("locks/jobs-cpu.txt", {"locks/example-data.txt"}),
    "jobs-gpu": ("locks/jobs-gpu.txt", {"locks/example-data.txt"}),
}
ENTRYPOINTS = {
    "operator": '["tini", "--", "trainpipe-operator"]',
    "jobs-cpu": '["tini", "-g", "--", "trainpipe"]',
    "jobs-gpu": '["tini", "-g", "--", "trainpipe"]',
}
OCI_LABELS = {"title", "description", "source", "version", "revision"}


def _dockerfile(image: str) -> Path:
    return ROOT / "images" / image / "Dockerfile"


def _extras() -> dict[str, list[str]]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]


def _dist(requirement: str) -> str:
    return re.split(r"[\[<>=!~; ]", requirement, maxsplit=1)[0].lower()


def _pip_installs(dockerfile: Path) -> list[list[str]]:
    """The arguments of every `pip install` in the Dockerfile (continuation lines joined)."""
    text = re.sub(r"\\\n", " ", dockerfile.read_text())
    return [shlex.split(m.group(1)) for m in re.finditer(r"pip3?\s+install\s+([^&|;\n]+)", text)]


def _stages(dockerfile: Path) -> list[str]:
    """The Dockerfile's stages as text, split at each FROM (build args substituted with their defaults)."""
    text = dockerfile.read_text()
    args = dict(re.findall(r"^ARG (\w+)=(\S+)", text, re.M))
    text = re.sub(r"\$\{(\w+)\}", lambda m: args.get(m.group(1), m.group(0)), text)
    return ["FROM" + part for part in re.split(r"^FROM", text, flags=re.M)[1:]]


@pytest.mark.parametrize("image", IMAGES)
def test_image_installs_its_lock_with_hashes_and_the_project_without_dependencies(image: str) -> None:
    lock, no_deps = LOCKS[image]
    installs = _pip_installs(_dockerfile(image))
    from_locks = [args for args in installs if "-r" in args]
    assert {args[args.index("-r") + 1] for args in from_locks} == {lock} | no_deps, f"{image}: installs {from_locks}"
    for args in from_locks:
        assert "--require-hashes" in args, f"{image}: {args} without --require-hashes"
        assert ("--no-deps" in args) == (args[args.index("-r") + 1] in no_deps), f"{image}: {args}"
    project = [args for args in installs if "-r" not in args]
    assert project == [["--no-compile", "--no-deps", "--no-build-isolation", "--prefix", "/opt/project", "."]], \
        f"{image}: the project must be installed alone, without dependencies, under /opt/project: {project}"
    copied = re.search(r"^COPY (locks/.*) locks/$", _dockerfile(image).read_text(), re.M)
    assert copied and set(copied.group(1).split()) == {lock} | no_deps, f"{image}: the locks copied into the build differ from those installed"


@pytest.mark.parametrize("image", IMAGES)
def test_pip_settings_and_ca_come_as_secrets_never_as_build_arguments_or_layers(image: str) -> None:
    """The wheelhouse's address changes from run to run: as a build argument it would be part of the cache key."""
    text = re.sub(r"\\\n", " ", _dockerfile(image).read_text())
    lock_run = next(line for line in text.splitlines() if line.startswith("RUN") and "--require-hashes" in line)
    assert "--mount=type=secret,id=pip" in lock_run and "PIP_CONFIG_FILE=/run/secrets/pip" in lock_run
    assert "--mount=type=secret,id=ca" in lock_run and "PIP_CERT=/run/secrets/ca" in lock_run
    assert not re.search(r"^ARG PIP_", text, re.M) and "COPY" not in lock_run


def test_cpu_image_and_its_extras_have_no_deep_learning_framework() -> None:
    for extra in ("cpu", "jobs"):
        assert not [r for r in _extras()[extra] if _dist(r).startswith(HEAVY)], f"extra {extra} names a deep-learning framework"
    text = _dockerfile("jobs-cpu").read_text().lower()
    assert not [w for w in HEAVY if re.search(rf"install[^\n]*\b{w}", text)]
    assert "python:3.11" in text and "slim" in text


def test_gpu_image_uses_a_cuda_base_and_gpu_extras_carry_both_frameworks() -> None:
    assert all(stage.startswith(("FROM nvidia/cuda:", "FROM deps ")) for stage in _stages(_dockerfile("jobs-gpu")))
    gpu = {_dist(r) for r in _extras()["gpu"]}
    local = {_dist(r) for r in _extras()["gpu-local"]}
    assert {"tensorflow", "torch"} <= gpu and {"tensorflow-cpu", "torch"} <= local


def test_training_extras_pull_in_the_jobs_extra_and_the_operator_does_not() -> None:
    extras = _extras()
    for extra in ("cpu", "gpu", "gpu-local"):
        assert "trainpipe[jobs]" in extras[extra], f"extra {extra} must pull in trainpipe[jobs]"
    base = {_dist(r) for r in tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]}
    operator = {_dist(r) for r in extras["operator"]}
    assert not (base | operator) & {"numpy", "pandas", "pyarrow", "scipy", "scikit-learn"} and "trainpipe" not in operator


@pytest.mark.parametrize("extra", ["jobs", "cpu", "gpu", "gpu-local", "operator"])
def test_extras_have_lower_and_upper_bounds(extra: str) -> None:
    for requirement in _extras()[extra]:
        if _dist(requirement) == "trainpipe":
            continue  # a self-reference to another extra
        assert ">=" in requirement and "<" in requirement.replace("<=", ""), f"{extra}: {requirement} needs lower and upper bounds"


@pytest.mark.parametrize("image", IMAGES)
def test_images_are_multi_stage_pinned_non_root_and_ship_no_build_tools(image: str) -> None:
    stages = _stages(_dockerfile(image))
    names = {m.group(1) for s in stages if (m := re.match(r"FROM \S+ AS (\w+)", s))}
    assert {"deps", "project", "build"} <= names, f"{image}: stages deps (the locks), project, build (deps without pip) expected"
    for stage in stages:
        base = stage.split()[1]
        if base in names:
            continue  # a stage of this Dockerfile
        assert ":" in base and not base.endswith(":latest") and re.search(r":\d+\.\d+\.\d+", base), f"{image}: unpinned base {base}"
    build = next(s for s in stages if s.startswith("FROM deps AS build"))
    assert "pip uninstall -y pip setuptools wheel" in build
    final = stages[-1]
    assert re.search(r"^USER 10001$", final, re.M), f"{image}: the final stage must run as a non-root user"
    # The dependencies, then the project as a layer of its own: a code change ships only the second.
    copies = re.findall(r"^COPY --from=.*$", final, re.M)
    assert copies == ["COPY --from=build /opt/venv /opt/venv", "COPY --from=project /opt/project/ /opt/venv/"], copies
    assert not re.search(r"\b(gcc|g\+\+|build-essential|make|git)\b", final), f"{image}: build tools in the final stage"
    assert not re.search(r"pip3?\s+install", final), f"{image}: installs happen in the build stage only"


@pytest.mark.parametrize("image", IMAGES)
def test_tini_is_pid_1_and_installed_in_the_final_stage(image: str) -> None:
    final = _stages(_dockerfile(image))[-1]
    assert f"ENTRYPOINT {ENTRYPOINTS[image]}" in final
    assert re.search(r"apt-get install -y --no-install-recommends [^\n]*\btini\b", re.sub(r"\\\n", " ", final)), f"{image}: tini is not installed"


@pytest.mark.parametrize("image", IMAGES)
def test_final_stage_carries_the_oci_labels_from_build_arguments(image: str) -> None:
    final = re.sub(r"\\\n", " ", _stages(_dockerfile(image))[-1])
    labels = dict(re.findall(r'org\.opencontainers\.image\.(\w+)="([^"]*)"', final))
    assert set(labels) == OCI_LABELS
    assert labels["title"] == f"trainpipe-{image}"
    for label, arg in (("version", "VERSION"), ("revision", "REVISION"), ("source", "SOURCE")):
        assert labels[label] == f"${{{arg}}}" and re.search(rf"^ARG {arg}=?$", final, re.M), f"{image}: label {label} must come from ARG {arg}"
    script = (ROOT / "hack" / "images.sh").read_text()
    assert all(f'--build-arg "{arg}=${arg}"' in script for arg in ("VERSION", "REVISION", "SOURCE"))


def _ignored(path: str, patterns: list[str]) -> bool:
    """Docker's .dockerignore rule for a path: the last matching pattern wins (directories match their contents)."""
    ignored = False
    for pattern in patterns:
        negate, pattern = pattern.startswith("!"), pattern.lstrip("!").rstrip("/")
        parts = path.split("/")
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        glob = pattern.replace("**/", "*")
        if any(fnmatch.fnmatchcase(p, pattern) or fnmatch.fnmatchcase(p, glob) for p in prefixes):
            ignored = not negate
    return ignored


def test_build_context_holds_what_the_dockerfiles_copy_and_nothing_heavy() -> None:
    patterns = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines() if line.strip() and not line.startswith("#")]
    for image in IMAGES:
        for sources in re.findall(r"^COPY (?!--from)(.+) \S+$", _dockerfile(image).read_text(), re.M):
            for source in sources.split():
                assert not _ignored(source, patterns), f"{image} copies {source}, which .dockerignore leaves out"
    for heavy in (".venv/bin/python", ".cache/images/x", "data/example/x.parquet", "out/demo/report.html", ".git/HEAD", "jobs/trainpipe/__pycache__/x.pyc"):
        assert _ignored(heavy, patterns), f".dockerignore lets {heavy} into the build context"
