"""Which earlier run folders of a pipeline to remove (`spec.keepRuns`), and removing them safely.

Called by `trainpipe report --keep-runs N`, the last step of a cluster run, which the operator starts only
once every other stage succeeded: it records the run as succeeded, then prunes. The rules protect the
models a user may still be serving:
- `keepRuns` counts successful runs (the current one is one of them); a failed or unfinished run never
  pushes a good one out. Failed runs newer than the oldest kept success stay for debugging, at most
  `keepRuns` of them; older ones go.
- Pinned runs (`--pin`: the pipeline's `lastSucceededRun` and its `trainpipe.io/pin` annotation) stay.
- Nothing that started after the pruning run is touched: a run that superseded it may be writing there.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path

from trainpipe.contract.timestamps import stamp
from trainpipe.io.atomic import write_json

RUN_MARKER = ".trainpipe"  # every run folder holds its stage records here; other folders are not runs
SUCCEEDED = "succeeded.json"  # in RUN_MARKER: the run's last step finished after every stage succeeded
LEGACY_SUCCESS = "report.html"  # folders from before SUCCEEDED existed: the report only ran after a success
NO_EVIDENCE = "no_evidence.json"  # in RUN_MARKER: rank found no target with evidence of skill, so the run trained nothing


@dataclass(frozen=True)
class RunFolder:
    name: str
    started: float  # when it wrote its first stage record (epoch seconds)
    succeeded: bool


def runs_to_prune(runs: Sequence[RunFolder], keep: int, current: str, pinned: Collection[str] = ()) -> list[str]:
    """Names of the runs to remove under the rules above (pure); `current` is the run pruning, a success."""
    if keep < 1:
        raise ValueError(f"keep must be at least 1, got {keep}")
    this = next((r for r in runs if r.name == current), None)
    since = this.started if this is not None else float("inf")
    older = [r for r in runs if r.name != current and r.started < since]
    newest_first = sorted(older, key=lambda r: (-r.started, r.name))
    good = [r for r in newest_first if r.succeeded][: keep - 1]
    window_start = min((r.started for r in good), default=since)
    bad = [r for r in newest_first if not r.succeeded and r.started > window_start][:keep]
    kept = {current, *pinned, *(r.name for r in good), *(r.name for r in bad)}
    return sorted(r.name for r in older if r.name not in kept)


def mark_succeeded(run: Path) -> None:
    """Record that every stage of the run in `run` succeeded (what keepRuns counts)."""
    write_json(run / RUN_MARKER / SUCCEEDED, {"finishedAt": stamp()})


def mark_no_evidence(run: Path, why: str) -> None:
    """Record that the run ended after rank for want of evidence: its report exists, yet it is no succeeded run."""
    write_json(run / RUN_MARKER / NO_EVIDENCE, {"finishedAt": stamp(), "why": why})


def read_run_folder(run: Path) -> RunFolder:
    records = [p.stat().st_mtime for p in (run / RUN_MARKER).rglob("*.json")]
    legacy = (run / LEGACY_SUCCESS).exists() and not (run / RUN_MARKER / NO_EVIDENCE).exists()
    succeeded = (run / RUN_MARKER / SUCCEEDED).exists() or legacy
    return RunFolder(run.name, min(records, default=run.stat().st_mtime), succeeded)


def prune_runs(pipeline_dir: Path, keep: int, current: Path, pinned: Collection[str] = ()) -> list[Path]:
    """Remove the run folders the rules above let go; returns what was removed.

    A folder is first renamed to a hidden name, then deleted: a crash half-way leaves a hidden folder
    that is never taken for a run (nor reused), never a run with half its files.
    """
    runs = [p for p in pipeline_dir.iterdir() if p.is_dir() and not p.name.startswith(".") and (p / RUN_MARKER).is_dir()]
    doomed = runs_to_prune([read_run_folder(p) for p in runs], keep, current.name, pinned)
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
