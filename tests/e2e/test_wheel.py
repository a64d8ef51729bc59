"""The wheel and sdist a user installs without a checkout: what they hold, their metadata, and docs/install.md's
"Without a checkout" commands run as written in a fresh virtualenv, outside the checkout, with no index.

Both are built once per session as `make dist` builds them (`python -m build`: the sdist, then the wheel
from the sdist), from a copy of the files git knows, so the checkout's build/ and egg-info cannot leak in.
pip installs from the project's wheelhouse at the versions the locks pin: it is pointed there through
its own environment variables, as PIP_INDEX_URL would point a user's pip at their index.
"""

from __future__ import annotations

import email.parser
import fnmatch
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import time
import tomllib
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "install.md"
DOC_SECTION = "## Without a checkout"
PACKAGES = {"trainpipe": ROOT / "jobs" / "trainpipe", "trainpipe_operator": ROOT / "operator" / "trainpipe_operator"}
# Files inside the package folders that are documentation for readers of the source, not used at run time.
NOT_SHIPPED = {"README.md"}
# The roles a user installs (docs/install.md): each extra and what it must bring.
ROLE_DISTS = {
    "jobs": {"numpy", "pandas", "pyarrow", "scikit-learn", "rich"},
    "cpu": {"pandas", "lightgbm", "xgboost", "catboost", "mlflow-skinny"},
    "gpu": {"pandas", "tensorflow", "torch", "mlflow-skinny"},
    "operator": {"kopf", "kubernetes", "prometheus-client", "aiohttp"},
}


@dataclass(frozen=True)
class Dist:
    wheel: Path
    sdist: Path
    source: Path  # the copy of the checkout they were built from


def _build(*args: str | Path, cwd: Path) -> None:
    out = subprocess.run([sys.executable, "-m", "build", "--no-isolation", *map(str, args)], cwd=cwd, capture_output=True, text=True,
                         timeout=600, check=False)
    assert out.returncode == 0, f"python -m build {' '.join(map(str, args))} failed:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"


@pytest.fixture(scope="session")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Dist:
    source = tmp_path_factory.mktemp("source")
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT, capture_output=True,
                            check=True).stdout.decode().split("\0")
    for name in filter(None, listed):
        if (ROOT / name).is_file():  # a tracked file deleted in the working tree is not part of it
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, source / name)
    out = tmp_path_factory.mktemp("dist")
    _build("--outdir", out, source, cwd=source)
    [wheel], [sdist] = sorted(out.glob("*.whl")), sorted(out.glob("*.tar.gz"))
    return Dist(wheel=wheel, sdist=sdist, source=source)


def _wheel_files(wheel: Path) -> dict[str, str]:
    """Every file of a wheel and the sha256 of its contents."""
    with zipfile.ZipFile(wheel) as z:
        return {n: hashlib.sha256(z.read(n)).hexdigest() for n in z.namelist() if not n.endswith("/")}


def _metadata(wheel: Path) -> email.message.Message:
    with zipfile.ZipFile(wheel) as z:
        [name] = [n for n in z.namelist() if n.endswith(".dist-info/METADATA")]
        return email.parser.Parser().parsestr(z.read(name).decode())


def _project() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_wheel_and_sdist_pass_twine_strict(dist: Dist) -> None:
    out = subprocess.run([sys.executable, "-m", "twine", "check", "--strict", str(dist.wheel), str(dist.sdist)], capture_output=True,
                         text=True, timeout=120, check=False)
    assert out.returncode == 0, out.stdout + out.stderr


def test_wheel_holds_every_file_the_packages_have_and_nothing_else(dist: Dist) -> None:
    patterns = [p for ps in _project()["tool"]["setuptools"]["package-data"].values() for p in ps]
    tracked = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", *map(str, PACKAGES.values())], cwd=ROOT,
                             capture_output=True, text=True, check=True).stdout.split()
    expected = set()
    for name in tracked:
        path = ROOT / name
        if not path.is_file():
            continue
        package = next(p for p, folder in PACKAGES.items() if folder in path.parents)
        inside = (PurePosixPath(package) / path.relative_to(PACKAGES[package])).as_posix()
        if path.suffix == ".py" or any(fnmatch.fnmatch(path.name, p) for p in patterns):
            expected.add(inside)
        else:
            assert path.name in NOT_SHIPPED, (f"{name}: a file in a package that the wheel would not ship; add its pattern to "
                                              "[tool.setuptools.package-data] in pyproject.toml, or move it out of the package")
    files = set(_wheel_files(dist.wheel))
    version = _metadata(dist.wheel)["Version"]
    info = {n for n in files if n.startswith(f"trainpipe-{version}.dist-info/")}
    assert files - info == expected, f"missing: {sorted(expected - files)}; unexpected: {sorted(files - info - expected)}"
    assert {PurePosixPath(n).name for n in info} == {"METADATA", "WHEEL", "RECORD", "entry_points.txt", "top_level.txt"}
    with zipfile.ZipFile(dist.wheel) as z:
        entry_points = z.read(f"trainpipe-{version}.dist-info/entry_points.txt").decode()
        top_level = z.read(f"trainpipe-{version}.dist-info/top_level.txt").decode().split()
    assert "trainpipe = trainpipe.cli.main:main" in entry_points and "trainpipe-operator = trainpipe_operator.main:main" in entry_points
    assert sorted(top_level) == sorted(PACKAGES)


