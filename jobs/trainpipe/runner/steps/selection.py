"""The select step: per kept target, a consensus of importance methods and its stability; each target is also a unit of its own (one pod of the select Job)."""

from __future__ import annotations

from dataclasses import replace

import pandas as pd

from trainpipe.contract.names import Stage, TaskType
from trainpipe.contract.rankings import RankingsFile
from trainpipe.contract.selection import ResampledCheck, SelectionEntry, SelectionSummary, TargetSelection
from trainpipe.contract.summaries import SelectStageSummary
from trainpipe.io import stage_files
from trainpipe.io.atomic import write_parquet
from trainpipe.io.layout import Layout
from trainpipe.io.stage_files import read_rankings
from trainpipe.runner import records
from trainpipe.runner.digests import digest_json
from trainpipe.runner.steps.context import (
    RunContext,
    development_frame,
    load,
)
from trainpipe.runner.steps.stability import GIVEN_FEATURES, against_previous, previous_selection, resampled_checks, selection_stability


def select_step(ctx: RunContext) -> SelectStageSummary:
    ranking = read_rankings(ctx.layout)
    entries = select_targets(ctx, ranking, ranking.selected)
    stage_files.write_selection_summary(ctx.layout, SelectionSummary(targets=entries))
    return SelectStageSummary(targets=entries)


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
    # The shuffled-target null trims features, unless the evidence gates are off (evidence.trainAnyway).
    params = replace(SelectParams.from_spec(ctx.spec, ctx.threads), null_gate=not ranking.gates_off)
    tasks = {target: ranking.target(target).task for target in targets}
    selections, resampled = {}, {}
    if ctx.spec.features.auto:
        to_select = [TargetToSelect(t, tasks[t], cut.horizon_bars[t]) for t in targets]
        ctx.tick(Stage.SELECT, total=len(targets) * (len(params.methods) + 1))
        selections = select_all(frame, to_select, features, params, x=x, on_step=lambda t, m: ctx.tick(Stage.SELECT, f"{t} · {m}"))
        resampled = resampled_checks(ctx, frame, x, features, to_select, selections)
    del x
    return {target: _write_selection(ctx, target, tasks[target], selections.get(target), resampled.get(target)) for target in targets}


def _write_selection(ctx: RunContext, target: str, task: TaskType, selection, resampled: ResampledCheck | None) -> SelectionEntry:
    if selection is not None:
        chosen, scores = list(selection.features), selection.scores
    else:
        chosen = list(ctx.spec.features.include)
        scores = pd.DataFrame({"feature": chosen, "consensus": float("nan"), "support": 0, "selected": True})
    # Read before this selection replaces the folder's own earlier one (the local layout reuses one folder).
    previous = against_previous(chosen, previous_selection(ctx, target))
    stab = selection_stability(previous, resampled or GIVEN_FEATURES)
    write_parquet(ctx.layout.feature_scores(target), scores)
    stage_files.write_selection(ctx.layout, TargetSelection(target=target, task=task, features=chosen, stability=stab))
    entry = SelectionEntry(n_features=len(chosen), stability=stab.state)
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
