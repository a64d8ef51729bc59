"""The run's one holdout cut: fixed before ranking, counted in each symbol's own bars, never read by rank/select/plan."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from panels import make_panel, write_panel
from trainpipe.contract.cut import HoldoutCut
from trainpipe.contract.names import Stage
from trainpipe.contract.pipeline import PipelineSpec
from trainpipe.cv import cut_split, development_mask, holdout_cut, pinned_mask
from trainpipe.io.layout import Layout
from trainpipe.io.plan_files import read_training_plan
from trainpipe.io.stage_files import read_data_pins, read_rankings
from trainpipe.runner.steps import RunContext, run_stage


def _days(start: str, n: int, freq: str = "D") -> np.ndarray:
    return pd.date_range(start, periods=n, freq=freq).to_numpy(dtype="datetime64[ns]")


def test_each_symbol_holds_out_its_own_latest_bars_after_a_purge_in_its_own_bars():
    # FX on business days beside crypto every day, and a third symbol whose history ends earlier.
    fx, crypto, old = _days("2021-01-01", 100, "B"), _days("2021-01-01", 140), _days("2019-01-01", 50)
    ts = np.concatenate([fx, crypto, old])
    symbols = np.array(["EURUSD=X"] * 100 + ["BTC-USD"] * 140 + ["OLD"] * 50)
    cut = holdout_cut(ts, symbols, 0.2, {"fwd_ret_1d": 1, "y_up_1h": 1}, embargo_bars=2)
    assert cut.symbols["EURUSD=X"].holdout_rows == 20 and cut.symbols["BTC-USD"].holdout_rows == 28
    assert cut.symbols["OLD"].holdout_rows == 10
    assert cut.purge_bars == 3 and cut.horizon_bars == {"fwd_ret_1d": 1, "y_up_1h": 1}
    dev = development_mask(ts, symbols, cut)
    # Development = bars before (holdout start − purge), counted per symbol.
    assert dev[symbols == "EURUSD=X"].sum() == 80 - 3
    assert dev[symbols == "BTC-USD"].sum() == 112 - 3
    assert dev[symbols == "OLD"].sum() == 40 - 3
    assert pinned_mask(ts, symbols, cut).all()


def test_the_cut_survives_a_round_trip_through_its_wire_form():
    ts, symbols = _days("2022-03-01", 60, "h"), np.array(["A"] * 60)
    cut = holdout_cut(ts, symbols, 0.25, {"fwd_ret_1h": 1}, 1)
    again = HoldoutCut.model_validate(json.loads(json.dumps(cut.to_wire())))
    assert again == cut
    assert (development_mask(ts, symbols, again) == development_mask(ts, symbols, cut)).all()


def test_too_little_history_for_the_cut_is_an_error_naming_the_symbol_and_the_fix():
    with pytest.raises(ValueError, match=r"symbol A: 10 bars .*holdoutFraction"):
        holdout_cut(_days("2022-01-01", 10), np.array(["A"] * 10), 0.2, {"fwd_ret_6": 6}, 2)


def test_training_split_purges_each_jobs_horizon_before_the_holdout_and_ignores_appended_bars():
    ts = np.concatenate([_days("2022-01-01", 100), _days("2022-01-01", 100)])
    symbols = np.array(["A"] * 100 + ["B"] * 100)
    cut = holdout_cut(ts, symbols, 0.2, {"fwd_ret_8d": 8}, embargo_bars=2)
    fold = cut_split(ts, symbols, cut, purge_bars=4)
    assert len(fold.test) == 40 and len(fold.train) == 2 * (80 - 4)
    assert ts[fold.train].max() < ts[fold.test].min() - np.timedelta64(3, "D")
    # Ten bars appended later: the pinned panel leaves them out, so the split is the same rows.
    longer = np.concatenate([_days("2022-01-01", 110), _days("2022-01-01", 110)])
    longer_symbols = np.array(["A"] * 110 + ["B"] * 110)
    assert pinned_mask(longer, longer_symbols, cut).sum() == 200


# ---------------------------------------------------------------- the perturbed-holdout test


def _spec(data: Path) -> PipelineSpec:
    return PipelineSpec.model_validate({
        "data": {"dir": str(data), "minRowsPerSymbol": 100},
        "targets": {"topN": 3}, "features": {"topM": 3}, "ranking": {"folds": 3, "embargoBars": 2},
        "routing": {"minSampleSizeCs": 100, "minSampleSizeSymbol": 50},
        "training": {"families": ["lightgbm"], "holdoutFraction": 0.25}, "seed": 3,
    })


def _run_until_plan(data: Path, out: Path) -> Layout:
    ctx = RunContext(spec=_spec(data), layout=Layout(out), threads=1)
    for stage in (Stage.RANK, Stage.SELECT, Stage.PLAN):
        run_stage(ctx, stage)
    return ctx.layout


def _perturb(frame: pd.DataFrame, cut: HoldoutCut, how: str, seed: int = 0) -> pd.DataFrame:
    """Every row at or after its symbol's holdout start changed in every feature and target column."""
    out = frame.copy()
    start = out["symbol"].map({s: pd.Timestamp(c.holdout_start) for s, c in cut.symbols.items()})
    after = out["ts"] >= start
    rng = np.random.default_rng(seed)
    for column in [c for c in out.columns if c not in ("ts", "symbol")]:
        values = out.loc[after, column].to_numpy()
        if how == "shuffle":
            values = rng.permutation(values)
        elif how == "nan":
            values = np.full(len(values), np.nan)
        else:
            values = values * 100
        out.loc[after, column] = values
    return out


