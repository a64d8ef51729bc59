"""Table tests of the training stages' pure decisions: family selection, units, thread plans, gate, windows, splits, metrics."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from trainpipe_bench.family_bench import benchmark_plan

from trainpipe.contract.names import TaskType
from trainpipe.contract.targets import positive_label
from trainpipe.families.catalogue import ALL_FAMILIES, CPU_FAMILIES, GPU_FAMILIES, UnknownFamilyError, resolve_families, stage_of
from trainpipe.families.early_stopping import early_stopping_split
from trainpipe.families.windows import window_index
from trainpipe.training.backtest import bars_per_year, long_short_backtest
from trainpipe.training.metrics import auc, evaluate
from trainpipe.training.units import UnitAddressError, UnitNotFoundError, family_slots, gate_problems, plan_units, thread_env, unit_at


@pytest.mark.parametrize(
    ("families", "model_types", "expected"),
    [
        (None, "sequential", list(ALL_FAMILIES)),
        (None, "all", list(ALL_FAMILIES)),
        (None, "cpu", list(CPU_FAMILIES)),
        (None, "gpu", list(GPU_FAMILIES)),
        (["TabTransformer", "LightGBM", "QuantileLightGBM"], None, ["lightgbm", "quantile_lightgbm", "tab_transformer"]),
        (["mlp", "xgboost"], "cpu", ["xgboost"]),
        (["ftrl-proximal", "CNN1D"], "all", ["ftrl_proximal", "cnn1d"]),
        (["lstm", "tab_lstm"], "cross_sectional", ["tab_lstm"]),
        (None, None, list(ALL_FAMILIES)),
    ],
)
def test_resolve_families(families, model_types, expected) -> None:
    assert resolve_families(families, model_types) == expected


def test_resolve_families_unknown_lists_valid_names() -> None:
    with pytest.raises(UnknownFamilyError, match="valid families: lightgbm, quantile_lightgbm"):
        resolve_families(["RandomForest"], None)
    with pytest.raises(ValueError, match="model_types"):
        resolve_families(None, "gpus")


def test_stage_split() -> None:
    assert len(CPU_FAMILIES) == 11 and len(GPU_FAMILIES) == 10
    assert stage_of("XGBoost") == "cpu" and stage_of("MetaLearning") == "cpu" and stage_of("multi_task") == "gpu"


def _plan():
    plan = benchmark_plan("fwd_ret_1d", ["f0", "f1"], ["lightgbm", "mlp", "quantile_lightgbm", "lstm", "NoSuchFamily"])
    binary = plan.jobs[0].model_copy(update={"job_id": "b", "target": "y_up_1d", "task": TaskType.BINARY})
    summary = plan.summary.model_copy(update={"total_jobs": 2})
    return type(plan).model_validate({**plan.model_dump(), "jobs": [plan.jobs[0].model_dump(), binary.model_dump()], "summary": summary.model_dump()})


@pytest.mark.parametrize(
    ("stage", "families", "units", "skipped"),
    [
        ("cpu", None, [("bench_fwd_ret_1d", "lightgbm"), ("b", "lightgbm"), ("bench_fwd_ret_1d", "quantile_lightgbm")],
         {("bench_fwd_ret_1d", "NoSuchFamily"), ("b", "NoSuchFamily"), ("b", "quantile_lightgbm")}),
        ("gpu", None, [("bench_fwd_ret_1d", "mlp"), ("b", "mlp"), ("bench_fwd_ret_1d", "lstm"), ("b", "lstm")], set()),
        ("gpu", ["LSTM"], [("bench_fwd_ret_1d", "lstm"), ("b", "lstm")], set()),  # the filter takes any catalogue spelling
        ("cpu", ["mlp"], [], {("bench_fwd_ret_1d", "NoSuchFamily"), ("b", "NoSuchFamily")}),
    ],
)
def test_plan_units(stage, families, units, skipped) -> None:
    got, skips = plan_units(_plan(), stage, families)
    assert [(u.job_id, u.family) for u in got] == units  # family-major, catalogue order, then plan order
    assert {(s.job_id, s.family) for s in skips} == skipped


def test_units_are_the_contracts_units() -> None:
    # One source of truth: unit i of a family is the same here and in the operator's Indexed Job.
    from trainpipe.contract.names import Stage
    from trainpipe.contract.units import stage_units

    for stage in ("cpu", "gpu"):
        assert plan_units(_plan(), stage, None) == stage_units(_plan(), Stage(stage))


@pytest.mark.parametrize(
    ("stage", "family", "index", "expected"),
    [
        ("cpu", "lightgbm", 0, ("bench_fwd_ret_1d", "lightgbm")),
        ("cpu", "LightGBM", 1, ("b", "lightgbm")),  # any catalogue spelling
        ("cpu", "quantile_lightgbm", 0, ("bench_fwd_ret_1d", "quantile_lightgbm")),  # the binary job cannot learn quantiles: not a unit
        ("gpu", "lstm", 1, ("b", "lstm")),
        ("cpu", "quantile_lightgbm", 1, UnitNotFoundError),
        ("cpu", "lightgbm", 2, UnitNotFoundError),
        ("cpu", "xgboost", 0, UnitNotFoundError),  # not in the plan: no unit at all
        ("cpu", "mlp", 0, UnitAddressError),  # a gpu family
        ("gpu", "lightgbm", 0, UnitAddressError),
        ("cpu", "random_forest", 0, UnknownFamilyError),
    ],
)
def test_unit_at(stage, family, index, expected) -> None:
    if isinstance(expected, type):
        with pytest.raises(expected):
            unit_at(_plan(), stage, family, index)
    else:
        unit = unit_at(_plan(), stage, family, index)
        assert (unit.job_id, unit.family) == expected


@pytest.mark.parametrize(
    ("family", "cpus", "omp", "blas", "framework", "cuda_hidden"),
    [
        ("lightgbm", 8, "8", "1", "8", True),
        ("reward_based", 8, "1", "8", "8", True),
        ("ftrl_proximal", 8, "1", "1", "1", True),
        ("mlp", 8, "1", "1", "8", False),
        ("lstm", 4, "4", "1", "4", False),
    ],
)
def test_thread_env(family, cpus, omp, blas, framework, cuda_hidden) -> None:
    env = thread_env(family, cpus)
    assert (env["OMP_NUM_THREADS"], env["MKL_NUM_THREADS"], env["OPENBLAS_NUM_THREADS"], env["TRAINPIPE_NUM_THREADS"]) == (omp, blas, blas, framework)
    assert env["MKL_THREADING_LAYER"] == "GNU"
    assert (env.get("CUDA_VISIBLE_DEVICES") == "") is cuda_hidden
    assert (env.get("TRAINPIPE_BLOCK_FRAMEWORKS") == "1") is cuda_hidden


@pytest.mark.parametrize(("families", "cpus", "slots"), [
    (3, 2, (2, 1)),  # the demo's CPU stage on two cores: two families at a time, one thread each
    (2, 2, (2, 1)),  # its GPU stage on CPU: TensorFlow's and Torch's start-ups overlap
    (1, 2, (1, 2)),  # one family keeps every CPU
    (3, 1, (1, 1)),
    (3, 16, (3, 5)),
    (0, 4, (1, 4)),
])
def test_family_slots(families, cpus, slots) -> None:
    assert family_slots(families, cpus) == slots


@pytest.mark.parametrize(
    ("states", "problems"),
    [
        ({("j", "lightgbm"): "done"}, []),
        ({("j", "lightgbm"): "done", ("j", "xgboost"): "failed"}, ["j/xgboost: failed"]),
        ({("j", "lightgbm"): "missing", ("k", "lightgbm"): "stale"}, ["j/lightgbm: missing", "k/lightgbm: stale"]),
        ({}, []),
    ],
)
def test_gate_problems(states, problems) -> None:
    assert gate_problems(states) == problems


def test_window_index_uses_past_rows_of_the_same_symbol_only() -> None:
    ts = np.array(["2020-01-03", "2020-01-01", "2020-01-02", "2020-01-01", "2020-01-02"], dtype="datetime64[ns]")
    sym = np.array(["A", "A", "A", "B", "B"])
    idx = window_index(ts, sym, 3)
    assert idx.tolist() == [[1, 2, 0], [-1, -1, 1], [-1, 1, 2], [-1, -1, 3], [-1, 3, 4]]
    with pytest.raises(ValueError, match="duplicate"):
        window_index(np.r_[ts, ts[:1]], np.r_[sym, sym[:1]], 2)


def test_early_stopping_split_is_a_purged_time_tail() -> None:
    ts = np.repeat(np.arange(100).astype("datetime64[D]").astype("datetime64[ns]"), 2)
    fit, val = early_stopping_split(ts, 0.2, purge=3)
    assert ts[fit].max() < ts[val].min()
    assert len(np.unique(ts[val])) == 20 and len(np.unique(ts[fit])) == 77
    fit, val = early_stopping_split(ts[:20], 0.2, purge=3)  # too short: no early stopping
    assert len(val) == 0 and len(fit) == 20


def test_evaluate_regression_and_binary() -> None:
    rng = np.random.default_rng(0)
    ts = np.repeat(np.arange(50), 4)
    sym = np.tile(list("ABCD"), 50)
    y = rng.standard_normal(200)
    out = evaluate(y, y, ts, sym, "regression")
    assert out["ic"] == pytest.approx(1) and out["rank_ic_method"] == "cross_sectional_mean" and out["r2"] == pytest.approx(1)
    assert out["hit_rate"] == 1
    single = evaluate(y[:50], -y[:50], ts[:50], np.array(["A"] * 50), "regression")
    assert single["rank_ic_method"] == "pooled" and single["ic"] == pytest.approx(-1)
    labels = (y > 0).astype(float)
    assert auc(labels, y) == 1 and evaluate(labels, 1 / (1 + np.exp(-y)), ts, sym, "binary")["auc"] == 1


def test_backtest_long_short_and_single_symbol() -> None:
    ts = np.repeat(pd.date_range("2021-01-01", periods=40).to_numpy(), 3)
    sym = np.tile(["A", "B", "C"], 40)
    rng = np.random.default_rng(1)
    ret = rng.standard_normal(120) * 0.01
    perfect = long_short_backtest(ret, ret, ts, sym, horizon_bars=1, bars_a_year=252.0)
    assert perfect["mode"] == "cross_sectional_long_short" and perfect["mean_return"] > 0 and perfect["n_periods"] == 40
    every5 = long_short_backtest(ret, ret, ts, sym, horizon_bars=5, bars_a_year=252.0)
    assert every5["n_periods"] == 8  # non-overlapping holding periods
    one = long_short_backtest(np.ones(40), ret[:40], ts[::3], np.array(["A"] * 40), horizon_bars=1, bars_a_year=252.0)
    assert one["mode"] == "single_symbol_sign" and one["turnover"] == 0 and one["mean_return"] == pytest.approx(ret[:40].mean())


def test_a_binary_target_labelled_1_and_2_is_scored_on_the_class_training_calls_positive() -> None:
    rng = np.random.default_rng(4)
    score = rng.standard_normal(400)
    labels = np.where(score + 0.5 * rng.standard_normal(400) > 0, 2.0, 1.0)  # 2 = up, 1 = down
    ts, sym = np.arange(400), np.array(["A"] * 400)
    out = evaluate(labels, 1 / (1 + np.exp(-score)), ts, sym, "binary", positive=positive_label(np.unique(labels)))
    assert out["auc"] > 0.8  # before: 1 was taken as the positive class and the AUC came out below 0.2
    # The holdout alone may hold only the 2s; the job's positive class still decides.
    only_up = labels == 2
    assert evaluate(labels[only_up], score[only_up], ts[only_up], sym[only_up], "binary", positive=2.0)["base_rate"] == 1.0
    # Training encodes the same class as 1.
    from trainpipe.families.registry import make_trainer

    frame = pd.DataFrame({"ts": pd.date_range("2020-01-01", periods=400, tz="UTC"), "symbol": "A", "x": score, "y_up_1d": labels})
    model = make_trainer("lightgbm", features=["x"], target="y_up_1d", task="binary", params={"n_estimators": 20}, seed=1, horizon_bars=1, aux_targets=[])
    model.fit(frame)
    assert np.corrcoef(model.predict(frame), labels)[0, 1] > 0.5


def test_baselines_beside_the_hit_rate() -> None:
    rng = np.random.default_rng(2)
    y = (rng.random(1000) < 0.63).astype(float)  # up in 63% of rows
    out = evaluate(y, np.full(1000, 0.9), np.arange(1000), np.array(["A"] * 1000), "binary")
    assert out["hit_rate"] == pytest.approx(out["base_rate"]) == pytest.approx(y.mean())
    assert out["hit_rate_baseline"] == pytest.approx(max(y.mean(), 1 - y.mean()))
    assert out["balanced_accuracy"] == 0.5  # "always up" has no skill, whatever its hit rate


@pytest.mark.parametrize(
    "freq,periods,expected",
    [("W", 300, 52.18), ("B", 1000, 260.9), ("D", 1000, 365.24), ("5min", 20_000, 105_190.0), ("h", 5000, 8765.8)],
)
def test_bars_per_year_is_measured_on_the_timestamps(freq, periods, expected) -> None:
    ts = pd.date_range("2020-01-03", periods=periods, freq=freq).to_numpy()
    assert bars_per_year(ts, np.array(["A"] * periods)) == pytest.approx(expected, rel=0.01)


def test_sharpe_is_annualised_with_measured_bars_and_has_a_buy_and_hold_baseline() -> None:
    # Weekly bars: a strategy earning 0.2% ± 1% a week has a Sharpe of 0.2·√52 ≈ 1.44 (a 252-day table gave 0.2·√36).
    rng = np.random.default_rng(3)
    weekly = 0.002 + 0.01 * rng.standard_normal(520)
    weekly = (weekly - weekly.mean()) / weekly.std(ddof=1) * 0.01 + 0.002  # exactly mean 0.2%, sd 1%
    ts = pd.date_range("2010-01-01", periods=520, freq="W").to_numpy()
    sym = np.array(["A"] * 520)
    bars = bars_per_year(ts, sym)
    out = long_short_backtest(np.ones(520), weekly, ts, sym, horizon_bars=1, bars_a_year=bars)
    assert out["sharpe"] == pytest.approx(0.2 * np.sqrt(52.18), rel=0.01)
    # Always long one symbol is buy-and-hold: no edge over its baseline.
    assert out["baseline_mode"] == "buy_and_hold" and out["baseline_sharpe"] == pytest.approx(out["sharpe"])
