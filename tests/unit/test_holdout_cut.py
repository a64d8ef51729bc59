"""The run's one holdout cut: fixed before ranking, one instant for every symbol, never read by rank/select/plan."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from panels import make_panel, unequal_histories, write_panel
from trainpipe.contract.cut import HoldoutCut, SymbolCoverage
from trainpipe.contract.names import Stage
from trainpipe.contract.pipeline import PipelineSpec
from trainpipe.cv import cut_split, development_end, development_mask, holdout_cut, pinned_mask, symbol_coverage
from trainpipe.io.layout import Layout
from trainpipe.io.plan_files import read_training_plan
from trainpipe.io.stage_files import read_data_pins, read_rankings
from trainpipe.report.html import render
from trainpipe.runner.steps import RunContext, run_stage


def _days(start: str, n: int, freq: str = "D") -> np.ndarray:
    return pd.date_range(start, periods=n, freq=freq).to_numpy(dtype="datetime64[ns]")


def _day(text: str) -> np.datetime64:
    return np.datetime64(text, "ns")


def test_one_holdout_start_for_every_symbol_at_the_quantile_of_the_panels_timestamps():
    # FX on business days beside crypto every day, a symbol delisted long before, one listed after the cut, one shortly before.
    fx, crypto = _days("2021-01-01", 100, "B"), _days("2021-01-01", 140)
    old, late, recent = _days("2019-01-01", 55), _days("2021-05-15", 6), _days("2021-03-25", 40)
    ts = np.concatenate([fx, crypto, old, late, recent])
    symbols = np.array(["EURUSD=X"] * 100 + ["BTC-USD"] * 140 + ["OLD"] * 55 + ["LATE"] * 6 + ["RECENT"] * 40)
    cut = holdout_cut(ts, symbols, 0.2, {"fwd_ret_1d": 1, "y_up_1h": 1}, embargo_bars=2, min_development_rows=20)
    # 195 distinct timestamps: the holdout starts at the 156th (index floor(0.8 × 195)), a Monday, for every symbol.
    assert len(np.unique(ts)) == 195 and cut.holdout_start == "2021-04-12T00:00:00.000000000Z"
    # Three bars before it is Friday on the daily calendar, but Wednesday in EURUSD's own bars: the earlier one wins.
    assert cut.purge_bars == 3 and cut.development_end == "2021-04-07T00:00:00.000000000Z"
    coverage = {name: (c.development_rows, c.holdout_rows, c.coverage) for name, c in cut.symbols.items()}
    assert coverage == {
        "BTC-USD": (96, 39, SymbolCoverage.FULL), "EURUSD=X": (68, 29, SymbolCoverage.FULL),
        "OLD": (55, 0, SymbolCoverage.NO_HOLDOUT), "LATE": (0, 6, SymbolCoverage.NO_DEVELOPMENT),
        "RECENT": (13, 22, SymbolCoverage.SHORT),
    }
    dev = development_mask(ts, symbols, cut)
    assert (ts[dev] < _day("2021-04-07")).all() and dev.sum() == 96 + 68 + 55 + 13
    assert pinned_mask(ts, symbols, cut).all()


@pytest.mark.parametrize("development_rows,holdout_rows,minimum,expected", [
    (500, 100, 200, SymbolCoverage.FULL),
    (150, 100, 200, SymbolCoverage.SHORT),  # fewer development bars than data.minRowsPerSymbol: a warning
    (500, 0, 200, SymbolCoverage.NO_HOLDOUT),  # delisted before the cut
    (0, 100, 200, SymbolCoverage.NO_DEVELOPMENT),  # listed after the cut
    (0, 0, 200, SymbolCoverage.NO_DEVELOPMENT),  # every bar inside the purge: nothing to train either
    (150, 0, 200, SymbolCoverage.NO_HOLDOUT),
])
def test_symbol_coverage_table(development_rows, holdout_rows, minimum, expected):
    assert symbol_coverage(development_rows, holdout_rows, minimum) is expected


@pytest.mark.parametrize("calendars,expected", [
    ({"A": ("2022-01-03", 30, "D"), "B": ("2022-01-03", 30, "D")}, "2022-01-21"),  # shared calendar: the union's bars
    ({"A": ("2022-01-03", 30, "D"), "B": ("2022-01-03", 21, "B")}, "2022-01-19"),  # B's weekend counts in B's own bars
    ({"A": ("2022-01-03", 30, "D"), "B": ("2022-01-03", 19, "D")}, "2022-01-21"),  # B ends inside the purge: no holdout to reach
    ({"A": ("2022-01-03", 30, "D"), "B": ("2022-01-22", 12, "D")}, "2022-01-21"),  # B listed inside the purge
    ({"A": ("2022-01-03", 30, "D"), "B": ("2022-01-03", 8, "W-MON")}, "2022-01-03"),  # weekly B: three of its bars back
])
def test_development_end_is_the_purge_counted_in_the_union_and_in_each_symbols_own_bars(calendars, expected):
    ts = np.concatenate([_days(start, n, freq) for start, n, freq in calendars.values()])
    symbols = np.concatenate([[name] * n for name, (_, n, _) in calendars.items()])
    assert development_end(ts, symbols, _day("2022-01-24"), purge_bars=3) == _day(expected)  # a Monday


def test_the_cut_survives_a_round_trip_through_its_wire_form():
    ts, symbols = _days("2022-03-01", 60, "h"), np.array(["A"] * 60)
    cut = holdout_cut(ts, symbols, 0.25, {"fwd_ret_1h": 1}, 1, min_development_rows=20)
    again = HoldoutCut.model_validate(json.loads(json.dumps(cut.to_wire())))
    assert again == cut
    assert (development_mask(ts, symbols, again) == development_mask(ts, symbols, cut)).all()


def test_a_short_late_or_delisted_symbol_is_a_warning_naming_it_and_only_an_empty_panel_is_an_error():
    ts = np.concatenate([_days("2022-01-01", 200), _days("2022-01-01", 60), _days("2022-06-15", 19), _days("2022-05-20", 42)])
    symbols = np.array(["A"] * 200 + ["GONE"] * 60 + ["NEW"] * 19 + ["BRIEF"] * 42)
    cut = holdout_cut(ts, symbols, 0.2, {"fwd_ret_1d": 1}, 2, min_development_rows=50)
    warnings = cut.warnings()
    assert [line.split(":")[0] for line in warnings] == ["symbol BRIEF", "symbol GONE", "symbol NEW"]
    assert "short history, 18 development bars" in warnings[0] and "data.minRowsPerSymbol=50" in warnings[0]
    assert "ends before the cut" in warnings[1] and "no holdout" in warnings[1]
    assert "listed after the cut" in warnings[2] and "trains nothing" in warnings[2]
    with pytest.raises(ValueError, match=r"10 timestamps leave no development bars .*holdoutFraction"):
        holdout_cut(_days("2022-01-01", 10), np.array(["A"] * 10), 0.2, {"fwd_ret_6": 6}, 2, min_development_rows=0)


def test_training_split_purges_each_jobs_horizon_before_the_one_holdout_and_ignores_appended_bars():
    # B is delisted early: under a cut per symbol its holdout began in April while A trained into August.
    ts = np.concatenate([_days("2022-01-01", 250), _days("2022-01-01", 120)])
    symbols = np.array(["A"] * 250 + ["B"] * 120)
    cut = holdout_cut(ts, symbols, 0.2, {"fwd_ret_8d": 8}, embargo_bars=2, min_development_rows=0)
    split = cut_split(ts, symbols, cut, purge_bars=4)
    assert len(split.test) == 50 and set(symbols[split.test]) == {"A"}
    assert len(split.train) == (200 - 4) + 120
    assert ts[split.train].max() == split.train_end - np.timedelta64(1, "D") == split.holdout_start - np.timedelta64(5, "D")
    # Ten bars appended later: the pinned panel leaves them out, so the split is the same rows.
    longer = np.concatenate([_days("2022-01-01", 260), _days("2022-01-01", 120)])
    longer_symbols = np.array(["A"] * 260 + ["B"] * 120)
    assert pinned_mask(longer, longer_symbols, cut).sum() == 370


# ---------------------------------------------------------------- the perturbed-holdout test


def _spec(data: Path) -> PipelineSpec:
    return PipelineSpec.model_validate({
        "data": {"dir": str(data), "minRowsPerSymbol": 100},
        "targets": {"topN": 3}, "features": {"topM": 3}, "ranking": {"folds": 3, "embargoBars": 2},
        "routing": {"minSampleSizeCs": 100, "minSampleSizeSymbol": 50},
        "training": {"families": ["reward_based"], "holdoutFraction": 0.25}, "seed": 3,  # a linear family: quick to train
    })


def _run_until_plan(data: Path, out: Path) -> Layout:
    ctx = RunContext(spec=_spec(data), layout=Layout(out), threads=1)
    for stage in (Stage.RANK, Stage.SELECT, Stage.PLAN):
        run_stage(ctx, stage)
    return ctx.layout


def _perturb(frame: pd.DataFrame, cut: HoldoutCut, how: str, seed: int = 0) -> pd.DataFrame:
    """Every row at or after the holdout start changed in every feature and target column."""
    out = frame.copy()
    after = out["ts"] >= pd.Timestamp(cut.holdout_start)
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
    # Unequal histories: DDD is delisted early and EEE listed late, so a cut per symbol would hold out
    # DDD's last bars while the others' development rows run on for months past them.
    frame = unequal_histories(make_panel(n_days=320, symbols=("AAA", "BBB", "CCC", "DDD", "EEE"), seed=11, signal=0.15),
                              {"DDD": (0, 150), "EEE": (170, 320)})
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
    assert {name: c.coverage for name, c in cut.symbols.items() if c.coverage is not SymbolCoverage.FULL} == {
        "DDD": SymbolCoverage.NO_HOLDOUT, "EEE": SymbolCoverage.SHORT}

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
        "evidence": {"trainAnyway": True},  # which rows each stage reads is under test, not the evidence
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
        start = pd.Timestamp(cut.holdout_start)
        assert metrics["n_train"] + metrics["n_test"] <= 400 * len(symbols)
        assert pd.Timestamp(metrics["holdout"]["test_start"]) == start == pd.Timestamp(metrics["holdout"]["holdout_start"])
        assert first <= pd.Timestamp(metrics["holdout"]["train_end"]) < start
        assert metrics["n_test"] <= sum(cut.symbols[s].holdout_rows for s in symbols)


def test_with_unequal_histories_no_holdout_row_precedes_a_training_row_of_its_job(clean_run):
    # The reported defect: with symbols delisted early, a cross-sectional job's holdout began at the
    # delisted symbols' own cut while the survivors trained on: its train_end fell 14 months after its
    # test_start (446 days on a 1,000-day panel). On this panel a cut per symbol gave the CS job a
    # train_end 166 days after its test_start: DDD's holdout began on day 112 (2020-04-22), EEE trained to
    # day 278 (2020-10-05). Now every job tests from day 240 (2020-08-28) and trains to day 236 (2020-08-24).
    root, _, layout = clean_run
    run_stage(RunContext(spec=_spec(root / "data"), layout=layout, threads=1), Stage.CPU)
    plan = read_training_plan(layout.master_training_plan)
    cut = plan.metadata.holdout_cut
    start, dev_end = pd.Timestamp(cut.holdout_start), pd.Timestamp(cut.development_end)
    assert (start, dev_end) == (pd.Timestamp("2020-08-28", tz="UTC"), pd.Timestamp("2020-08-25", tz="UTC"))
    assert any(job.symbol is None for job in plan.jobs), "a cross-sectional job to check"
    for job in plan.jobs:
        holdout = json.loads((layout.model_dir(job.job_id, "reward_based") / "metrics.json").read_text())["holdout"]
        train_end, test_start = pd.Timestamp(holdout["train_end"]), pd.Timestamp(holdout["test_start"])
        # Now: one holdout start for every job, and training ends the purge (1-day horizon + 2 bars) before it.
        assert test_start == start and train_end == dev_end - pd.Timedelta(days=1) == start - pd.Timedelta(days=4), job.job_id
    # DDD ends before the cut: no model of its own (nothing to score it on), and the routing plan says why.
    assert "DDD" not in {job.symbol for job in plan.jobs}
    routing = json.loads(layout.routing_plan_json.read_text())
    reasons = [" ".join(t["symbols"]["DDD"]["reason"]) for t in routing["targets"].values()]
    assert reasons and all("ends before the cut" in r and "no holdout" in r for r in reasons)
    # The report states the one instant and says why DDD has no holdout and EEE a short history.
    page = render(layout)
    assert "the holdout starts at <b>2020-08-28T00:00:00.000000000Z</b>" in page
    assert "symbol DDD: ends before the cut" in page and "symbol EEE: short history, 67 development bars" in page
