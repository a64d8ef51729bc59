"""The stage steps behind `trainpipe rank|select|plan|train`: load inputs, call the pure stage, write artefacts.

Each step is idempotent: it writes every artefact atomically and only then records its cache key, so an
interrupted run resumes at the first stage whose record is missing or stale. Select also records each
target on its own (`.trainpipe/units/select/<target>.json`), so one target can be selected alone and the
plan accepts either record (`trainpipe.runner.units`). With `reuse_dir`, a stage that is not done here is
first looked for in sibling run folders (`trainpipe.runner.reuse`).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import cached_property, partial
from pathlib import Path

import pandas as pd

from trainpipe.contract.cut import HoldoutCut
from trainpipe.contract.exitcodes import CommandFailure, ExitCode
from trainpipe.contract.names import Leakage, Stage, TargetStatus, TaskType
from trainpipe.contract.pipeline import DEFAULT_FAMILIES, PipelineSpec, TrainingSpec
from trainpipe.contract.plan import PlanMetadata, TrainingPlanMetadata
from trainpipe.contract.rankings import DataPins, FeatureLeak, RankingsFile, TargetRanking, TooGoodLimits
from trainpipe.contract.selection import SelectionEntry, SelectionStability, SelectionSummary, TargetSelection
from trainpipe.contract.stages import COMPUTE_STAGES, REUSABLE_STAGES, TRAINING_STAGES
from trainpipe.contract.targets import HorizonError, horizon_bars
from trainpipe.contract.timestamps import stamp
from trainpipe.cv import development_mask, holdout_cut, pinned_mask
from trainpipe.data.errors import DataError
from trainpipe.io import stage_files
from trainpipe.io.atomic import write_parquet
from trainpipe.io.layout import Layout
from trainpipe.io.stage_files import read_rankings, read_selection
from trainpipe.resources import available_cpus
from trainpipe.runner import records
from trainpipe.runner.digests import code_version, digest_files, digest_json
from trainpipe.runner.keys import stage_keys
from trainpipe.runner.plan_identity import check_plan

Progress = Callable[[str, str, int | None], None]  # (stage, item label or "", total when starting)


class StageInputError(RuntimeError, CommandFailure):
    """A stage was asked to run before the stage it depends on produced its artefacts."""

    exit_code = ExitCode.MISSING_INPUT


class SpecDataMismatchError(ValueError, CommandFailure):
    """The spec names columns the data does not have (or leaves none): fix the spec, no rerun of a stage helps."""

    exit_code = ExitCode.INVALID_SPEC


class StageFailedError(RuntimeError, CommandFailure):
    """Some units of a stage failed; the others' results are kept and a rerun retries only the failed ones."""

    exit_code = ExitCode.UNIT_FAILED

    def __init__(self, stage: Stage, summary: dict):
        self.stage, self.summary = stage, summary
        failures = "; ".join(f"{f['job_id']}/{f['family']}: {f['reason']}" for f in summary.get("failures", []))
        super().__init__(f"{stage.value}: {summary.get('failed')} of {summary.get('units')} units failed — {failures}")


def default_threads() -> int:
    """Threads for model fitting in rank/select: the CPUs this container may use, at most 4 (small fits stop scaling there)."""
    return max(1, min(available_cpus(), 4))


