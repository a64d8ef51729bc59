"""The rank step: score every candidate target out of sample, keep the top N, write the ranking and its pins.

With stages.rank.targetGroups = N > 1 the scoring fans out: unit I of N (`rank_unit`) scores every N-th
target from the I-th and writes its part; `rank_aggregate` merges the N parts into the same ranking
files one process would write (`stages.rank.finish_rankings`). Every unit reads the same rows and fixes
the same cut, so the merged ranking equals the single-process one.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace

import numpy as np

from trainpipe.contract.cut import HoldoutCut
from trainpipe.contract.names import Stage
from trainpipe.contract.rankings import DataPins, EvidenceGate, FeatureLeak, RankingsFile, TargetRanking, TooGoodLimits
from trainpipe.contract.summaries import RankStageSummary
from trainpipe.data.errors import DataError
from trainpipe.io import stage_files
from trainpipe.io.atomic import write_parquet, write_text
from trainpipe.runner.steps.context import (
    RunContext,
    StageInputError,
    candidate_columns,
    development_frame,
    load,
    run_cut,
    target_horizons,
)


@dataclass(frozen=True)
class _Inputs:
    """What every rank unit reads alike: the candidates, the run's cut, and the facts the rankings file records."""

    features: list[str]
    targets: list[str]
    cut: HoldoutCut
    interval_minutes: float
    symbols: tuple[str, ...]
    rows: int  # rows read, holdout included
    development_rows: int


def rank_step(ctx: RunContext) -> RankStageSummary:
    groups = ctx.spec.stages.rank.target_groups
    if groups > 1:  # the local runner walks the fan-out a cluster runs as one pod per group (`rank --aggregate` only merges)
        for index in range(0 if ctx.rank_aggregate_only else groups):
            rank_unit(ctx, index, groups)
        return rank_aggregate(ctx, groups)
    inputs, prepared = _prepare(ctx)
    from trainpipe.stages.rank import finish_rankings, score_group

    part = score_group(prepared, prepared.targets, on_target=lambda t: ctx.tick(Stage.RANK, t))
    return _write(ctx, inputs, finish_rankings([part], prepared.params, lambda: prepared), prepared.params)


