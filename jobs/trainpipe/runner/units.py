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
from trainpipe.contract.outcomes import Outcome
from trainpipe.contract.records import StageRecord
from trainpipe.contract.reports import SelectUnitReport, TrainUnitReport
from trainpipe.contract.selection import SelectionEntry
from trainpipe.contract.summaries import SelectStageSummary
from trainpipe.io.atomic import remove_stale
from trainpipe.io.stage_files import read_rankings
from trainpipe.runner import records
from trainpipe.runner.steps import (
    RunContext,
    StageOutcome,
    read_current_plan,
    recorded_summary,
    refresh_previous,
    select_targets,
    select_unit_key,
    selection_is_current,
    selection_outputs,
    train_step,
    training_settings,
)
from trainpipe.training.units import UnitNotFoundError


@dataclass(frozen=True)
class UnitOutcome:
    stage: Stage
    index: int
    unit: str  # the target (select) or the unit id (training)
    outcome: Outcome  # ran | cached (done here with the same inputs) | reused (copied from another run)
    seconds: float
    report: SelectUnitReport | TrainUnitReport  # what the termination log reports


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
    # Only this target's pod writes these; a try of it that was killed mid-write left at most their temps.
    for output in (*(ctx.layout.root / p for p in selection_outputs(ctx.layout, target)), ctx.layout.select_unit_record(target)):
        remove_stale(output)
    started = time.perf_counter()
    outcome = Outcome.RAN
    if not force and selection_is_current(ctx, target):
        outcome = Outcome.CACHED
    elif not force and ctx.reuse_dir is not None and _reused_selection(ctx, ctx.reuse_dir, target) is not None:
        outcome = Outcome.REUSED
    else:
        select_targets(ctx, ranking, [target])
    if outcome is not Outcome.RAN:
        refresh_previous(ctx, target)  # the selection's key leaves the previous run out: compare with this run's
    entry = _selection_entry(ctx, target)
    report = SelectUnitReport(unit_index=index, target=target, status=outcome, features=entry.n_features if entry else None,
                              stability=entry.stability if entry else None)
    return UnitOutcome(Stage.SELECT, index, target, outcome, time.perf_counter() - started, report)


def _reused_selection(ctx: RunContext, reuse_dir: Path, target: str) -> StageRecord | None:
    from trainpipe.runner.reuse import reuse_record

    return reuse_record(reuse_dir, ctx.layout, ctx.layout.select_unit_record(target), select_unit_key(ctx, target))


def _selection_entry(ctx: RunContext, target: str) -> SelectionEntry | None:
    """The target's line of the selection summary: from its unit record, or from the whole stage's when that selected it."""
    record = records.read_record_at(ctx.layout.select_unit_record(target))
    if record is not None:
        return SelectionEntry.model_validate(record.summary) if record.summary else None
    summary = recorded_summary(Stage.SELECT, records.read_record(ctx.layout, Stage.SELECT.value))
    return summary.targets.get(target) if isinstance(summary, SelectStageSummary) else None


def unit_run_outcome(trained: Outcome) -> Outcome:
    """What a training unit run alone reports: a unit addressed by family and index is one its family can train, so
    one the stage skipped was done here before with the same fingerprint, which every stage calls cached."""
    return Outcome.CACHED if trained is Outcome.SKIPPED else trained


def train_unit(ctx: RunContext, stage: Stage, family: str, index: int, force: bool = False) -> UnitOutcome:
    """Train unit `index` of `family` (`contract.units.family_units(plan, family)[index]`) against the plan `train` found (or was given)."""
    from trainpipe.training.stage import run_training_unit

    plan = read_current_plan(ctx)
    started = time.perf_counter()
    unit, record = run_training_unit(plan, stage.value, family, index, ctx.layout, training_settings(ctx, stage),
                                     plan_path=ctx.training_plan_path(), force=force)
    where = f"{stage.value} unit {unit.family}[{index}] ({unit.unit_id}: job {unit.job_id}, target {unit.target})"
    if record.outcome is Outcome.FAILED:
        raise UnitFailedError(f"{where} failed: {record.reason}; the error is in {ctx.layout.models_dir / unit.job_id / (unit.family + '.error.txt')}")
    outcome = unit_run_outcome(record.outcome)
    report = TrainUnitReport(stage=stage.value, family=unit.family, unit_index=index, unit=unit.unit_id, job_id=unit.job_id,
                             target=unit.target, status=outcome, device=record.device or None)
    return UnitOutcome(stage, index, unit.unit_id, outcome, time.perf_counter() - started, report)


def train_family(ctx: RunContext, stage: Stage, family: str) -> StageOutcome:
    """Every unit of one family (`train --family F` without an index); like units, it writes no stage record."""
    started = time.perf_counter()
    summary = train_step(ctx, stage, family=family)
    return StageOutcome(stage, Outcome.RAN, time.perf_counter() - started, summary)