@dataclass
class RunContext:
    spec: PipelineSpec
    layout: Layout
    threads: int = field(default_factory=default_threads)
    progress: Progress | None = None
    run_id: str | None = None  # the operator's run id (`--run-id`): recorded in the plan, required of it by `train`
    reuse_dir: Path | None = None  # folder of sibling run folders to copy finished work from (`--reuse-dir`)
    expected_plan_digest: str | None = None  # `train --plan-digest`: the plan this call was created for
    training_plan_dir: Path | None = None  # `train --training-plan-dir`: train this plan instead of the one found in the output folder

    @property
    def data_dir(self) -> Path:
        return Path(self.spec.data.dir)

    @cached_property
    def data_files(self) -> tuple[Path, ...]:
        from trainpipe.data.loading import find_files

        return find_files(self.data_dir, self.spec.data.symbols or None, self.spec.data.interval)

    @cached_property
    def data_digest(self) -> str:
        return digest_files(self.data_files)

    @cached_property
    def keys(self) -> dict[Stage, str]:
        # A plan this run's plan stage did not write (given, or the seed's legacy folder) is an input of training itself.
        outside = self.outside_plan()
        plan_file = None if outside is None else digest_files((outside,))
        return stage_keys(self.spec, self.data_digest, code_version(), self.run_id, plan_file)

    def training_plan_path(self) -> Path:
        """The plan file `train` trains (`io.plan_files.find_training_plan`); PlanFileError when there is none."""
        from trainpipe.io.plan_files import find_training_plan

        return find_training_plan(self.layout, self.training_plan_dir)

    def outside_plan(self) -> Path | None:
        """The plan file when it is not the output folder's own `globals/training_plan/` (None when it is, or there is none yet)."""
        from trainpipe.io.plan_files import PlanFileError

        try:
            path = self.training_plan_path()
        except PlanFileError:
            return None
        return None if path.parent.resolve() == self.layout.training_plan_dir.resolve() else path

    def tick(self, stage: Stage, item: str = "", total: int | None = None) -> None:
        if self.progress is not None:
            self.progress(stage.value, item, total)

    def plan_metadata(self) -> dict:
        return {
            "generated_at": stamp(),
            "run_id": self.run_id or "run-" + self.keys[Stage.PLAN][:16],
            "code_version": code_version(),
            "config_digest": digest_json(self.spec.to_wire())[:16],
            "data_digest": self.data_digest[:16],
        }


# ---------------------------------------------------------------- rank


def candidate_columns(ctx: RunContext) -> tuple[list[str], list[str]]:
    """(features, targets) to rank, from the data's schema and the spec's include/exclude lists."""
    from trainpipe.data.loading import schema_columns

    features, targets = schema_columns(ctx.data_dir, ctx.spec.data.symbols or None, ctx.spec.data.interval)
    spec = ctx.spec
    if spec.targets.include:
        unknown = [t for t in spec.targets.include if t not in targets]
        if unknown:
            raise SpecDataMismatchError(f"targets.include names {unknown} which are not target columns of {ctx.data_dir}; available: {list(targets)}")
        targets = [t for t in targets if t in set(spec.targets.include)]
    if spec.features.include:
        unknown = [f for f in spec.features.include if f not in features]
        if unknown:
            raise SpecDataMismatchError(f"features.include names {unknown} which are not feature columns of {ctx.data_dir}")
        features = list(spec.features.include)
    features = [f for f in features if f not in set(spec.features.exclude)]
    if not features:
        raise SpecDataMismatchError("no feature columns are left after features.include/exclude; loosen the lists")
    return list(features), list(targets)


def load(ctx: RunContext, columns: list[str], cut: HoldoutCut | None = None):
    """The panel rank reads (no `cut`), or, given the run's cut, exactly those bars again.

    With a cut the files are read whole and each symbol is trimmed to the bars rank read, so bars
    appended mid-run, or a `maxRowsPerSymbol` window that would slide over them, change nothing.
    """
    from trainpipe.data.frames import frame_symbols, frame_ts
    from trainpipe.data.loading import load_panel

    d = ctx.spec.data
    if cut is None:
        return load_panel(ctx.data_dir, d.symbols or None, interval=d.interval, columns=columns,
                          max_rows_per_symbol=d.max_rows_per_symbol, min_rows_per_symbol=d.min_rows_per_symbol)
    panel = load_panel(ctx.data_dir, sorted(cut.symbols), interval=d.interval, columns=columns, min_rows_per_symbol=d.min_rows_per_symbol)
    keep = pinned_mask(frame_ts(panel.frame), frame_symbols(panel.frame), cut)
    if not keep.all():
        panel = replace(panel, frame=panel.frame.loc[keep].reset_index(drop=True))
    return panel


def development_frame(frame: pd.DataFrame, cut: HoldoutCut) -> pd.DataFrame:
    """The rows rank, select and plan may read: each symbol's bars before its development end.

    The columns move out of `frame` one at a time (the caller's panel is left without columns), so the
    panel is never held twice: a whole-frame copy here was the rank stage's memory peak.
    """
    from trainpipe.data.frames import frame_symbols, frame_ts

    keep = development_mask(frame_ts(frame), frame_symbols(frame), cut)
    columns = {name: frame.pop(name)[keep].reset_index(drop=True) for name in list(frame.columns)}
    return pd.DataFrame(columns, copy=False)  # not consolidated: no second copy, and each column can be freed alone


