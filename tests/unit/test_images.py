"""The job images install exactly the project's extras: jobs-cpu `.[cpu]` (no TensorFlow/Torch), jobs-gpu `.[cpu,gpu]`."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
HEAVY = ("tensorflow", "torch", "keras", "jax")


def _extras() -> dict[str, list[str]]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]


def _dist(requirement: str) -> str:
    return re.split(r"[\[<>=!~; ]", requirement, maxsplit=1)[0].lower()


def _pip_installs(dockerfile: Path) -> list[str]:
    """Arguments of every `pip install` in the Dockerfile (continuation lines joined)."""
    text = re.sub(r"\\\n", " ", dockerfile.read_text())
    args = []
    for line in text.splitlines():
        for match in re.finditer(r"pip3?\s+install\s+([^&|;]+)", line):
            args += [a.strip("'\"") for a in match.group(1).split() if not a.startswith("-")]
    return args


@pytest.mark.parametrize(("image", "extras"), [("jobs-cpu", {"cpu"}), ("jobs-gpu", {"cpu", "gpu"}), ("operator", {"operator"})])
def test_image_installs_the_project_extras(image: str, extras: set[str]) -> None:
    args = _pip_installs(ROOT / "images" / image / "Dockerfile")
    project = [a for a in args if a.startswith(".[")]
    assert len(project) == 1, f"{image}: expected one `pip install .[extras]`, found {args}"
    assert set(project[0][2:-1].split(",")) == extras
    declared = {_dist(r) for e in extras for r in _extras()[e]}
    stray = [a for a in args if not a.startswith(".") and _dist(a) not in declared]
    assert not stray, f"{image} installs packages outside its extras: {stray}; add them to pyproject's extras instead"


def test_cpu_image_and_extra_have_no_deep_learning_framework() -> None:
    assert not [r for r in _extras()["cpu"] if _dist(r).startswith(HEAVY)]
    text = (ROOT / "images" / "jobs-cpu" / "Dockerfile").read_text().lower()
    assert not [w for w in HEAVY if re.search(rf"install[^\n]*\b{w}", text)]
    assert "python:3.11" in text and "slim" in text


def test_gpu_image_uses_a_cuda_base_and_gpu_extras_carry_both_frameworks() -> None:
    assert all(stage.startswith("FROM nvidia/cuda:") for stage in _stages(ROOT / "images" / "jobs-gpu" / "Dockerfile"))
    gpu = {_dist(r) for r in _extras()["gpu"]}
    local = {_dist(r) for r in _extras()["gpu-local"]}
    assert {"tensorflow", "torch"} <= gpu and {"tensorflow-cpu", "torch"} <= local


@pytest.mark.parametrize("extra", ["cpu", "gpu", "gpu-local"])
def test_extras_have_lower_and_upper_bounds(extra: str) -> None:
    for requirement in _extras()[extra]:
        assert ">=" in requirement and "<" in requirement.replace("<=", ""), f"{extra}: {requirement} needs lower and upper bounds"


def _installed_closure(requirements: list[str]) -> set[str]:
    """Every distribution the requirements pull in, read from the installed packages' metadata."""
    from importlib import metadata

    from packaging.requirements import Requirement

    seen: set[str] = set()
    todo = [Requirement(r) for r in requirements]
    while todo:
        req = todo.pop()
        name = req.name.lower().replace("_", "-")
        if name in seen or (req.marker is not None and not req.marker.evaluate({"extra": ""})):
            continue
        seen.add(name)
        try:
            todo += [Requirement(r) for r in metadata.requires(req.name) or []]
        except metadata.PackageNotFoundError:
            continue
    return seen


def test_operator_image_pulls_in_no_deep_learning_framework_even_transitively() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    closure = _installed_closure(project["dependencies"] + _extras()["operator"])
    assert {"kopf", "kubernetes", "prometheus-client"} <= closure
    assert not [d for d in closure if d.startswith(HEAVY) or d in {"lightgbm", "xgboost", "catboost"}]
    text = (ROOT / "images" / "operator" / "Dockerfile").read_text()
    assert 'ENTRYPOINT ["trainpipe-operator"]' in text and "USER 10001" in text


IMAGES = ("jobs-cpu", "jobs-gpu", "operator")


def _stages(dockerfile: Path) -> list[str]:
    """The Dockerfile's stages as text, split at each FROM (build args substituted with their defaults)."""
    text = dockerfile.read_text()
    args = dict(re.findall(r"^ARG (\w+)=(\S+)", text, re.M))
    text = re.sub(r"\$\{(\w+)\}", lambda m: args.get(m.group(1), m.group(0)), text)
    return ["FROM" + part for part in re.split(r"^FROM", text, flags=re.M)[1:]]


@pytest.mark.parametrize("image", IMAGES)
def test_images_are_multi_stage_pinned_non_root_and_ship_no_build_tools(image: str) -> None:
    stages = _stages(ROOT / "images" / image / "Dockerfile")
    assert len(stages) >= 2, f"{image}: build the virtualenv in a build stage, copy it into the final one"
    for stage in stages:
        base = stage.split()[1]
        assert ":" in base and not base.endswith(":latest") and re.search(r":\d+\.\d+\.\d+", base), f"{image}: unpinned base {base}"
    final = stages[-1]
    assert re.search(r"^USER 10001$", final, re.M), f"{image}: the final stage must run as a non-root user"
    assert "COPY --from=build /opt/venv /opt/venv" in final
    assert not re.search(r"\b(gcc|g\+\+|build-essential|make|git)\b", final), f"{image}: build tools in the final stage"
    assert not re.search(r"pip3?\s+install", final), f"{image}: installs happen in the build stage only"
