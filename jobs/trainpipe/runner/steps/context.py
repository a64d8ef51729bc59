"""What every stage step shares: the run's context (spec, layout, data digests, cache keys), loading the panel, the holdout cut, and the steps' errors."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path

import pandas as pd

from trainpipe.contract.cut import HoldoutCut, PanelSample
from trainpipe.contract.exitcodes import CommandFailure, ExitCode
from trainpipe.contract.names import Stage
from trainpipe.contract.pipeline import PipelineSpec
from trainpipe.contract.summaries import TrainingStageSummary
from trainpipe.contract.targets import BarCalendar, HorizonError, horizon_bars
from trainpipe.contract.timestamps import stamp
from trainpipe.cv import development_mask, holdout_cut, pinned_mask
from trainpipe.data.errors import DataError
from trainpipe.io.layout import Layout
from trainpipe.io.objectstore import Location
from trainpipe.resources import available_cpus
from trainpipe.runner.digests import code_version, digest_files, digest_json
from trainpipe.runner.keys import stage_keys

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

    def __init__(self, stage: Stage, summary: TrainingStageSummary):
        self.stage, self.summary = stage, summary
        failures = "; ".join(f"{f.job_id}/{f.family}: {f.reason}" for f in summary.failures)
        super().__init__(f"{stage.value}: {summary.failed} of {summary.units} units failed — {failures}")


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
    # `select --previous-run`: the run folder whose selection this one's stability is compared with (a cluster run's
    # last succeeded run); None compares with the output folder's own earlier selection (the local layout).
    previous_run: Path | None = None
    # `rank --aggregate`: with stages.rank.targetGroups > 1, merge the units' parts without scoring any group here.
    rank_aggregate_only: bool = False

    @property
    def data_dir(self) -> Path | str:
        """The bars' folder, or their object-store URI (data.uri, kept as text: the loader opens it)."""
        return self.spec.data.uri or Path(self.spec.data.dir)

    @cached_property
    def data_files(self) -> tuple[Location, ...]:
        from trainpipe.data.loading import find_files

        return find_files(self.data_dir, self.spec.data.symbols or None, self.spec.data.interval)

    @cached_property
    def data_digest(self) -> str:
        return digest_files(self.data_files)

    @cached_property
    def keys(self) -> dict[str, str]:
        # A plan this run's plan stage did not write (given, or the seed's legacy folder) is an input of training itself.
        outside = self.outside_plan()
        plan_file = None if outside is None else digest_files((outside,))
        previous = None if self.previous_run is None else str(self.previous_run)
        return stage_keys(self.spec, self.data_digest, code_version(), self.run_id, plan_file, previous)

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

    def tick(self, stage: str, item: str = "", total: int | None = None) -> None:
        if self.progress is not None:
            self.progress(stage, item, total)

    def plan_metadata(self) -> dict:
        return {
            "generated_at": stamp(),
            "run_id": self.run_id or "run-" + self.keys[Stage.PLAN][:16],
            "code_version": code_version(),
            "config_digest": digest_json(self.spec.to_wire())[:16],
            "data_digest": self.data_digest[:16],
        }


def candidate_columns(ctx: RunContext) -> tuple[list[str], list[str]]:
    """(features, targets) to rank, from the data's schema and the spec's include/exclude lists."""
    from trainpipe.data.loading import schema_columns

    found = schema_columns(ctx.data_dir, ctx.spec.data.symbols or None, ctx.spec.data.interval)
    features, targets = list(found[0]), list(found[1])
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
    from trainpipe.data.sampling import sample_ranges

    d = ctx.spec.data
    # A short history is the cut's warning (run_cut names the symbol), never a stop: on a panel with listings
    # and delistings some symbols always are. Only a symbol with no row at all stops the load.
    if cut is None:  # rank: a panel over data.rowBudget is cut to timestamp blocks here, and the cut records them
        return load_panel(ctx.data_dir, d.symbols or None, interval=d.interval, columns=columns,
                          max_rows_per_symbol=d.max_rows_per_symbol, min_rows_per_symbol=1,
                          row_budget=d.row_budget, sample_blocks=d.sample_blocks, seed=ctx.spec.seed)
    # The blocks rank read, exactly: a later stage never samples on its own (the data may have grown since).
    ranges = sample_ranges(cut.sample) if cut.sample is not None else None
    panel = load_panel(ctx.data_dir, sorted(cut.symbols), interval=d.interval, columns=columns, min_rows_per_symbol=1, time_ranges=ranges)
    keep = pinned_mask(frame_ts(panel.frame), frame_symbols(panel.frame), cut)
    if not keep.all():
        panel = replace(panel, frame=panel.frame.loc[keep].reset_index(drop=True))
    return panel


def development_frame(frame: pd.DataFrame, cut: HoldoutCut) -> pd.DataFrame:
    """The rows rank, select and plan may read: every symbol's bars before the cut's development end.

    The columns move out of `frame` one at a time (the caller's panel is left without columns), so the
    panel is never held twice: a whole-frame copy here was the rank stage's memory peak.
    """
    from trainpipe.data.frames import frame_symbols, frame_ts

    keep = development_mask(frame_ts(frame), frame_symbols(frame), cut)
    columns = {name: frame.pop(name)[keep].reset_index(drop=True) for name in list(frame.columns)}
    return pd.DataFrame(columns, copy=False)  # not consolidated: no second copy, and each column can be freed alone


def target_horizons(ctx: RunContext, targets: list[str], calendar: BarCalendar) -> dict[str, int]:
    """Each candidate target's horizon in bars (name or targets.horizonBars); an unreadable name stops the run."""
    try:
        return {t: horizon_bars(t, calendar, ctx.spec.targets.horizon_bars) for t in targets}
    except HorizonError as exc:
        raise DataError(f"{ctx.data_dir}: {exc}") from None


def run_cut(ctx: RunContext, frame: pd.DataFrame, horizons: dict[str, int], sample: PanelSample | None = None) -> HoldoutCut:
    """Fix the run's holdout before anything is ranked: purge = the longest candidate horizon + the embargo.

    A symbol with fewer development bars than `data.minRowsPerSymbol` asks of a whole file is a warning
    (`HoldoutCut.warnings`), not an error: on a panel with listings and delistings some always are.
    `sample` (the loaded panel's, when it outgrew data.rowBudget) goes into the cut, so every later stage reads the same blocks.
    """
    from trainpipe.data.frames import frame_symbols, frame_ts

    try:
        cut = holdout_cut(frame_ts(frame), frame_symbols(frame), ctx.spec.training.holdout_fraction, horizons, ctx.spec.ranking.embargo_bars,
                          min_development_rows=ctx.spec.data.min_rows_per_symbol)
    except ValueError as exc:
        raise DataError(f"{ctx.data_dir}: {exc}") from None
    return cut if sample is None else cut.model_copy(update={"sample": sample})
