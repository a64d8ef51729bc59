"""locks/*.txt (hack/lock.sh, `make lock`): every line pinned with hashes, each lock satisfying the pyproject
ranges of the extras it was compiled from, one version per package across all locks. Offline."""

from __future__ import annotations

import re
import shlex
import tomllib
from functools import cache
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[2]
LOCKS = ROOT / "locks"
LOCK_SCRIPT = ROOT / "hack" / "lock.sh"
HEAVY = {"tensorflow", "tensorflow-cpu", "torch", "keras", "jax"}
JOBS_ONLY = {"numpy", "pandas", "pyarrow", "scipy", "scikit-learn"}


def _entries(text: str) -> list[str]:
    """The requirement entries of a pip requirements file, continuation lines joined, comments dropped."""
    joined = re.sub(r"\\\n", " ", text)
    return [line.strip() for line in joined.splitlines() if line.strip() and not line.lstrip().startswith("#")]


@cache
def _pins(lock: str) -> dict[str, Version]:
    pins = {}
    for entry in _entries((LOCKS / lock).read_text()):
        requirement = entry.split(" --hash")[0].strip()
        name, _, version = requirement.partition("==")
        pins[canonicalize_name(name)] = Version(version)
    return pins


@cache
def _compiled() -> dict[str, list[str]]:
    """lock file -> the inputs hack/lock.sh compiles it from (its `compile locks/X.txt INPUT... --extra E` lines)."""
    out = {}
    for line in LOCK_SCRIPT.read_text().splitlines():
        if line.startswith("compile locks/"):
            words = shlex.split(line.split("${", 1)[0])
            out[Path(words[1]).name] = words[2:]
    return out


def _project() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def _requirements(extras: list[str]) -> list[Requirement]:
    """The direct requirements of the project with these extras, self-references (trainpipe[jobs]) expanded."""
    project = _project()["project"]
    requirements, todo, seen = [Requirement(r) for r in project["dependencies"]], list(extras), set()
    while todo:
        extra = todo.pop()
        if extra in seen:
            continue
        seen.add(extra)
        for requirement in map(Requirement, project["optional-dependencies"][extra]):
            if canonicalize_name(requirement.name) == "trainpipe":
                todo += sorted(requirement.extras)
            else:
                requirements.append(requirement)
    return requirements


LOCK_FILES = sorted(p.name for p in LOCKS.glob("*.txt"))


def test_lock_script_compiles_every_lock_and_nothing_else() -> None:
    assert sorted(_compiled()) == LOCK_FILES
    assert set(LOCK_FILES) == {"dev.txt", "jobs-cpu.txt", "jobs-gpu.txt", "operator.txt", "example-data.txt"}


@pytest.mark.parametrize("lock", LOCK_FILES)
def test_every_entry_is_pinned_with_hashes(lock: str) -> None:
    entries = _entries((LOCKS / lock).read_text())
    assert entries, f"locks/{lock} is empty"
    for entry in entries:
        requirement, *hashes = entry.split(" --hash=")
        assert re.fullmatch(r"[A-Za-z0-9._-]+==[A-Za-z0-9.+!-]+", requirement.strip()), f"locks/{lock}: not an exact pin: {entry[:80]}"
        assert hashes and all(re.fullmatch(r"sha256:[0-9a-f]{64}", h.strip()) for h in hashes), f"locks/{lock}: {requirement} lacks sha256 hashes"


@pytest.mark.parametrize("lock", LOCK_FILES)
def test_lock_comments_name_only_files_in_the_repository(lock: str) -> None:
    """`# via -r X` / `-c X` must point into the repository (a temporary seed file must not leak into a lock)."""
    for source in re.findall(r"#\s+(?:via\s+)?-[rc]\s+(\S+)", (LOCKS / lock).read_text()):
        assert (ROOT / source).is_file(), f"locks/{lock} names {source}, which is not a file in the repository"


@pytest.mark.parametrize("lock", [lock for lock in LOCK_FILES if lock != "example-data.txt"])
def test_lock_satisfies_the_pyproject_ranges_it_was_compiled_from(lock: str) -> None:
    args = _compiled()[lock]
    assert args[:2] == ["pyproject.toml", "locks/installer.in"], f"{lock}: compiled from {args}"
    extras = [args[i + 1] for i, a in enumerate(args) if a == "--extra"]
    requirements = _requirements(extras) + [Requirement(r) for r in _project()["build-system"]["requires"]]
    pins = _pins(lock)
    for requirement in requirements:
        name = canonicalize_name(requirement.name)
        assert name in pins, f"locks/{lock} lacks {name} (required by pyproject extras {extras})"
        assert requirement.specifier.contains(pins[name], prereleases=True), f"locks/{lock}: {name}=={pins[name]} outside {requirement}"


def test_installer_input_is_pyprojects_build_system_plus_pip() -> None:
    lines = [line for line in (LOCKS / "installer.in").read_text().splitlines() if line and not line.startswith("#")]
    assert lines[1:] == _project()["build-system"]["requires"], "locks/installer.in is stale: run `make lock`"
    assert canonicalize_name(Requirement(lines[0]).name) == "pip"


def test_shared_packages_have_one_version_in_every_lock() -> None:
    seen: dict[str, tuple[Version, str]] = {}
    for lock in LOCK_FILES:
        for name, version in _pins(lock).items():
            first = seen.setdefault(name, (version, lock))
            assert first[0] == version, f"{name}: {first[0]} in locks/{first[1]} but {version} in locks/{lock}"


def test_example_data_lock_is_the_pin_the_code_reads() -> None:
    pin = re.search(r'^PACKAGE_PIN = "(.+)"$', (ROOT / "jobs/trainpipe/data/example.py").read_text(), re.M)
    assert pin, "PACKAGE_PIN not found in jobs/trainpipe/data/example.py"
    name, version = pin.group(1).split("==")
    assert _pins("example-data.txt") == {canonicalize_name(name): Version(version)}


def test_image_locks_carry_only_what_their_image_needs() -> None:
    assert not HEAVY & set(_pins("operator.txt")) and not JOBS_ONLY & set(_pins("operator.txt")), "the operator image would install jobs packages"
    assert not HEAVY & set(_pins("jobs-cpu.txt")), "jobs-cpu would install a deep-learning framework"
    assert {"tensorflow", "torch"} <= set(_pins("jobs-gpu.txt")) and "tensorflow-cpu" not in _pins("jobs-gpu.txt")
    for lock in ("jobs-cpu.txt", "jobs-gpu.txt"):
        assert JOBS_ONLY <= set(_pins(lock)), f"locks/{lock} lacks the jobs extra"
