"""The plan step: route the kept targets and write the routing and training plans."""

from __future__ import annotations

import pandas as pd

from trainpipe.contract.cut import HoldoutCut, SymbolCoverage, symbol_warning
from trainpipe.contract.names import Leakage, Stability, TargetStatus
from trainpipe.contract.pipeline import DEFAULT_FAMILIES, TrainingSpec
from trainpipe.contract.plan import PlanMetadata, TrainingPlanMetadata
from trainpipe.contract.summaries import PlanStageSummary
from trainpipe.io.stage_files import read_rankings, read_selection
from trainpipe.runner.steps.context import (
    RunContext,
    StageInputError,
)
from trainpipe.runner.steps.selection import selection_is_current


def requested_families(training: TrainingSpec) -> list[str]:
    """Families in CPU→GPU order: `families` filters the `modelTypes` set; neither given = the default three."""
    from trainpipe.families.catalogue import resolve_families

    if not training.families and training.model_types is None:
        return resolve_families(DEFAULT_FAMILIES, None)
    return resolve_families(training.families or None, training.model_types)


def no_symbol_model(cut: HoldoutCut) -> dict[str, str]:
    """Symbols the cut leaves without a holdout (nothing to score a model of their own on) or without a bar to train one on."""
    return {name: symbol_warning(name, c, cut) for name, c in cut.symbols.items()
            if c.coverage in (SymbolCoverage.NO_HOLDOUT, SymbolCoverage.NO_DEVELOPMENT)}


def plan_step(ctx: RunContext) -> PlanStageSummary:
    from trainpipe.io.plan_files import write_routing, write_training_plan
    from trainpipe.stages.candidates import build_candidates, candidates_frame
    from trainpipe.stages.planning import build_training_plan
    from trainpipe.stages.routing import build_routing_plan

    ranking = read_rankings(ctx.layout)
    selected = ranking.selected
    stale = [t for t in selected if not selection_is_current(ctx, t)]
    if stale:
        raise StageInputError(
            f"the feature selection of {', '.join(stale)} is missing or was made from other inputs (no current record under "
            f"{ctx.layout.state_dir}); run `trainpipe select` (or `trainpipe select --target T` per target) with the same settings first"
        )
    selections = {t: read_selection(ctx.layout, t) for t in selected}
    try:
        oos = pd.read_parquet(ctx.layout.oos_scores_parquet)
    except FileNotFoundError:
        raise StageInputError(f"{ctx.layout.oos_scores_parquet} is missing: run `trainpipe rank` first") from None
    oos = oos[oos["target"].isin(selected)]
    stab = {t: s.stability.state for t, s in selections.items()}
    if ranking.gates_off:
        # The gates are off (evidence.trainAnyway): a selection that diverges, as one on noise will, may still
        # train in the experimental lane instead of leaving the run an empty plan.
        stab = {t: Stability.DRIFTING if s is Stability.DIVERGED else s for t, s in stab.items()}
    leakage = {t: Leakage.SAFE if ranking.target(t).status is TargetStatus.OK else Leakage.BLOCKED for t in selected}
    candidates = build_candidates(oos, stab, leakage)
    meta = ctx.plan_metadata()
    # Sides are gated on evidence, unless the gates are off (evidence.trainAnyway): then points decide, visibly.
    alpha = None if ranking.gates_off else ctx.spec.evidence.alpha
    routing = build_routing_plan(candidates, ranking.symbols, ctx.spec.routing, PlanMetadata(**meta),
                                 ctx.layout.relative(ctx.layout.routing_candidates), no_symbol_model(ranking.holdout_cut), alpha)
    write_routing(ctx.layout, candidates_frame(candidates), routing)
    training = ctx.spec.training
    families = requested_families(training)
    plan = build_training_plan(
        routing,
        {t: s.features for t, s in selections.items()},
        {t: ranking.target(t).task for t in selected},
        families,
        list(training.families) if training.families else None,
        TrainingPlanMetadata(**meta, routing_plan_path=ctx.layout.relative(ctx.layout.routing_plan_json), holdout_cut=ranking.holdout_cut,
                             model_families=families, model_families_requested=list(training.families) or None),
        allow_empty=training.allow_empty_plan,
    )
    write_training_plan(ctx.layout, plan)
    return PlanStageSummary(jobs=len(plan.jobs), by_route=dict(plan.summary.by_route), families=families)
