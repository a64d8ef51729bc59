"""One unit of a stage, as one pod of an Indexed Job runs it: a select target, or a training unit (plan job × family).

Called by `trainpipe select --target T | --unit-index I` and `trainpipe train --family F [--unit-index I]`.
Each unit writes only its own outputs and its own record, so any number of them may run at once on one
volume; a unit already done with the same inputs returns at once, and `--reuse-dir` copies it from an
earlier run of the same inputs. A unit run alone produces what the same unit produces inside `trainpipe run`.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from trainpipe.contract.exitcodes import CommandFailure, ExitCode
from trainpipe.contract.names import Stage
from trainpipe.contract.records import StageRecord
from trainpipe.contract.selection import SelectionEntry
from trainpipe.io.stage_files import read_rankings
from trainpipe.runner import records
from trainpipe.runner.steps import (
    RunContext,
    StageOutcome,
    read_current_plan,
    select_targets,
    select_unit_key,
    selection_is_current,
    train_step,
    training_settings,
)
from trainpipe.training.units import UnitNotFoundError


@dataclass(frozen=True)
class UnitOutcome:
    stage: Stage
    index: int
    unit: str  # the target (select) or the unit id (training)
    status: str  # ran | cached (done here with the same inputs) | reused (copied from another run)
    seconds: float
    summary: dict  # camelCase, what the termination log reports


class UnitFailedError(RuntimeError, CommandFailure):
    """The unit's own work failed (a model raised, its worker died); a retry may succeed."""

    exit_code = ExitCode.UNIT_FAILED


def select_address(selected: Sequence[str], target: str | None, index: int | None) -> tuple[str, int]:
    """(target, index) of a select unit named by target or by index into the ranking's kept targets. Pure."""
    kept = ", ".join(selected) or "none"
    if target is not None:
        if target not in selected:
            raise UnitNotFoundError(f"target {target!r} is not among the {len(selected)} target(s) ranking kept for selection ({kept}); "
                                    "pick one of those, or rerun `trainpipe rank` with it included")
        return target, list(selected).index(target)
    if index is None:
        raise ValueError("a select unit needs a target or an index")
    if not 0 <= index < len(selected):
        raise UnitNotFoundError(f"ranking kept {len(selected)} target(s) for selection ({kept}), so there is no select unit {index}; "
                                f"pass an index below {len(selected)}, or rerun `trainpipe rank` if the Job was sized from another ranking")
    return selected[index], index


def select_unit(ctx: RunContext, target: str, force: bool = False) -> UnitOutcome:
    """Select features for one kept target: done here → at once; done by a sibling run → copied; else computed."""
    ranking = read_rankings(ctx.layout)
    target, index = select_address(ranking.selected, target, None)
    started = time.perf_counter()
    path = ctx.layout.select_unit_record(target)
    status = "ran"
    if not force and selection_is_current(ctx, target):
        status = "cached"
    elif not force and ctx.reuse_dir is not None and _reused_selection(ctx, ctx.reuse_dir, target) is not None:
        status = "reused"
    else:
        select_targets(ctx, ranking, [target])
    record = records.read_record_at(path)
    raw = record.summary if record is not None else _summary_from_stage(ctx, target)
    entry = SelectionEntry.model_validate(raw) if raw else None
    summary = {"stage": Stage.SELECT.value, "unitIndex": index, "target": target, "status": status,
               "features": entry.n_features if entry else None, "stability": entry.stability.value if entry else None}
    return UnitOutcome(Stage.SELECT, index, target, status, time.perf_counter() - started, summary)


def _reused_selection(ctx: RunContext, reuse_dir: Path, target: str) -> StageRecord | None:
    from trainpipe.runner.reuse import reuse_record

    return reuse_record(reuse_dir, ctx.layout, ctx.layout.select_unit_record(target), select_unit_key(ctx, target))


def _summary_from_stage(ctx: RunContext, target: str) -> dict:
    # Covered by a whole-stage select (no unit record of its own): the stage's summary has the target's entry.
    record = records.read_record(ctx.layout, Stage.SELECT.value)
    return (record.summary.get("targets", {}).get(target, {}) if record is not None else {})


def train_unit(ctx: RunContext, stage: Stage, family: str, index: int, force: bool = False) -> UnitOutcome:
    """Train unit `index` of `family` (`contract.units.family_units(plan, family)[index]`) against the plan `train` found (or was given)."""
    from trainpipe.training.stage import run_training_unit

    plan = read_current_plan(ctx)
    started = time.perf_counter()
    unit, record = run_training_unit(plan, stage.value, family, index, ctx.layout, training_settings(ctx, stage),
                                     plan_path=ctx.training_plan_path(), force=force)
    where = f"{stage.value} unit {unit.family}[{index}] ({unit.unit_id}: job {unit.job_id}, target {unit.target})"
    if record.status == "failed":
        raise UnitFailedError(f"{where} failed: {record.reason}; the error is in {ctx.layout.models_dir / unit.job_id / (unit.family + '.error.txt')}")
    status = {"trained": "ran", "skipped": "cached", "reused": "reused"}[record.status]
    summary = {"stage": stage.value, "family": unit.family, "unitIndex": index, "unit": unit.unit_id, "jobId": unit.job_id,
               "target": unit.target, "status": status, "device": record.device or None}
    return UnitOutcome(stage, index, unit.unit_id, status, time.perf_counter() - started, summary)


def train_family(ctx: RunContext, stage: Stage, family: str) -> StageOutcome:
    """Every unit of one family (`train --family F` without an index); like units, it writes no stage record."""
    started = time.perf_counter()
    summary = train_step(ctx, stage, family=family)
    return StageOutcome(stage, False, time.perf_counter() - started, summary)
