"""A full volume: the stage command fails with NO_SPACE naming the file, leaves no temp file, and the run
folders already on the volume stay byte for byte; once space is freed the same command succeeds."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from panels import make_panel, write_panel
from trainpipe.cli.main import main
from trainpipe.contract.exitcodes import ExitCode

SPEC = json.dumps({"data": {"minRowsPerSymbol": 100}, "targets": {"topN": 2}, "features": {"topM": 3},
                   "ranking": {"folds": 2, "maxRows": 1000}, "training": {"families": ["lightgbm"]}, "seed": 7,
                   "evidence": {"trainAnyway": True}})  # a 300-bar panel is too short to show its signal clears noise


@pytest.fixture
def small_volume(tmp_path: Path) -> Iterator[Path]:
    """A 4 MiB tmpfs: a volume that really fills (the kernel answers ENOSPC)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root (CI runs as root)")
    mount = tmp_path / "volume"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=True)


def _rank(data: Path, out: Path, log: Path) -> int:
    return main(["rank", "--spec-json", SPEC, "--data-dir", str(data), "--output-dir", str(out), "--threads", "1", "--termination-log", str(log)])


def _fingerprint(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*")) if p.is_file()}


def _fill(volume: Path) -> Path:
    filler = volume / "filler"
    with open(filler, "wb") as handle:
        try:
            while True:
                handle.write(b"\0" * 65536)
                handle.flush()
        except OSError:
            pass
    return filler


def test_a_full_volume_fails_the_stage_cleanly_and_leaves_earlier_runs_intact(small_volume: Path, tmp_path: Path):
    data = tmp_path / "data"
    write_panel(make_panel(n_days=300), data)
    log = tmp_path / "termination-log"
    assert _rank(data, small_volume / "r-earlier", log) == 0
    earlier = _fingerprint(small_volume / "r-earlier")

    filler = _fill(small_volume)
    assert _rank(data, small_volume / "r-new", log) == ExitCode.NO_SPACE
    line = log.read_text().strip()
    assert line.startswith("rank: NO_SPACE: no space left on the volume writing "), line
    assert "enlarge the claim" in line
    assert _fingerprint(small_volume / "r-earlier") == earlier
    assert not [p for p in small_volume.rglob("*") if p.name.endswith(".tmp")], "no temp file is left behind"

    filler.unlink()
    assert _rank(data, small_volume / "r-new", log) == 0, log.read_text()
    assert (small_volume / "r-new" / "ranking" / "target_rankings.json").exists()
