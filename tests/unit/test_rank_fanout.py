"""Rank fanned out over target groups (stages.rank.targetGroups): the units' parts merge into the ranking one process writes."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from panels import make_panel, write_panel
from trainpipe.contract.names import Stage
from trainpipe.contract.pipeline import PipelineSpec
from trainpipe.io.layout import Layout
from trainpipe.runner.steps import RunContext, run_stage
from trainpipe.runner.steps.context import StageInputError
from trainpipe.runner.steps.rank import rank_aggregate, rank_unit, target_group
from trainpipe.stages.rank import RankParams, finish_rankings, prepare_ranking, rank_targets, score_group


@pytest.mark.parametrize("n,units", [(5, 1), (5, 2), (5, 3), (5, 5), (3, 2), (7, 4)])
def test_groups_are_contiguous_near_equal_and_cover_every_target_once(n, units):
    targets = [f"t{i}" for i in range(n)]
    groups = [target_group(targets, i, units) for i in range(units)]
    assert [t for g in groups for t in g] == targets  # laid end to end: the single process's order
    assert max(map(len, groups)) - min(map(len, groups)) <= 1


def test_a_unit_index_outside_the_groups_is_refused():
    with pytest.raises(ValueError, match="outside 0..1"):
        target_group(["a", "b"], 2, 2)


def test_scoring_in_groups_and_finishing_equals_ranking_at_once():
    frame = make_panel(n_days=400)
    features, targets = ["sig", "noise_0", "noise_1", "noise_2", "noise_3"], ["fwd_ret_1d", "y_up_1d", "fwd_ret_noise_1d"]
    params = RankParams(folds=2, threads=1, seed=3)
    whole = rank_targets(frame, features, targets, 1440.0, params)
    prepared = prepare_ranking(frame, features, targets, 1440.0, params)
    parts = [score_group(prepared, target_group(targets, i, 2)) for i in range(2)]
    split = finish_rankings(parts, prepared.params, lambda: prepared)
    pd.testing.assert_frame_equal(split.table, whole.table)
    pd.testing.assert_frame_equal(split.oos_scores, whole.oos_scores)
    assert split.selected == whole.selected and split.features == whole.features and split.leaks == whole.leaks


def test_a_too_good_target_is_rescanned_over_every_label_when_the_parts_are_merged():
    """The suspect rescan needs the rows again: the aggregate prepares them only then, and still matches the single pass."""
    frame = make_panel()  # as test_rank's too-good case: an interaction only trees exploit makes the noise target too good
    sign = np.random.default_rng(3).choice([-1.0, 1.0], size=len(frame))
    frame["scaled"], frame["sign"] = frame["fwd_ret_noise_1d"] * sign, sign
    features, targets = ["sig", "noise_0", "noise_1", "scaled", "sign"], ["fwd_ret_1d", "y_up_1d", "fwd_ret_noise_1d"]
    params = RankParams(folds=3, embargo_bars=2, threads=1, block_on_leakage=False)
    whole = rank_targets(frame, features, targets, 1440.0, params)
    assert (whole.table["status"] == "TOO_GOOD").any()
    prepared = prepare_ranking(frame, features, targets, 1440.0, params)
    calls = []
    parts = [score_group(prepared, target_group(targets, i, 3)) for i in range(3)]
    split = finish_rankings(parts, prepared.params, lambda: calls.append(1) or prepared)
    assert calls == [1]
    pd.testing.assert_frame_equal(split.table, whole.table)
    assert split.suspects == whole.suspects


def _ctx(tmp_path, name: str, groups: int) -> RunContext:
    spec = PipelineSpec.model_validate({
        "data": {"dir": str(tmp_path / "data"), "minRowsPerSymbol": 100}, "features": {"topM": 3}, "ranking": {"folds": 2}, "seed": 3,
        "stages": {"rank": {"targetGroups": groups}},
    })
    return RunContext(spec=spec, layout=Layout(tmp_path / name), threads=1)


def test_the_fanned_out_rank_writes_the_files_one_process_writes(tmp_path):
    write_panel(make_panel(n_days=400), tmp_path / "data")
    one, fanned = _ctx(tmp_path, "one", 1), _ctx(tmp_path, "fanned", 2)
    run_stage(one, Stage.RANK)
    run_stage(fanned, Stage.RANK)  # the local runner: unit 0, unit 1, then the aggregate
    assert sorted(p.name for p in fanned.layout.rank_part(0, 2).parent.iterdir()) == ["000-of-002.json", "001-of-002.json"]
    for layout_path in ("rankings_json",):
        a = json.loads(getattr(one.layout, layout_path).read_text())
        b = json.loads(getattr(fanned.layout, layout_path).read_text())
        a.pop("generated_at", None), b.pop("generated_at", None)
        assert a == b
    for parquet in ("rankings_parquet", "oos_scores_parquet"):
        pd.testing.assert_frame_equal(pd.read_parquet(getattr(one.layout, parquet)), pd.read_parquet(getattr(fanned.layout, parquet)))


def test_the_aggregate_names_a_missing_or_stale_unit(tmp_path):
    write_panel(make_panel(n_days=300), tmp_path / "data")
    ctx = _ctx(tmp_path, "out", 2)
    rank_unit(ctx, 0, 2)
    with pytest.raises(StageInputError, match=r"unit 1 of 2 has not written its part.*--unit-index 1 --units 2"):
        rank_aggregate(ctx, 2)
    rank_unit(ctx, 1, 2)
    part = ctx.layout.rank_part(1, 2)
    part.write_text(part.read_text().replace('"key": "', '"key": "stale', 1))
    with pytest.raises(StageInputError, match="unit 1 of 2 was scored from other inputs"):
        rank_aggregate(ctx, 2)


def test_the_cli_scores_one_group_per_call_and_the_aggregate_merges(tmp_path, capsys):
    """What the rank Job's pods would run: `rank --unit-index I` per group, then `rank --aggregate`."""
    from trainpipe.cli.main import main

    write_panel(make_panel(n_days=400), tmp_path / "data")
    spec = json.dumps({"data": {"dir": str(tmp_path / "data"), "minRowsPerSymbol": 100}, "features": {"topM": 3}, "ranking": {"folds": 2},
                       "seed": 3, "stages": {"rank": {"targetGroups": 2}}})
    out = tmp_path / "cli"
    common = ["--spec-json", spec, "--output-dir", str(out), "--threads", "1"]
    assert main(["rank", "--unit-index", "0", *common]) == 0
    assert not Layout(out).rankings_json.exists()  # a unit writes its part only
    assert main(["rank", "--unit-index", "1", *common]) == 0
    assert main(["rank", "--aggregate", *common]) == 0
    one = _ctx(tmp_path, "one", 1)
    run_stage(one, Stage.RANK)
    a, b = json.loads(one.layout.rankings_json.read_text()), json.loads(Layout(out).rankings_json.read_text())
    assert a == b


def test_the_operators_groups_flag_stands_for_the_stages_block_its_spec_file_leaves_out(tmp_path, capsys):
    """The spec file a cluster's pods read has no `stages`: the rank Jobs pass `--groups N`, units and merge alike."""
    from trainpipe.cli.main import main

    write_panel(make_panel(n_days=400), tmp_path / "data")
    spec = json.dumps({"data": {"dir": str(tmp_path / "data"), "minRowsPerSymbol": 100}, "features": {"topM": 3}, "ranking": {"folds": 2}, "seed": 3})
    out = tmp_path / "cli"
    common = ["--spec-json", spec, "--output-dir", str(out), "--threads", "1", "--groups", "2"]
    assert main(["rank", "--unit-index", "1", *common]) == 0
    assert main(["rank", "--unit-index", "0", *common]) == 0
    assert main(["rank", "--aggregate", *common]) == 0
    one = _ctx(tmp_path, "one", 1)
    run_stage(one, Stage.RANK)
    assert json.loads(one.layout.rankings_json.read_text()) == json.loads(Layout(out).rankings_json.read_text())
    with pytest.raises(ValueError, match=r"unit index 2 is outside 0\.\.1"):
        main(["rank", "--unit-index", "2", *common])