def _extra_closure(meta: email.message.Message) -> dict[str, set[str]]:
    """extra -> the distributions it installs beyond the base, following `trainpipe[other]` to the other extras."""
    direct: dict[str, set[str]] = {e: set() for e in meta.get_all("Provides-Extra")}
    for requirement in meta.get_all("Requires-Dist"):
        m = re.match(r'^([A-Za-z0-9._-]+)(\[[^]]*\])?.*; extra == "([^"]+)"$', requirement)
        if m:
            direct[m.group(3)].add(m.group(1).lower() + (m.group(2) or ""))
    def expand(extra: str) -> set[str]:
        names = set()
        for name in direct[extra]:
            if name.startswith("trainpipe["):
                names |= expand(name[len("trainpipe["):-1])
            else:
                names.add(re.sub(r"\[.*", "", name))
        return names
    return {extra: expand(extra) for extra in direct}


def test_metadata_names_each_role_and_one_version_everywhere(dist: Dist) -> None:
    meta = _metadata(dist.wheel)
    closure = _extra_closure(meta)
    for extra, needs in ROLE_DISTS.items():
        assert needs <= closure.get(extra, set()), f"pip install 'trainpipe[{extra}]' does not install {sorted(needs - closure.get(extra, set()))}"
    assert not closure["operator"] & {"numpy", "pandas", "pyarrow"}, "the operator's role installs the jobs' data stack"
    assert meta["License-Expression"] == "Apache-2.0" and meta["Requires-Python"]
    chart = yaml.safe_load((ROOT / "helm" / "trainpipe" / "Chart.yaml").read_text())
    init = re.search(r'^__version__ = "(.+)"$', (ROOT / "jobs" / "trainpipe" / "__init__.py").read_text(), re.M)
    assert init and meta["Version"] == init.group(1) == chart["appVersion"], \
        "the wheel's version, trainpipe.__version__ and the chart's appVersion (the images' tag) must agree"
    assert dist.wheel.name == f"trainpipe-{meta['Version']}-py3-none-any.whl"


@pytest.mark.parametrize(("extra", "lock"), [("cpu", "locks/jobs-cpu.txt"), ("operator", "locks/operator.txt")])
def test_each_role_resolves_from_the_wheel_to_what_its_image_installs(dist: Dist, extra: str, lock: str, tmp_path: Path) -> None:
    """`pip install './trainpipe-<version>-py3-none-any.whl[cpu]'` (or `[operator]`): pip's own resolution (a dry run, from the
    wheelhouse at the locked versions) installs nothing the role's image lacks. ([gpu]'s CUDA wheels are in
    the wheelhouse only once `make images` built jobs-gpu.)"""
    report = tmp_path / "report.json"
    out = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--dry-run", "--ignore-installed", "--report", str(report),
                          "--no-index", "--find-links", str(_wheelhouse()), "--constraint", str(_pins(tmp_path)),
                          # The wheel file itself, as docs/install.md installs it without an index.
                          f"./{dist.wheel.name}[{extra}]"], cwd=dist.wheel.parent, capture_output=True, text=True, timeout=300, check=False)
    assert out.returncode == 0, f"pip cannot resolve trainpipe[{extra}] from the wheel:\n{out.stderr[-3000:]}"
    canonical = lambda name: re.sub(r"[-_.]+", "-", name).lower()  # noqa: E731
    resolved = {canonical(item["metadata"]["name"]) for item in json.loads(report.read_text())["install"]} - {"trainpipe"}
    locked = {canonical(name) for name in re.findall(r"^([A-Za-z0-9._-]+)==", (ROOT / lock).read_text(), re.M)}
    assert resolved and resolved <= locked, f"trainpipe[{extra}] installs what {lock} lacks: {sorted(resolved - locked)}"
    assert {canonical(d) for d in ROLE_DISTS[extra]} <= resolved


def test_the_sdist_builds_the_same_wheel_as_the_checkout(dist: Dist, tmp_path: Path) -> None:
    _build("--wheel", "--outdir", tmp_path, dist.source, cwd=dist.source)
    [direct] = tmp_path.glob("*.whl")
    assert _wheel_files(direct) == _wheel_files(dist.wheel), "the wheel built from the sdist differs from the one built from the checkout"