def target_horizons(ctx: RunContext, targets: list[str], interval_minutes: float) -> dict[str, int]:
    """Each candidate target's horizon in bars (name or targets.horizonBars); an unreadable name stops the run."""
    try:
        return {t: horizon_bars(t, interval_minutes, ctx.spec.targets.horizon_bars) for t in targets}
    except HorizonError as exc:
        raise DataError(f"{ctx.data_dir}: {exc}") from None


def run_cut(ctx: RunContext, frame: pd.DataFrame, horizons: dict[str, int]) -> HoldoutCut:
    """Fix the run's holdout before anything is ranked: purge = the longest candidate horizon + the embargo."""
    from trainpipe.data.frames import frame_symbols, frame_ts

    try:
        return holdout_cut(frame_ts(frame), frame_symbols(frame), ctx.spec.training.holdout_fraction, horizons, ctx.spec.ranking.embargo_bars)
    except ValueError as exc:
        raise DataError(f"{ctx.data_dir}: {exc}") from None


def rank_step(ctx: RunContext) -> dict:
    from trainpipe.data.loading import move_features
    from trainpipe.stages.rank import LeakageError, RankParams, rank_targets

    features, targets = candidate_columns(ctx)
    panel = load(ctx, features + targets)
    horizons = target_horizons(ctx, targets, panel.interval_minutes)
    cut = run_cut(ctx, panel.frame, horizons)
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
        leaks=[FeatureLeak(feature=k.feature, target=k.target, shift=k.shift, correlation=k.correlation, method=k.method, bound=k.bound)
               for k in result.leaks],
        selected=list(result.selected),
        holdout_cut=cut,
        # The report applies the same limits to the models' holdout metrics.
        too_good_limits=TooGoodLimits(max_rank_ic=params.max_rank_ic, max_r2=params.max_r2, max_auc=params.max_auc),
        # Through pandas' JSON: NaN becomes null and floats keep the 10 significant digits the file always had.
        targets=[TargetRanking.model_validate(row) for row in json.loads(result.table.to_json(orient="records"))],
    ))
    # Kept apart from the rankings: the digest covers the holdout's bars too, which the rankings must not depend on.
    stage_files.write_data_pins(layout, DataPins(files=[str(p) for p in ctx.data_files], digest=ctx.data_digest))
    if not result.selected:
        reasons = "; ".join(f"{r.target}: {r.status} {r.reason}".strip() for r in result.table.itertuples())
        raise StageInputError(f"no target passed ranking, so there is nothing to select or train. Per target: {reasons}")
    return {"targets_ranked": len(targets), "selected": list(result.selected), "rows": n_rows, "development_rows": len(frame)}


# ---------------------------------------------------------------- select


def select_step(ctx: RunContext) -> dict:
    ranking = read_rankings(ctx.layout)
    summary = select_targets(ctx, ranking, ranking.selected)
    stage_files.write_selection_summary(ctx.layout, SelectionSummary(targets=summary))
    return {"targets": {t: entry.to_wire() for t, entry in summary.items()}}


def select_targets(ctx: RunContext, ranking: RankingsFile, targets: list[str]) -> dict[str, SelectionEntry]:
    """Select features for `targets` (some of the ranking's kept targets); write each one's artefacts and unit record.

    The panel holds every kept target's column whichever targets are asked for, so a target selected on
    its own (one pod of the select Job) sees the same rows and gets byte-identical artefacts.
    """
    from trainpipe.data.loading import move_features
    from trainpipe.stages.rank import sample_recent
    from trainpipe.stages.select import SelectParams, TargetToSelect, select_all

    selected = ranking.selected
    features = ranking.features
    cut = ranking.holdout_cut
    panel = load(ctx, features + selected, cut)
    development = development_frame(panel.frame, cut)
    del panel
    x = move_features(development, features)
    frame = sample_recent(development, ctx.spec.ranking.max_rows)  # the same rows rank scored
    x = x[len(development) - len(frame):]
    params = SelectParams.from_spec(ctx.spec, ctx.threads)
    tasks = {target: ranking.target(target).task for target in targets}
    selections = {}
    if ctx.spec.features.auto:
        to_select = [TargetToSelect(t, tasks[t], cut.horizon_bars[t]) for t in targets]
        ctx.tick(Stage.SELECT, total=len(targets) * len(params.methods))
        selections = select_all(frame, to_select, features, params, x=x, on_step=lambda t, m: ctx.tick(Stage.SELECT, f"{t} · {m}"))
    del x
    return {target: _write_selection(ctx, target, tasks[target], selections.get(target)) for target in targets}