def target_group(targets: Sequence[str], index: int, units: int) -> list[str]:
    """The targets unit `index` of `units` scores: the `index`-th of `units` contiguous, near-equal runs of the candidate order.

    Contiguous, so the parts laid end to end in unit order are the targets in the order one process ranks them.
    """
    if not 0 <= index < units:
        raise ValueError(f"unit index {index} is outside 0..{units - 1} (stages.rank.targetGroups = {units})")
    bounds = [len(targets) * k // units for k in range(units + 1)]
    return list(targets[bounds[index]:bounds[index + 1]])


def rank_unit(ctx: RunContext, index: int, units: int) -> list[str]:
    """Score this unit's group of targets and write its part (`Layout.rank_part`); nothing else is written. Returns the group."""
    from trainpipe.stages.rank import score_group

    inputs, prepared = _prepare(ctx)
    group = target_group(prepared.targets, index, units)
    part = score_group(prepared, group, on_target=lambda t: ctx.tick(Stage.RANK, t))
    write_text(ctx.layout.rank_part(index, units), dump_part(part, inputs, ctx.keys[Stage.RANK]))
    return group


def rank_aggregate(ctx: RunContext, units: int) -> RankStageSummary:
    """Merge the units' parts into the ranking files: the evidence gate and the top N over every target.

    Small: it reads no data unless a target is too good to be true and its top features must be rescanned.
    """
    from trainpipe.stages.rank import RankParams, finish_rankings

    key = ctx.keys[Stage.RANK]
    loaded = [load_part(ctx, index, units, key) for index in range(units)]
    inputs = loaded[0][1]
    params = replace(RankParams.from_spec(ctx.spec, ctx.threads), targets_tried=len(inputs.targets))
    result = finish_rankings([part for part, _ in loaded], params, lambda: _prepare(ctx)[1])
    return _write(ctx, inputs, result, params)


def _prepare(ctx: RunContext):
    """Load the panel, fix the cut, keep the development rows and prepare the ranking (the leak scan of every label)."""
    from trainpipe.data.loading import move_features
    from trainpipe.stages.rank import LeakageError, RankParams, prepare_ranking

    features, targets = candidate_columns(ctx)
    panel = load(ctx, features + targets)
    horizons = target_horizons(ctx, targets, panel.calendar)
    cut = run_cut(ctx, panel.frame, horizons, panel.sample)
    frame = development_frame(panel.frame, cut)
    inputs = _Inputs(features, targets, cut, panel.interval_minutes, panel.symbols, len(panel.frame), len(frame))
    del panel  # the holdout rows go now: nothing below may read them
    x = move_features(frame, features)  # held once: as a matrix, no longer as frame columns
    ctx.tick(Stage.RANK, total=len(targets))
    params = RankParams.from_spec(ctx.spec, ctx.threads)
    try:
        return inputs, prepare_ranking(frame, features, targets, inputs.interval_minutes, params, x=x, horizons=horizons)
    except LeakageError as exc:
        raise DataError(f"{ctx.data_dir}: {exc}") from None


def _write(ctx: RunContext, inputs: _Inputs, result, params) -> RankStageSummary:
    layout, cut = ctx.layout, inputs.cut
    write_parquet(layout.oos_scores_parquet, result.oos_scores)
    write_parquet(layout.rankings_parquet, result.table)
    stage_files.write_rankings(layout, RankingsFile(
        interval_minutes=inputs.interval_minutes,
        symbols=list(inputs.symbols),
        features=list(result.features),
        candidate_features=inputs.features,
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
    targets = inputs.targets
    if result.no_evidence is not None:
        # Not a failure: the data holds no skill this pipeline can show. The run ends here, training nothing.
        return RankStageSummary(targets_ranked=len(targets), selected=[], rows=inputs.rows, development_rows=inputs.development_rows,
                                cut_warnings=cut.warnings(), no_evidence=result.no_evidence)
    if not result.selected:
        reasons = "; ".join(f"{r.target}: {r.status} {r.reason}".strip() for r in result.table.itertuples())
        raise StageInputError(f"no target passed ranking, so there is nothing to select or train. Per target: {reasons}")
    return RankStageSummary(targets_ranked=len(targets), selected=list(result.selected), rows=inputs.rows, development_rows=inputs.development_rows,
                            cut_warnings=cut.warnings())


def _gate_record(verdicts, params) -> EvidenceGate:
    """The target gate as the rankings file keeps it (nothing scored: nothing tried)."""
    if verdicts is None:
        return EvidenceGate(alpha=params.alpha, tried=0, passed=0, level=1 - params.alpha, train_anyway=params.train_anyway)
    return EvidenceGate(alpha=verdicts.alpha, tried=verdicts.tried, passed=verdicts.count, level=verdicts.level, train_anyway=params.train_anyway)


# ---------------------------------------------------------------- a unit's part on disk


def _plain(value):
    """numpy scalars as Python numbers, so a part's JSON reads back to the values it was written from."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"cannot write {type(value).__name__} into a rank part")


def dump_part(part, inputs: _Inputs, key: str) -> str:
    """A part as JSON: Python's own float repr (NaN included), so every score reads back bit for bit."""
    return json.dumps({
        "key": key, "targets": list(part.targets), "rows": part.rows, "oos_rows": [list(r) for r in part.oos_rows],
        "gains": part.gains, "features": list(part.features), "leaks": [asdict(k) for k in part.leaks],
        "inputs": {"features": inputs.features, "targets": inputs.targets, "cut": inputs.cut.to_wire(), "interval_minutes": inputs.interval_minutes,
                   "symbols": list(inputs.symbols), "rows": inputs.rows, "development_rows": inputs.development_rows},
    }, default=_plain)


def load_part(ctx: RunContext, index: int, units: int, key: str):
    """Unit `index`'s part, checked to be from this run's inputs; StageInputError names the unit to run otherwise."""
    from trainpipe.stages.leakage import Leak
    from trainpipe.stages.rank import RankPart

    path = ctx.layout.rank_part(index, units)
    again = f"run `trainpipe rank --unit-index {index} --units {units}` with the same settings first"
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        raise StageInputError(f"{path}: rank unit {index} of {units} has not written its part; {again}") from None
    if raw.get("key") != key:
        raise StageInputError(f"{path}: rank unit {index} of {units} was scored from other inputs (data, spec or code); {again}")
    i = raw["inputs"]
    inputs = _Inputs(i["features"], i["targets"], HoldoutCut.model_validate(i["cut"]), i["interval_minutes"], tuple(i["symbols"]), i["rows"],
                     i["development_rows"])
    gains = {t: None if g is None else np.asarray(g, dtype=np.float64) for t, g in raw["gains"].items()}
    part = RankPart(tuple(raw["targets"]), raw["rows"], [tuple(r) for r in raw["oos_rows"]], gains, tuple(raw["features"]),
                    tuple(Leak(**k) for k in raw["leaks"]))
    return part, inputs

