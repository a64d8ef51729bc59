"""spec.keepRuns: the newest runs stay, the current one always, older run folders go and nothing else is touched."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from trainpipe.runner.retention import prune_runs, runs_to_prune


@pytest.mark.parametrize(("runs", "keep", "current", "expected"), [
    ([("a", 1), ("b", 2), ("c", 3)], 2, "c", ["a"]),
    ([("a", 1), ("b", 2), ("c", 3)], 1, "c", ["a", "b"]),
    ([("a", 1), ("b", 2), ("c", 3)], 1, "a", ["b", "c"]),  # the current run stays even if it is not the newest
    ([("a", 1), ("b", 2)], 5, "b", []),
    ([], 3, "x", []),
])
def test_runs_to_prune(runs, keep, current, expected):
    assert runs_to_prune(runs, keep, current) == expected


def _run(root: Path, name: str, at: float) -> Path:
    folder = root / name
    (folder / ".trainpipe").mkdir(parents=True)
    record = folder / ".trainpipe" / "rank.json"
    record.write_text("{}")
    os.utime(record, (at, at))
    (folder / "models").mkdir()
    return folder


def test_report_keeps_the_newest_runs_and_leaves_other_folders_alone(tmp_path: Path):
    old, mid, new = (_run(tmp_path, n, t) for n, t in (("r-old", 100), ("r-mid", 200), ("r-new", 300)))
    (tmp_path / "notes").mkdir()  # not a run folder: never touched
    removed = prune_runs(tmp_path, 2, new)
    assert removed == [old] and not old.exists() and mid.exists() and new.exists() and (tmp_path / "notes").exists()
    assert not list(tmp_path.glob(".*removing*"))


def test_trainpipe_report_prunes_with_keep_runs(tmp_path: Path):
    for name, at in (("r1", 100), ("r2", 200), ("r3", 300)):
        _run(tmp_path, name, at)
    done = subprocess.run([sys.executable, "-m", "trainpipe.cli.main", "report", "--output-dir", str(tmp_path / "r3"),
                           "--reuse-dir", str(tmp_path), "--keep-runs", "1"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r3"]
    refused = subprocess.run([sys.executable, "-m", "trainpipe.cli.main", "report", "--output-dir", str(tmp_path / "r3"), "--keep-runs", "1"],
                             capture_output=True, text=True, timeout=120)
    assert refused.returncode == 2 and "--reuse-dir" in refused.stdout + refused.stderr