def _write_selection(ctx: RunContext, target: str, task: TaskType, selection) -> SelectionEntry:
    from trainpipe.stages.select import stability

    previous = _previous_selection(ctx.layout, target)
    if selection is not None:
        chosen, scores = list(selection.features), selection.scores
    else:
        chosen = list(ctx.spec.features.include)
        scores = pd.DataFrame({"feature": chosen, "consensus": float("nan"), "support": 0, "selected": True})
    stab = stability(chosen, previous)
    write_parquet(ctx.layout.feature_scores(target), scores)
    stage_files.write_selection(ctx.layout, TargetSelection(
        target=target, task=task, features=chosen,
        stability=SelectionStability(state=stab.stability, overlap=stab.overlap, kendall_tau=stab.kendall_tau,
                                     previous_features=list(stab.previous) if stab.previous else None),
    ))
    entry = SelectionEntry(n_features=len(chosen), stability=stab.stability)
    records.write_record_at(ctx.layout.select_unit_record(target), Stage.SELECT.value, select_unit_key(ctx, target),
                            selection_outputs(ctx.layout, target), entry.to_wire(), unit=target)
    return entry


def select_unit_key(ctx: RunContext, target: str) -> str:
    """Cache key of one target's selection: the select stage's key (all its inputs) and the target."""
    return digest_json({"stage": Stage.SELECT, "up": ctx.keys[Stage.SELECT], "target": target})


def selection_outputs(layout: Layout, target: str) -> list[str]:
    return [layout.relative(layout.selected_features(target)), layout.relative(layout.feature_scores(target))]


def selection_is_current(ctx: RunContext, target: str) -> bool:
    """The target's selection on disk was made from the current inputs: by its own unit record, or by the whole stage's."""
    layout = ctx.layout
    if records.is_fresh_at(layout.root, layout.select_unit_record(target), select_unit_key(ctx, target)):
        return True
    record = records.read_record(layout, Stage.SELECT.value)
    return (record is not None and records.is_fresh(layout, Stage.SELECT.value, ctx.keys[Stage.SELECT])
            and set(selection_outputs(layout, target)) <= set(record.outputs))


def _previous_selection(layout: Layout, target: str) -> list[str] | None:
    """The features the last selection of `target` in this folder chose; None on a first run (or an unreadable file)."""
    try:
        return list(read_selection(layout, target).features)
    except stage_files.StageFileError:
        return None


# ---------------------------------------------------------------- plan


def requested_families(training: TrainingSpec) -> list[str]:
    """Families in CPU→GPU order: `families` filters the `modelTypes` set; neither given = the default three."""
    from trainpipe.families.catalogue import resolve_families

    if not training.families and training.model_types is None:
        return resolve_families(DEFAULT_FAMILIES, None)
    return resolve_families(training.families or None, training.model_types)


def plan_step(ctx: RunContext) -> dict:
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
    leakage = {t: Leakage.SAFE if ranking.target(t).status is TargetStatus.OK else Leakage.BLOCKED for t in selected}
    candidates = build_candidates(oos, stab, leakage)
    meta = ctx.plan_metadata()
    routing = build_routing_plan(candidates, ranking.symbols, ctx.spec.routing, PlanMetadata(**meta),
                                 ctx.layout.relative(ctx.layout.routing_candidates))
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
    return {"jobs": len(plan.jobs), "by_route": dict(plan.summary.by_route), "families": families}


# ---------------------------------------------------------------- train


def train_families(training: TrainingSpec) -> list[str] | None:
    """The family filter of the training stages: the spec's selection when it makes one, else None (every family of the plan)."""
    if not training.families and training.model_types is None:
        return None
    return requested_families(training)


def read_current_plan(ctx: RunContext):
    """The plan to train (`RunContext.training_plan_path`), refused (StalePlanError) when it is not the run's or not the digest the caller expects."""
    from trainpipe.io.plan_files import read_training_plan

    path = ctx.training_plan_path()
    plan = read_training_plan(path)
    check_plan(plan, path, ctx.run_id, ctx.expected_plan_digest)
    return plan


