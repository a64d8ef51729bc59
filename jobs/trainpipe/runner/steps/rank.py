"""The rank step: score every candidate target out of sample, keep the top N, write the ranking and its pins."""

from __future__ import annotations

import json

from trainpipe.contract.names import Stage
from trainpipe.contract.rankings import DataPins, EvidenceGate, FeatureLeak, RankingsFile, TargetRanking, TooGoodLimits
from trainpipe.contract.summaries import RankStageSummary
from trainpipe.data.errors import DataError
from trainpipe.io import stage_files
from trainpipe.io.atomic import write_parquet
from trainpipe.runner.steps.context import (
    RunContext,
    StageInputError,
    candidate_columns,
    development_frame,
    load,
    run_cut,
    target_horizons,
)


def rank_step(ctx: RunContext) -> RankStageSummary:
    from trainpipe.data.loading import move_features
    from trainpipe.stages.rank import LeakageError, RankParams, rank_targets

    features, targets = candidate_columns(ctx)
    panel = load(ctx, features + targets)
    horizons = target_horizons(ctx, targets, panel.calendar)
    cut = run_cut(ctx, panel.frame, horizons, panel.sample)
    frame = development_frame(panel.frame, cut)
    n_rows, interval_minutes, symbols = len(panel.frame), panel.interval_minutes, panel.symbols
    del panel  # the holdout rows go now: nothing below may read them
    x = move_features(frame, features)  # held once: as a matrix, no longer as frame columns
    ctx.tick(Stage.RANK, total=len(targets))
    params = RankParams.from_spec(ctx.spec, ctx.threads)
    try:
        result = rank_targets(frame, features, targets, interval_minutes, params, on_target=lambda t: ctx.tick(Stage.RANK, t), x=x, horizons=horizons)
    except LeakageError as exc:
        raise DataError(f"{ctx.data_dir}: {exc}") from None
    layout = ctx.layout
    write_parquet(layout.oos_scores_parquet, result.oos_scores)
    write_parquet(layout.rankings_parquet, result.table)
    stage_files.write_rankings(layout, RankingsFile(
        interval_minutes=interval_minutes,
        symbols=list(symbols),
        features=list(result.features),
        candidate_features=features,
        leaks=[FeatureLeak(feature=k.feature, target=k.target, shift=k.shift, correlation=k.correlation, method=k.method, bound=k.bound, resolved=k.resolved)
               for k in result.leaks],
        suspects=list(result.suspects),
        selected=list(result.selected),
        holdout_cut=cut,
        # The report applies the same limits to the models' holdout metrics.
        too_good_limits=TooGoodLimits(max_rank_ic=params.max_rank_ic, max_r2=params.max_r2, max_auc=params.max_auc),
        # Through pandas' JSON: NaN becomes null and floats keep the 10 significant digits the file always had.
        targets=[TargetRanking.model_validate(row) for row in json.loads(result.table.to_json(orient="records"))],
        evidence=_gate_record(result.evidence, params),
        no_evidence=result.no_evidence,
    ))
    # Kept apart from the rankings: the digest covers the holdout's bars too, which the rankings must not depend on.
    stage_files.write_data_pins(layout, DataPins(files=[str(p) for p in ctx.data_files], digest=ctx.data_digest))
    if result.no_evidence is not None:
        # Not a failure: the data holds no skill this pipeline can show. The run ends here, training nothing.
        return RankStageSummary(targets_ranked=len(targets), selected=[], rows=n_rows, development_rows=len(frame),
                                cut_warnings=cut.warnings(), no_evidence=result.no_evidence)
    if not result.selected:
        reasons = "; ".join(f"{r.target}: {r.status} {r.reason}".strip() for r in result.table.itertuples())
        raise StageInputError(f"no target passed ranking, so there is nothing to select or train. Per target: {reasons}")
    return RankStageSummary(targets_ranked=len(targets), selected=list(result.selected), rows=n_rows, development_rows=len(frame),
                            cut_warnings=cut.warnings())


def _gate_record(verdicts, params) -> EvidenceGate:
    """The target gate as the rankings file keeps it (nothing scored: nothing tried)."""
    if verdicts is None:
        return EvidenceGate(alpha=params.alpha, tried=0, passed=0, level=1 - params.alpha, train_anyway=params.train_anyway)
    return EvidenceGate(alpha=verdicts.alpha, tried=verdicts.tried, passed=verdicts.count, level=verdicts.level, train_anyway=params.train_anyway)