def _outputs(layout: Layout) -> dict[str, bytes]:
    """Every rank/select/plan artefact whose content may depend on data; plan metadata (digests, run id, time) left out."""
    files = {p.relative_to(layout.root).as_posix(): p.read_bytes()
             for p in sorted([*layout.ranking_dir.rglob("*"), *layout.selection_dir.rglob("*"), layout.routing_candidates])
             if p.is_file() and p != layout.data_pins_json}
    routing = json.loads(layout.routing_plan_json.read_text())
    files["routing_plan.json without metadata"] = json.dumps({k: v for k, v in routing.items() if k != "metadata"}, sort_keys=True).encode()
    plan = read_training_plan(layout.master_training_plan)
    files["plan jobs"] = json.dumps([job.to_wire() for job in plan.jobs], sort_keys=True).encode()
    files["plan cut"] = json.dumps(plan.metadata.holdout_cut.to_wire() if plan.metadata.holdout_cut else None).encode()
    return files


@pytest.fixture(scope="module")
def clean_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("cut")
    frame = make_panel(n_days=320, seed=11, signal=0.15)
    write_panel(frame, root / "data")
    layout = _run_until_plan(root / "data", root / "out")
    return root, frame, layout


@pytest.mark.parametrize("how", ["shuffle", "nan", "times100"])
def test_rank_select_and_plan_never_read_the_holdout(clean_run, how):
    root, frame, layout = clean_run
    cut = read_rankings(layout).holdout_cut
    plan = read_training_plan(layout.master_training_plan)
    assert plan.metadata.holdout_cut == cut and plan.jobs, "the plan records the cut and has jobs to compare"
    assert cut.purge_bars == 1 + 2  # the longest horizon (1 day) plus the embargo

    data = root / f"data-{how}"
    shutil.rmtree(data, ignore_errors=True)
    write_panel(_perturb(frame, cut, how), data)
    perturbed = _run_until_plan(data, root / f"out-{how}")
    assert read_data_pins(perturbed).digest != read_data_pins(layout).digest, "the data really changed"

    before, after = _outputs(layout), _outputs(perturbed)
    assert sorted(before) == sorted(after)
    changed = [name for name in before if before[name] != after[name]]
    assert changed == []


def test_training_reads_exactly_the_panel_rank_read_and_scores_on_the_cut(tmp_path):
    # maxRowsPerSymbol keeps each symbol's latest 400 of 700 bars; bars appended after rank must not count either.
    frame = make_panel(n_days=700, seed=5)
    write_panel(frame, tmp_path / "data")
    spec = PipelineSpec.model_validate({
        "data": {"dir": str(tmp_path / "data"), "minRowsPerSymbol": 100, "maxRowsPerSymbol": 400},
        "targets": {"include": ["fwd_ret_1d", "y_up_1d"]}, "features": {"topM": 3}, "ranking": {"folds": 2, "embargoBars": 2},
        "routing": {"minSampleSizeCs": 50, "minSampleSizeSymbol": 20},
        "training": {"families": ["lightgbm"], "holdoutFraction": 0.25, "allowEmptyPlan": True}, "seed": 3,
    })
    ctx = RunContext(spec=spec, layout=Layout(tmp_path / "out"), threads=1)
    for stage in (Stage.RANK, Stage.SELECT, Stage.PLAN):
        run_stage(ctx, stage)
    plan = read_training_plan(ctx.layout.master_training_plan)
    cut = plan.metadata.holdout_cut
    assert plan.jobs and {c.rows for c in cut.symbols.values()} == {400}
    later = make_panel(n_days=730, seed=5)  # 30 more bars on every symbol since rank ran
    write_panel(later, tmp_path / "data")
    run_stage(ctx, Stage.CPU)
    for job in plan.jobs:
        metrics = json.loads((ctx.layout.model_dir(job.job_id, "lightgbm") / "metrics.json").read_text())
        symbols = [job.symbol] if job.symbol else sorted(cut.symbols)
        first = min(pd.Timestamp(cut.symbols[s].first_ts) for s in symbols)
        start = min(pd.Timestamp(cut.symbols[s].holdout_start) for s in symbols)
        last = max(pd.Timestamp(cut.symbols[s].last_ts) for s in symbols)
        assert metrics["n_train"] + metrics["n_test"] <= 400 * len(symbols)
        assert pd.Timestamp(metrics["holdout"]["test_start"]).tz_localize(None) >= start.tz_localize(None)
        assert first.tz_localize(None) <= pd.Timestamp(metrics["holdout"]["train_end"]).tz_localize(None) < start.tz_localize(None)
        assert metrics["n_test"] <= sum(cut.symbols[s].holdout_rows for s in symbols) and last is not None
