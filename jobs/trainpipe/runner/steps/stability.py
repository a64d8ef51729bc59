"""The stability of a target's selection as the select step records it: against the previous run, and resampled.

Called by `trainpipe.runner.steps.selection` when a selection is made, and by the runner and the select
unit when a selection is cached or copied from another run (`refresh_previous`). The checks themselves
are pure (`trainpipe.stages.stability`); this module finds the previous run's selection and writes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from trainpipe.contract.base import SnakeContract
from trainpipe.contract.names import Stability, Stage
from trainpipe.contract.selection import PreviousRunCheck, ResampledCheck, SelectionEntry, SelectionStability, SelectionSummary
from trainpipe.contract.summaries import SelectStageSummary
from trainpipe.io import stage_files
from trainpipe.io.layout import Layout
from trainpipe.io.stage_files import read_previous_features, read_selection
from trainpipe.runner import records
from trainpipe.runner.steps.context import RunContext

# Features the spec names (features.auto off) are not chosen from the data: no resample of it can change them.
GIVEN_FEATURES = ResampledCheck(state=Stability.STABLE, overlap=1.0, kendall_tau=1.0, resamples=0,
                                note="features given by the spec (features.auto is off): the same on every resample")


def resampled_checks(ctx: RunContext, frame: pd.DataFrame, x, features: list[str], to_select, selections) -> dict[str, ResampledCheck]:
    """The resampled stability check of each target (`trainpipe.stages.stability`), on the rows select scored."""
    from trainpipe.data.frames import frame_ts
    from trainpipe.stages.stability import ResampleParams, resampled_stability, target_rows

    ts = frame_ts(frame)
    rows = {t.target: target_rows(frame[t.target].to_numpy(dtype=np.float64), ts, t.task, t.horizon_bars, len(selections[t.target].features))
            for t in to_select}
    params = ResampleParams(seed=ctx.spec.seed, embargo_bars=ctx.spec.ranking.embargo_bars, threads=ctx.threads)
    gains = {t: s.lightgbm_gains for t, s in selections.items() if s.lightgbm_gains is not None}
    found = resampled_stability(x, features, rows, params, on_target=lambda t: ctx.tick(Stage.SELECT, f"{t} · resampled stability"),
                                reference_gains=gains)
    return {t: ResampledCheck(state=r.stability, overlap=r.overlap, kendall_tau=r.kendall_tau, note=r.note, resamples=r.resamples,
                              block_bars=r.block_bars, seed=params.seed) for t, r in found.items()}


def selection_stability(previous: PreviousRunCheck, resampled: ResampledCheck) -> SelectionStability:
    from trainpipe.stages.stability import combine

    return SelectionStability(state=combine(previous.state, resampled.state), against_previous=previous, resampled=resampled)


@dataclass(frozen=True)
class PreviousSelection:
    """The previous run's selection of one target, or why there is none to compare with."""

    run: str | None  # the run folder given (`--previous-run`); None: this output folder's own earlier selection
    features: list[str] | None
    note: str | None = None


def given_previous_run(ctx: RunContext) -> Path | None:
    """The previous run folder given, unless it is this output folder itself (then its own earlier selection counts)."""
    given = ctx.previous_run
    return None if given is None or given.resolve() == ctx.layout.root.resolve() else given


def previous_selection(ctx: RunContext, target: str) -> PreviousSelection:
    """What the previous run selected for `target`: in `ctx.previous_run` when given (a cluster run's last succeeded
    run), else in this output folder (a local run's folder holds its last selection until this one replaces it)."""
    given = given_previous_run(ctx)
    run = None if given is None else str(given)
    if given is None and not ctx.layout.selected_features(target).exists():
        return PreviousSelection(None, None, "first run: no earlier selection of this target in the output folder")
    try:
        return PreviousSelection(run, read_previous_features(ctx.layout if given is None else Layout(given), target))
    except stage_files.StageFileError as exc:
        return PreviousSelection(run, None, f"no comparison with the previous run: {exc}")


def against_previous(chosen: list[str], previous: PreviousSelection) -> PreviousRunCheck:
    """The check against the previous run's selection; UNKNOWN, with the reason, when there is none to compare with."""
    from trainpipe.stages.select import stability

    if previous.features is None:
        return PreviousRunCheck(state=Stability.UNKNOWN, overlap=None, kendall_tau=None, note=previous.note, previous_run=previous.run)
    report = stability(chosen, previous.features)
    note = None if previous.features else "the previous run's selection kept no feature"
    return PreviousRunCheck(state=report.stability, overlap=report.overlap, kendall_tau=report.kendall_tau, note=note,
                            previous_run=previous.run, previous_features=previous.features)


def refresh_previous(ctx: RunContext, target: str) -> SelectionEntry | None:
    """Compare a cached or copied selection with the previous run given now; the new entry when the comparison changed.

    The previous run is not part of the select key: rerunning the consensus because the last good run
    changed would make every cluster run recompute selection. The comparison is a cheap function of the
    two feature lists, so it is made again here and written into the selection file and its unit record
    (same key, same outputs). Without `--previous-run` the folder's own earlier selection was compared
    when this one was made, and the file on disk is now this selection itself: nothing to redo.
    """
    if given_previous_run(ctx) is None:
        return None
    current = read_selection(ctx.layout, target)
    check = against_previous(list(current.features), previous_selection(ctx, target))
    if check == current.stability.against_previous:
        return None
    stab = selection_stability(check, current.stability.resampled)
    stage_files.write_selection(ctx.layout, current.model_copy(update={"stability": stab}))
    entry = SelectionEntry(n_features=len(current.features), stability=stab.state)
    path = ctx.layout.select_unit_record(target)
    record = records.read_record_at(path)
    if record is not None:
        records.write_record_at(path, record.stage, record.key, list(record.outputs), entry.to_wire(), unit=record.unit,
                                reused_from=record.reused_from)
    return entry


def refresh_select(ctx: RunContext, summary: SnakeContract) -> SelectStageSummary | None:
    """The select stage cached or copied whole: `refresh_previous` for each target; the new summary when any changed."""
    if not isinstance(summary, SelectStageSummary):
        raise TypeError(f"the select step's summary is a SelectStageSummary, not {type(summary).__name__}")
    changed = {t: e for t in summary.targets if (e := refresh_previous(ctx, t)) is not None}
    if not changed:
        return None
    entries = {t: changed.get(t, e) for t, e in summary.targets.items()}
    stage_files.write_selection_summary(ctx.layout, SelectionSummary(targets=entries))
    return SelectStageSummary(targets=entries)