def training_options(ctx: RunContext, stage: Stage) -> dict:
    """Keyword arguments every training call of this run shares: the split, the progress feed and where finished units may be copied from."""
    from functools import partial

    from trainpipe.runner.reuse import reuse_model

    return {
        "interval": ctx.spec.data.interval,
        "holdout_fraction": ctx.spec.training.holdout_fraction,
        "embargo_bars": ctx.spec.ranking.embargo_bars,
        "seed": ctx.spec.seed,
        "on_progress": _training_progress(ctx, stage),
        "reuse": None if ctx.reuse_dir is None else partial(reuse_model, ctx.reuse_dir, ctx.layout),
    }


def train_step(ctx: RunContext, stage: Stage, family: str | None = None) -> dict:
    """Train the plan's units of `stage` (only `family`'s when given); raises StageFailedError when some failed."""
    from trainpipe.training.stage import run_training_stage

    plan = read_current_plan(ctx)
    result = run_training_stage(plan, stage.value, ctx.layout, ctx.data_dir, families=train_families(ctx.spec.training), family=family,
                                **training_options(ctx, stage))
    summary = {
        "units": len(result.records), "trained": result.trained, "failed": result.failed, "skipped": result.skipped, "reused": result.reused,
        "devices": sorted({r.device for r in result.records if r.device}),
        "failures": [{"job_id": r.job_id, "family": r.family, "reason": r.reason} for r in result.records if r.status == "failed"],
    }
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


STEPS: dict[Stage, Callable[[RunContext], dict]] = {
    Stage.RANK: rank_step,
    Stage.SELECT: select_step,
    Stage.PLAN: plan_step,
    **{stage: partial(train_step, stage=stage) for stage in TRAINING_STAGES},
}

# What each stage leaves behind (given its summary), relative to the output dir; a cached stage is reused
# only if these still exist, and a stage taken from another run copies exactly these.
OUTPUTS: dict[Stage, Callable[[Layout, dict], list[Path]]] = {
    Stage.RANK: lambda lay, _: [lay.rankings_parquet, lay.rankings_json, lay.oos_scores_parquet, lay.data_pins_json],
    Stage.SELECT: lambda lay, summary: [lay.selection_summary] + [p for t in summary["targets"] for p in (lay.selected_features(t), lay.feature_scores(t))],
    Stage.PLAN: lambda lay, _: [lay.routing_candidates, lay.routing_plan_dir, lay.training_plan_dir],
    Stage.CPU: lambda lay, _: [lay.models_dir],
    Stage.GPU: lambda lay, _: [lay.models_dir],
}
# The reusable stages' whole outputs may be copied from a sibling run (contract.stages); the training
# stages reuse unit by unit, by fingerprint.


@dataclass(frozen=True)
class StageOutcome:
    stage: Stage
    cached: bool
    seconds: float
    summary: dict
    reused_from: str | None = None  # the sibling run folder the outputs were copied from


def run_stage(ctx: RunContext, stage: Stage, force: bool = False) -> StageOutcome:
    """Run one stage unless its record matches the current inputs (then reuse it and say so), or a sibling run has it."""
    key = ctx.keys[stage]
    if not force and records.is_fresh(ctx.layout, stage.value, key):
        record = records.read_record(ctx.layout, stage.value)
        return StageOutcome(stage, True, 0.0, record.summary if record else {})
    records.clear_record(ctx.layout, stage.value)
    # Downstream records are stale once this stage's outputs are replaced, whatever their keys say.
    for later in COMPUTE_STAGES[COMPUTE_STAGES.index(stage) + 1:]:
        records.clear_record(ctx.layout, later.value)
    start = time.perf_counter()
    if not force and ctx.reuse_dir is not None and stage in REUSABLE_STAGES:
        from trainpipe.runner.reuse import reuse_record

        reused = reuse_record(ctx.reuse_dir, ctx.layout, ctx.layout.stage_record(stage.value), key)
        if reused is not None:
            return StageOutcome(stage, True, time.perf_counter() - start, reused.summary, reused.reused_from)
    summary = STEPS[stage](ctx)
    outputs = [ctx.layout.relative(p) for p in OUTPUTS[stage](ctx.layout, summary)]
    records.write_record(ctx.layout, stage.value, key, outputs, summary)
    return StageOutcome(stage, False, time.perf_counter() - start, summary)
