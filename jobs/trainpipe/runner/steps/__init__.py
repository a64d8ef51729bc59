"""The stage steps behind `trainpipe rank|select|plan|train`: load inputs, call the pure stage, write artefacts.

Each step is idempotent: it writes every artefact atomically and only then records its cache key, so an
interrupted run resumes at the first stage whose record is missing or stale. Select also records each
target on its own (`.trainpipe/units/select/<target>.json`), so one target can be selected alone and the
plan accepts either record (`trainpipe.runner.units`). With `reuse_dir`, a stage that is not done here is
first looked for in sibling run folders (`trainpipe.runner.reuse`).

One module per stage (`rank`, `selection`, `plan`, `train`) over `context`; this package maps each
computing stage of contract.stages to its `Step` (the function and the outputs it leaves), and runs one.
A stage added to the table runs here once `STEPS` has its step.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from pydantic import ValidationError

from trainpipe.contract.base import SnakeContract
from trainpipe.contract.names import Stage
from trainpipe.contract.outcomes import Outcome
from trainpipe.contract.records import StageRecord
from trainpipe.contract.stages import STAGES
from trainpipe.contract.summaries import PlanStageSummary, RankStageSummary, SelectStageSummary, TrainingStageSummary
from trainpipe.io.layout import Layout
from trainpipe.runner import records
from trainpipe.runner.steps.context import (
    Progress,
    RunContext,
    SpecDataMismatchError,
    StageFailedError,
    StageInputError,
    candidate_columns,
    default_threads,
    development_frame,
    load,
    run_cut,
    target_horizons,
)
from trainpipe.runner.steps.plan import plan_step, requested_families
from trainpipe.runner.steps.rank import rank_step
from trainpipe.runner.steps.selection import select_step, select_targets, select_unit_key, selection_is_current, selection_outputs
from trainpipe.runner.steps.stability import refresh_previous, refresh_select
from trainpipe.runner.steps.train import read_current_plan, train_families, train_step, training_settings


@dataclass(frozen=True)
class Step:
    """One computing stage on the jobs side: what computes it, the summary model it returns (kept in the
    stage's record) and what it leaves behind.

    `outputs` (given the summary) are paths under the output dir: a cached stage is reused only if they
    still exist, and a stage taken from another run copies exactly these.
    """

    run: Callable[[RunContext], SnakeContract]
    summary: type[SnakeContract]
    outputs: Callable[[Layout, SnakeContract], list[Path]]
    # After the stage is cached or copied: bring up to date what its outputs hold beyond its key (select's
    # comparison with the previous run); returns the new summary when anything changed.
    refresh: Callable[[RunContext, SnakeContract], SnakeContract | None] | None = None


def _selected(summary: SnakeContract) -> list[str]:
    if not isinstance(summary, SelectStageSummary):
        raise TypeError(f"the select step's summary is a SelectStageSummary, not {type(summary).__name__}")
    return list(summary.targets)


def _models(lay: Layout, _: SnakeContract) -> list[Path]:
    return [lay.models_dir]


STEPS: dict[str, Step] = {
    Stage.RANK: Step(rank_step, RankStageSummary, lambda lay, _: [lay.rankings_parquet, lay.rankings_json, lay.oos_scores_parquet, lay.data_pins_json]),
    Stage.SELECT: Step(select_step, SelectStageSummary, lambda lay, summary: [lay.selection_summary]
                       + [p for t in _selected(summary) for p in (lay.selected_features(t), lay.feature_scores(t))], refresh_select),
    Stage.PLAN: Step(plan_step, PlanStageSummary, lambda lay, _: [lay.routing_candidates, lay.routing_plan_dir, lay.training_plan_dir]),
    **{stage: Step(partial(train_step, stage=Stage(stage)), TrainingStageSummary, _models) for stage in STAGES.training},
}


def step_of(stage: str) -> Step:
    try:
        return STEPS[stage]
    except KeyError:
        raise KeyError(f"stage {stage!r} has a row in contract.stages but no step in trainpipe.runner.steps.STEPS") from None


@dataclass(frozen=True)
class StageOutcome:
    stage: str
    outcome: Outcome  # ran, cached (its record matched) or reused (copied from `reused_from`)
    seconds: float
    summary: SnakeContract
    reused_from: str | None = None  # the sibling run folder the outputs were copied from


def recorded_summary(stage: str, record: StageRecord | None) -> SnakeContract | None:
    """The stage's summary as its record holds it; None when there is no record or it is not this stage's summary (then the stage runs again)."""
    if record is None:
        return None
    try:
        return step_of(stage).summary.model_validate(record.summary)
    except ValidationError:
        return None


def run_stage(ctx: RunContext, stage: str, force: bool = False) -> StageOutcome:
    """Run one stage unless its record matches the current inputs (then reuse it and say so), or a sibling run has it."""
    key = ctx.keys[stage]
    if not force and records.is_fresh(ctx.layout, stage, key):
        summary = recorded_summary(stage, records.read_record(ctx.layout, stage))
        if summary is not None:
            return StageOutcome(stage, Outcome.CACHED, 0.0, _refreshed(ctx, stage, key, summary))
    records.clear_record(ctx.layout, stage)
    # Downstream records are stale once this stage's outputs are replaced, whatever their keys say.
    computing = STAGES.computing
    for later in computing[computing.index(stage) + 1:]:
        records.clear_record(ctx.layout, later)
    start = time.perf_counter()
    if not force and ctx.reuse_dir is not None and stage in STAGES.reusable:
        from trainpipe.runner.reuse import reuse_record

        reused = reuse_record(ctx.reuse_dir, ctx.layout, ctx.layout.stage_record(stage), key)
        summary = recorded_summary(stage, reused)
        if reused is not None and summary is not None:
            return StageOutcome(stage, Outcome.REUSED, time.perf_counter() - start, _refreshed(ctx, stage, key, summary), reused.reused_from)
    step = step_of(stage)
    summary = step.run(ctx)
    outputs = [ctx.layout.relative(p) for p in step.outputs(ctx.layout, summary)]
    records.write_record(ctx.layout, stage, key, outputs, summary.to_wire())
    return StageOutcome(stage, Outcome.RAN, time.perf_counter() - start, summary)


def _refreshed(ctx: RunContext, stage: str, key: str, summary: SnakeContract) -> SnakeContract:
    """The summary of a cached or copied stage after its step's `refresh`; its record keeps its key and outputs."""
    refresh = step_of(stage).refresh
    new = refresh(ctx, summary) if refresh is not None else None
    record = records.read_record(ctx.layout, stage)
    if new is None or record is None:
        return summary
    records.write_record(ctx.layout, stage, key, list(record.outputs), new.to_wire(), reused_from=record.reused_from)
    return new


__all__ = [
    "Progress",
    "RunContext",
    "STEPS",
    "Step",
    "SpecDataMismatchError",
    "StageFailedError",
    "StageInputError",
    "StageOutcome",
    "candidate_columns",
    "default_threads",
    "development_frame",
    "load",
    "plan_step",
    "rank_step",
    "read_current_plan",
    "recorded_summary",
    "refresh_previous",
    "requested_families",
    "run_cut",
    "run_stage",
    "select_step",
    "select_targets",
    "select_unit_key",
    "selection_is_current",
    "selection_outputs",
    "target_horizons",
    "train_families",
    "train_step",
    "training_settings",
]
