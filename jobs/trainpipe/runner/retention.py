"""Which earlier run folders of a pipeline to remove (`spec.keepRuns`), and removing them safely.

Called by `trainpipe report --keep-runs N` at the end of a successful cluster run, the one moment when
the current run is known good: the newest N run folders stay (the current one always), older ones go.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from pathlib import Path

RUN_MARKER = ".trainpipe"  # every run folder holds its stage records here; other folders are not runs


def runs_to_prune(runs: Sequence[tuple[str, float]], keep: int, current: str) -> list[str]:
    """Names of the runs to remove: all but the `keep` newest (by time), never `current` (pure)."""
    if keep < 1:
        raise ValueError(f"keep must be at least 1, got {keep}")
    newest_first = sorted(runs, key=lambda run: (-run[1], run[0]))
    kept = {current}
    for name, _ in newest_first:
        if len(kept) >= keep:
            break
        kept.add(name)
    return sorted(name for name, _ in runs if name not in kept)


def _last_written(run: Path) -> float:
    records = list((run / RUN_MARKER).rglob("*.json"))
    return max((p.stat().st_mtime for p in records), default=run.stat().st_mtime)


def prune_runs(pipeline_dir: Path, keep: int, current: Path) -> list[Path]:
    """Remove the run folders beyond the newest `keep`; returns what was removed.

    A folder is first renamed to a hidden name, then deleted: a crash half-way leaves a hidden folder
    that is never taken for a run (nor reused), never a run with half its files.
    """
    runs = [p for p in pipeline_dir.iterdir() if p.is_dir() and not p.name.startswith(".") and (p / RUN_MARKER).is_dir()]
    doomed = runs_to_prune([(p.name, _last_written(p)) for p in runs], keep, current.name)
    removed = []
    for name in doomed:
        folder = pipeline_dir / name
        hidden = pipeline_dir / f".{name}.removing-{os.getpid()}"
        folder.rename(hidden)
        shutil.rmtree(hidden)
        removed.append(folder)
    for leftover in pipeline_dir.glob(".*.removing-*"):  # from an earlier crash
        shutil.rmtree(leftover, ignore_errors=True)
    return removed
