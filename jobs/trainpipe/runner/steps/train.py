"""The train step: a stage's (cpu or gpu) units of the plan, in worker processes."""

from __future__ import annotations

from collections.abc import Callable

from trainpipe.contract.names import Stage
from trainpipe.contract.outcomes import Outcome
from trainpipe.contract.pipeline import TrainingSpec
from trainpipe.contract.plan import TrainingPlan
from trainpipe.contract.summaries import TrainingStageSummary, UnitFailure
from trainpipe.runner.plan_identity import check_plan
from trainpipe.runner.steps.context import (
    RunContext,
    StageFailedError,
)
from trainpipe.runner.steps.plan import requested_families
from trainpipe.training.settings import TrainingSettings


def train_families(training: TrainingSpec) -> list[str] | None:
    """The family filter of the training stages: the spec's selection when it makes one, else None (every family of the plan)."""
    if not training.families and training.model_types is None:
        return None
    return requested_families(training)


def read_current_plan(ctx: RunContext) -> TrainingPlan:
    """The plan to train (`RunContext.training_plan_path`), refused (StalePlanError) when it is not the run's or not the digest the caller expects."""
    from trainpipe.io.plan_files import read_training_plan

    path = ctx.training_plan_path()
    plan = read_training_plan(path)
    check_plan(plan, path, ctx.run_id, ctx.expected_plan_digest)
    return plan


def training_settings(ctx: RunContext, stage: Stage) -> TrainingSettings:
    """What every training call of this run shares, from the spec: the data and split, the family filter, the progress
    feed and where finished units may be copied from."""
    from functools import partial

    from trainpipe.families.budget import full_budget_params
    from trainpipe.runner.reuse import reuse_model

    families = train_families(ctx.spec.training)
    return TrainingSettings(
        data_dir=ctx.data_dir,
        interval=ctx.spec.data.interval,
        holdout_fraction=ctx.spec.training.holdout_fraction,
        embargo_bars=ctx.spec.ranking.embargo_bars,
        seed=ctx.spec.seed,
        cost_bps=ctx.spec.training.cost_bps,
        families=None if families is None else tuple(families),
        params=full_budget_params() if ctx.spec.training.full_budget_on_cpu else None,
        on_progress=_training_progress(ctx, stage),
        reuse=None if ctx.reuse_dir is None else partial(reuse_model, ctx.reuse_dir, ctx.layout),
    )


def train_step(ctx: RunContext, stage: Stage, family: str | None = None) -> TrainingStageSummary:
    """Train the plan's units of `stage` (only `family`'s when given); raises StageFailedError when some failed."""
    from trainpipe.training.stage import run_training_stage

    plan = read_current_plan(ctx)
    result = run_training_stage(plan, stage.value, ctx.layout, training_settings(ctx, stage), family=family)
    summary = TrainingStageSummary(
        units=len(result.records), trained=result.trained, failed=result.failed, skipped=result.skipped, reused=result.reused,
        devices=sorted({r.device for r in result.records if r.device}),
        failures=[UnitFailure(job_id=r.job_id, family=r.family, reason=r.reason) for r in result.records if r.outcome is Outcome.FAILED],
    )
    if result.failed:
        raise StageFailedError(stage, summary)
    return summary


def _training_progress(ctx: RunContext, stage: Stage) -> Callable[[dict], None]:
    """Turn the training stage's events into progress ticks: a family adds its units, each unit advances."""
    total = 0

    def on_event(event: dict) -> None:
        nonlocal total
        if event.get("event") == "family_start":
            total += int(event.get("units", 0))
            ctx.tick(stage, "", total)
        elif event.get("event") == "unit_done":
            ctx.tick(stage, f"{event.get('job_id')} · {event.get('family')}")

    return on_event