def test_the_images_copy_what_the_sdist_holds(dist: Dist) -> None:
    """The images install the project with `pip install .` from the files they COPY: those must be the sdist's."""
    with tarfile.open(dist.sdist) as tar:
        top = {PurePosixPath(m.name).parts[1] for m in tar.getmembers() if len(PurePosixPath(m.name).parts) > 1}
    generated = {"PKG-INFO", "setup.cfg"} | {t for t in top if t.endswith(".egg-info")}
    sources = top - generated
    for dockerfile in sorted((ROOT / "images").glob("*/Dockerfile")):
        project = re.split(r"^FROM ", dockerfile.read_text(), flags=re.M)
        stage = next(s for s in project if s.startswith("deps AS project"))
        copied = {PurePosixPath(src).parts[0] for line in re.findall(r"^COPY (.+)$", stage, re.M) for src in line.split()[:-1]}
        assert copied == sources, f"{dockerfile.relative_to(ROOT)} copies {sorted(copied)}; the sdist holds {sorted(sources)}"


# -- docs/install.md, "Without a checkout", run as written ------------------------------------------------
def doc_section_blocks(heading: str = DOC_SECTION) -> list[str]:
    """The ```sh blocks under one `## ` heading of docs/install.md."""
    text = DOC.read_text()
    start = text.index(f"\n{heading}\n")
    end = text.find("\n## ", start + 1)
    return re.findall(r"^```sh\n(.*?)^```$", text[start:end if end > 0 else None], flags=re.M | re.S)


def _wheelhouse() -> Path:
    cache = Path(os.environ.get("TRAINPIPE_CACHE", Path.home() / ".cache" / "trainpipe"))
    wheels = Path(os.environ.get("TRAINPIPE_WHEELS", cache / "wheels"))
    if not (wheels.is_dir() and any(wheels.glob("*.whl"))):
        pytest.fail(f"{wheels}: no wheelhouse; `make install` fills it (hack/wheels.sh)", pytrace=False)
    return wheels


def _pins(tmp: Path) -> Path:
    """The locks' versions as a constraints file (without their hashes: pip's hash mode would also want one for
    the unhashed `trainpipe[jobs]==…` the doc installs)."""
    pins = []
    for lock in ("locks/dev.txt", "locks/example-data.txt"):
        pins += re.findall(r"^([A-Za-z0-9._-]+==[^\s\\]+)", (ROOT / lock).read_text(), re.M)
    path = tmp / "constraints.txt"
    path.write_text("\n".join(pins) + "\n")
    return path


def test_install_docs_without_a_checkout_run_the_example_from_the_wheel(dist: Dist, tmp_path: Path) -> None:
    [block] = doc_section_blocks()
    version = _metadata(dist.wheel)["Version"]
    assert f"'trainpipe[jobs]=={version}'" in block, f"the doc installs another version than the wheel's ({version})"
    # The interpreter the user has: `python3` is this Python's own (not this virtualenv's) and nothing else
    # of the checkout's virtualenv is on PATH.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "python3").symlink_to(getattr(sys, "_base_executable", sys.executable))
    home = tmp_path / "home"  # outside the checkout: nothing there is importable by accident
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "PYTHON", "VIRTUAL_ENV"))}
    env |= {
        "PATH": f"{bin_dir}{os.pathsep}/usr/bin{os.pathsep}/bin", "HOME": str(home), "PIP_NO_INDEX": "1",
        "PIP_FIND_LINKS": f"{dist.wheel.parent} {_wheelhouse()}", "PIP_CONSTRAINT": str(_pins(tmp_path)),
        # No bytecode (half the install's CPU time). PIP_COMPILE=0, not PIP_NO_COMPILE=1: pip gives an environment
        # variable's value to the flag's destination as it is, and `--no-compile`'s destination is `compile`.
        "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_COMPILE": "0", "PIP_PROGRESS_BAR": "off",
    }
    start = time.monotonic()
    out = subprocess.run(["bash", "-euo", "pipefail", "-c", block], cwd=home, env=env, capture_output=True, text=True, timeout=600,
                         check=False)
    took = time.monotonic() - start
    assert out.returncode == 0, f"docs/install.md ({DOC_SECTION}) failed (rc {out.returncode}) after {took:.0f}s:\n{block}\n" \
                                f"--- stdout\n{out.stdout[-3000:]}\n--- stderr\n{out.stderr[-5000:]}"
    assert f"trainpipe {version}" in out.stdout.splitlines()
    data = home / "data" / "example"
    assert sorted(p.name for p in data.glob("symbol=*")) == [f"symbol={s}" for s in ("AAPL", "AMZN", "GOOG", "META", "NFLX", "NVDA")]
    assert all((p / f"{p.name.split('=')[1]}.parquet").stat().st_size > 100_000 for p in data.glob("symbol=*"))
    assert (data / "dataset.json").is_file()
    # The CLI ran from the wheel's files in the new virtualenv, not from the checkout.
    venv = next(home.glob("*/pyvenv.cfg")).parent
    where = subprocess.run([str(venv / "bin" / "python"), "-c", "import trainpipe, trainpipe_operator; print(trainpipe.__file__)"],
                           cwd=home, env=env, capture_output=True, text=True, timeout=60, check=True).stdout
    assert where.startswith(str(venv)) and str(ROOT) not in where, where
    print(f"\ndocs/install.md ({DOC_SECTION}): fresh virtualenv, wheel + [jobs] + example data, in {took:.1f}s")
