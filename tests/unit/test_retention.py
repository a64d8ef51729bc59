"""spec.keepRuns: successful runs are what it counts; a failed, pinned, last-good or newer run never makes a
good one go, and nothing but run folders is touched."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from trainpipe.runner.retention import RunFolder, mark_succeeded, prune_runs, runs_to_prune


def _folders(text: str) -> list[RunFolder]:
    """"S1 F1 F2 S2": runs in the order they started, S succeeded and F failed (or never finished)."""
    return [RunFolder(name, float(i), name.startswith("S")) for i, name in enumerate(text.split())]


@pytest.mark.parametrize(("runs", "keep", "current", "pinned", "expected"), [
    # keepRuns counts successes: the failed runs in between never push S1 out.
    ("S1 F1 F2 S2", 2, "S2", (), []),
    ("S0 S1 F1 F2 S2", 2, "S2", (), ["S0"]),
    ("S1 F1 F2 S2", 1, "S2", (), ["F1", "F2", "S1"]),
    # Failed runs newer than the oldest kept success stay, at most keepRuns of them, newest first.
    ("S1 F1 F2 F3 S2", 2, "S2", (), ["F1"]),
    ("F0 S1 F1 S2", 2, "S2", (), ["F0"]),
    # Pinned runs (and lastSucceededRun, which the operator passes as a pin) stay.
    ("S0 S1 S2 S3", 1, "S3", ("S0",), ["S1", "S2"]),
    # Nothing that started after the pruning run is touched: the run that superseded it may be writing there.
    ("S1 S2 F3", 1, "S2", (), ["S1"]),
    ("S1 S2 S3", 1, "S1", (), []),
    ("", 3, "S9", (), []),
])
def test_runs_to_prune(runs: str, keep: int, current: str, pinned: tuple[str, ...], expected: list[str]):
    assert runs_to_prune(_folders(runs), keep, current, pinned) == expected


def test_keep_must_be_at_least_one():
    with pytest.raises(ValueError, match="at least 1"):
        runs_to_prune(_folders("S1"), 0, "S1")


def _run(root: Path, name: str, at: float, succeeded: bool = True) -> Path:
    folder = root / name
    (folder / ".trainpipe").mkdir(parents=True)
    record = folder / ".trainpipe" / "rank.json"
    record.write_text("{}")
    os.utime(record, (at, at))
    (folder / "models").mkdir()
    if succeeded:
        mark_succeeded(folder)
    return folder


def test_report_keeps_the_newest_successful_runs_and_leaves_other_folders_alone(tmp_path: Path):
    old, mid, failed, new = (_run(tmp_path, n, t, ok) for n, t, ok in (("r-old", 100, True), ("r-mid", 200, True), ("r-bad", 250, False),
                                                                        ("r-new", 300, True)))
    (tmp_path / "notes").mkdir()  # not a run folder: never touched
    removed = prune_runs(tmp_path, 2, new)
    assert removed == [old] and not old.exists() and mid.exists() and failed.exists() and new.exists() and (tmp_path / "notes").exists()
    assert not list(tmp_path.glob(".*removing*"))


def test_a_folder_from_before_the_success_record_counts_as_successful_when_it_has_its_report(tmp_path: Path):
    unfinished, legacy = _run(tmp_path, "r-unfinished", 50, False), _run(tmp_path, "r-legacy", 100, False)
    (legacy / "report.html").write_text("<html></html>")
    new = _run(tmp_path, "r-new", 300)
    assert prune_runs(tmp_path, 2, new) == [unfinished]
    assert legacy.exists()


def _report(tmp_path: Path, current: str, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "trainpipe.cli.main", "report", "--output-dir", str(tmp_path / current), *extra],
                          capture_output=True, text=True, timeout=120)


def test_trainpipe_report_records_the_run_as_succeeded_then_prunes_with_keep_runs(tmp_path: Path):
    for name, at, ok in (("r0", 50, True), ("r1", 100, True), ("r2", 200, False), ("r3", 300, False)):
        _run(tmp_path, name, at, ok)
    done = _report(tmp_path, "r3", "--reuse-dir", str(tmp_path), "--keep-runs", "1", "--pin", "r0")
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r0", "r3"], "r0 is pinned; r1 (older success) and r2 (failed) go"
    assert (tmp_path / "r3" / ".trainpipe" / "succeeded.json").exists()
    refused = _report(tmp_path, "r3", "--keep-runs", "1")
    assert refused.returncode == 2 and "--reuse-dir" in refused.stdout + refused.stderr
