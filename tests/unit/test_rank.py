"""Target ranking on synthetic panels: real skill ranks first, noise does not pass as skill, leaks are dropped."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from panels import FEATURES, TARGETS, make_panel, make_return_panel
from trainpipe.contract.names import TargetStatus, TaskType
from trainpipe.stages import metrics
from trainpipe.stages.leakage import find_leaks, leaky_shifts
from trainpipe.stages.rank import LeakageError, RankParams, composite_score, cross_sectional_score, rank_targets, sample_recent

PARAMS = RankParams(folds=3, embargo_bars=2, top_n=2, threads=1)
FLOOR = PARAMS.leak_correlation  # the spec's default skill allowance


def test_predictable_targets_rank_above_noise():
    frame = make_panel()
    result = rank_targets(frame, FEATURES, TARGETS, 1440.0, PARAMS)
    table = result.table.set_index("target")
    assert set(result.selected) == {"fwd_ret_1d", "y_up_1d"}
    assert 0.05 < table.loc["fwd_ret_1d", "rank_ic"] < 0.15  # a realistic signal: found, and not "too good"
    assert 0.52 < table.loc["y_up_1d", "auc"] < 0.65
    assert abs(table.loc["fwd_ret_noise_1d", "rank_ic"]) < 0.05
    assert table.loc["fwd_ret_noise_1d", "composite"] < table.loc["fwd_ret_1d", "composite"]
    assert list(result.table["rank"]) == [1, 2, 3]


def test_oos_scores_have_pooled_and_per_symbol_rows_with_real_sample_sizes():
    frame = make_panel()
    result = rank_targets(frame, FEATURES, ["fwd_ret_1d"], 1440.0, PARAMS)
    oos = result.oos_scores
    pooled = oos[oos["symbol"].isna()]
    per_symbol = oos[oos["symbol"].notna()]
    assert len(pooled) == 3 and set(per_symbol["symbol"]) == {"AAA", "BBB", "CCC"}
    for fold, rows in per_symbol.groupby("fold"):
        assert rows["n_samples"].sum() == pooled.loc[pooled["fold"] == fold, "n_samples"].item()
    assert (oos["metric_name"] == "ic").all()


def test_planted_leak_stops_the_run_naming_feature_target_and_fix():
    frame = make_panel(leak=True)
    with pytest.raises(LeakageError, match=r"'leaky' tracks the same row's fwd_ret_noise_1d.*features\.exclude.*blockOnLeakage"):
        rank_targets(frame, FEATURES + ["leaky"], TARGETS, 1440.0, PARAMS)


def test_a_leak_found_for_one_target_leaves_every_targets_pool():
    # A noisy copy of the 5-day return (|corr| ≈ 0.8): before, only fwd_ret_5d was dropped and
    # fwd_ret_20d then ranked first through the same feature.
    frame = make_return_panel(n_days=1200)
    rng = np.random.default_rng(1)
    frame["copy_5d"] = frame["fwd_ret_5d"] + rng.normal(scale=0.015, size=len(frame))
    features = ["past_ret_1d", "past_ret_5d", "past_ret_20d", "noise_0", "copy_5d"]
    lenient = RankParams(folds=3, embargo_bars=2, top_n=2, threads=1, block_on_leakage=False)
    result = rank_targets(frame, features, ["fwd_ret_5d", "fwd_ret_20d"], 1440.0, lenient)
    assert "copy_5d" not in result.features and len(result.features) == 4
    assert {leak.feature for leak in result.leaks} == {"copy_5d"}
    table = result.table.set_index("target")
    assert "copy_5d" in table.loc["fwd_ret_5d", "reason"]
    assert abs(table.loc["fwd_ret_20d", "rank_ic"]) < 0.1 and abs(table.loc["fwd_ret_5d", "rank_ic"]) < 0.1


def _leaks(frame, features, target, horizon):
    x = frame[features].to_numpy(dtype=np.float32)
    found = find_leaks(x, frame[target].to_numpy(), frame["symbol"].to_numpy(), features, horizon, FLOOR, target)
    return {leak.feature: leak for leak in found}


def test_the_scan_catches_rank_sign_next_bar_and_part_of_the_horizon_but_no_past_return():
    frame = make_return_panel(n_days=800, horizons=(5, 20))
    by_symbol = frame.groupby("symbol")["past_ret_1d"]
    frame["next_bar"] = by_symbol.shift(-1)  # r[t+1]: a fifth of the 5-day label
    frame["next_3"] = sum(by_symbol.shift(-k) for k in (1, 2, 3))  # three fifths of it
    frame["direction"] = np.sign(frame["fwd_ret_5d"])
    frame["cubed"] = frame["fwd_ret_5d"] ** 3  # a monotone transform: Spearman sees the copy whole
    past = ["past_ret_1d", "past_ret_3d", "past_ret_5d", "past_ret_10d", "past_ret_20d"]
    found = _leaks(frame, past + ["next_bar", "next_3", "direction", "cubed", "noise_0"], "fwd_ret_5d", 5)
    assert set(found) == {"next_bar", "next_3", "direction", "cubed"}
    assert found["next_bar"].shift == 0
    # Past returns overlap up to 19 of the 20 bars of the 20-day labels they are compared with: not leaks.
    assert _leaks(frame, past + ["noise_0"], "fwd_ret_20d", 20) == {}


def test_a_coarse_copy_is_reported_with_its_spearman_correlation_ties_sharing_their_mean_rank():
    # Five values for 3,000 rows: nearly every row ties, so ranking ties one after another would report
    # about 0.95 where the Spearman correlation is 0.98 (and rank it below its Pearson one).
    rng = np.random.default_rng(5)
    y = rng.standard_t(4, 3000) * 0.01
    coarse = np.clip(np.round(y * 200), -2, 2)
    symbols = np.repeat(["AAA", "BBB"], 1500)
    (leak,) = find_leaks(coarse[:, None].astype(np.float32), y, symbols, ["coarse"], 1, FLOOR, "fwd_ret_1d")
    assert (leak.feature, leak.shift, leak.method) == ("coarse", 0, "spearman vs level")
    assert leak.correlation == pytest.approx(stats.spearmanr(coarse, y).statistic, abs=1e-5)


def test_horizons_over_40_bars_are_scanned_to_the_horizon():
    frame = make_return_panel(n_days=1000, horizons=(60,))
    frame = frame.rename(columns={"fwd_ret_60d": "fwd_ret_60"})  # 60 bars
    frame["label_45_back"] = frame.groupby("symbol")["fwd_ret_60"].shift(45)  # not resolved at t for 15 more bars
    frame["label_60_back"] = frame.groupby("symbol")["fwd_ret_60"].shift(60)  # resolved at t: legitimate
    found = _leaks(frame, ["label_45_back", "label_60_back", "past_ret_20d"], "fwd_ret_60", 60)
    assert set(found) == {"label_45_back"} and found["label_45_back"].shift == 45


def test_too_good_is_judged_on_the_best_model():
    # An interaction only trees exploit: neither feature correlates with the label, so the scan passes
    # them, and the linear model's lack of skill would halve an average.
    frame = make_panel()
    rng = np.random.default_rng(3)
    sign = rng.choice([-1.0, 1.0], size=len(frame))
    frame["scaled"] = frame["fwd_ret_noise_1d"] * sign
    frame["sign"] = sign
    result = rank_targets(frame, FEATURES + ["scaled", "sign"], ["fwd_ret_noise_1d"], 1440.0, RankParams(folds=3, embargo_bars=2, top_n=1, threads=1))
    row = result.table.iloc[0]
    assert row["status"] == TargetStatus.TOO_GOOD.value
    assert "best model" in row["reason"] and "maxRankIc" in row["reason"]
    assert row["lgbm_score"] > 0.15 and abs(row["linear_score"]) < 0.1
    assert result.selected == ()
    # Its top features come under suspicion: no correlation leaks even at the lower floor, so they stay, named.
    assert {"scaled", "sign"} <= set(result.suspects) and {"scaled", "sign"} <= set(result.features)
    assert "reported as suspects" in row["reason"] and "'scaled'" in row["reason"]


def test_past_return_equal_to_the_label_shifted_by_its_horizon_is_not_a_leak():
    frame = make_panel()
    # ret_1d at t is the label of t-1: known at t, so legitimate.
    frame["past_ret"] = frame.groupby("symbol")["fwd_ret_1d"].shift(1)
    frame["next_label"] = frame.groupby("symbol")["fwd_ret_1d"].shift(-1)  # tomorrow's label: future information
    frame["same_row"] = frame["fwd_ret_1d"]

    def leaks_of(cols, horizon=1):
        x = frame[cols].to_numpy(dtype=np.float32)
        return [(leak.feature, leak.shift) for leak in find_leaks(x, frame["fwd_ret_1d"].to_numpy(), frame["symbol"].to_numpy(), cols, horizon, FLOOR)]

    assert leaks_of(["past_ret"]) == []
    assert sorted(leaks_of(["past_ret", "same_row", "next_label"])) == [("next_label", -1), ("same_row", 0)]
    # With a 5-bar horizon, the label of 1..4 bars ago is not yet known at t: a copy of it is a leak.
    assert ("past_ret", 1) in leaks_of(["past_ret"], horizon=5)


@pytest.mark.parametrize("horizon,expected_max", [(1, 0), (5, 4), (20, 19), (288, 287)])
def test_leaky_shifts_stop_below_the_horizon(horizon, expected_max):
    shifts = leaky_shifts(horizon)
    assert max(shifts) == expected_max and min(shifts) < 0


@pytest.mark.parametrize(
    "skills,composite,consistency",
    [([0.1, 0.1, 0.1], 0.1, 1.0), ([0.3, -0.1, -0.1], 0.1 / 3 * (0.5 + 0.5 / 3), 1 / 3), ([float("nan")], float("nan"), float("nan"))],
)
def test_composite_rewards_consistency(skills, composite, consistency):
    c, k = composite_score(skills)
    np.testing.assert_allclose([c, k], [composite, consistency], equal_nan=True)


def test_ranking_is_deterministic():
    frame = make_panel()
    a = rank_targets(frame, FEATURES, TARGETS, 1440.0, PARAMS)
    b = rank_targets(frame, FEATURES, TARGETS, 1440.0, PARAMS)
    assert a.table.equals(b.table) and a.oos_scores.equals(b.oos_scores)


def test_sample_recent_keeps_whole_latest_timestamps():
    frame = make_panel(n_days=100)
    kept = sample_recent(frame, 31)
    assert len(kept) == 30 and kept["ts"].min() == frame["ts"].drop_duplicates().iloc[-10]


def test_cross_sectional_score_is_the_mean_per_timestamp_rank_ic_not_a_pooled_one():
    # Predictions that time the market (the common move of all symbols) but cannot rank symbols: the
    # pooled rank IC is high, the cross-sectional one is nil.
    rng = np.random.default_rng(5)
    n_ts, n_sym = 400, 5
    market = np.repeat(rng.normal(size=n_ts), n_sym)
    y = market + 0.3 * rng.normal(size=n_ts * n_sym)
    pred = market + 0.05 * rng.normal(size=n_ts * n_sym)
    ts = np.repeat(np.arange(n_ts), n_sym)
    pooled = metrics.spearman(y, pred)
    cs = cross_sectional_score(ts, y, pred, TaskType.REGRESSION, min_symbols=3)
    assert pooled > 0.8
    assert abs(cs.mean) < 0.05 and cs.eligible_timestamps == n_ts
    # Skill across symbols at every timestamp: both see it, and the IR is large.
    own = rng.normal(size=n_ts * n_sym)
    skilled = cross_sectional_score(ts, own + 0.1 * rng.normal(size=n_ts * n_sym), own, TaskType.REGRESSION, 3)
    assert skilled.mean > 0.9 and skilled.ir > 3


def test_no_cross_sectional_row_without_enough_symbols_on_most_timestamps():
    # Two periods that never overlap: each timestamp has one symbol, so there is no cross-section to score.
    early = make_panel(n_days=500, symbols=("AAA",), seed=1)
    late = make_panel(n_days=500, symbols=("BBB",), seed=2)
    late["ts"] = late["ts"] + pd.Timedelta(days=600)
    frame = pd.concat([early, late]).sort_values(["ts", "symbol"], kind="stable").reset_index(drop=True)
    oos = rank_targets(frame, FEATURES, ["fwd_ret_1d"], 1440.0, PARAMS).oos_scores
    assert oos["symbol"].notna().all() and len(oos) > 0
    # Three symbols on one calendar: one cross-sectional row per fold, scored over its timestamps.
    shared = rank_targets(make_panel(), FEATURES, ["fwd_ret_1d"], 1440.0, PARAMS).oos_scores
    cs_rows = shared[shared["symbol"].isna()]
    assert len(cs_rows) == 3 and (cs_rows["timestamps"] > 200).all()
    two = rank_targets(make_panel(symbols=("AAA", "BBB")), FEATURES, ["fwd_ret_1d"], 1440.0, PARAMS).oos_scores
    assert two["symbol"].notna().all()  # fewer than ranking.minSymbolsPerTimestamp = 3
