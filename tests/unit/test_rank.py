"""Target ranking on synthetic panels: real skill ranks first, noise does not pass as skill, leaks are dropped."""

from __future__ import annotations

import numpy as np
import pytest

from panels import FEATURES, TARGETS, make_panel
from trainpipe.contract.names import TargetStatus
from trainpipe.stages.leakage import find_leaks, leaky_shifts
from trainpipe.stages.rank import RankParams, composite_score, rank_targets, sample_recent

PARAMS = RankParams(folds=3, embargo_bars=2, top_n=2, threads=1)


def test_predictable_targets_rank_above_noise():
    frame = make_panel()
    result = rank_targets(frame, FEATURES, TARGETS, 1440.0, PARAMS)
    table = result.table.set_index("target")
    assert set(result.selected) == {"fwd_ret_1d", "y_up_1d"}
    assert table.loc["fwd_ret_1d", "rank_ic"] > 0.15
    assert table.loc["y_up_1d", "auc"] > 0.58
    assert abs(table.loc["fwd_ret_noise_1d", "rank_ic"]) < 0.1
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


def test_planted_leak_drops_the_target_with_a_reason():
    frame = make_panel(leak=True)
    result = rank_targets(frame, FEATURES + ["leaky"], TARGETS, 1440.0, PARAMS)
    row = result.table.set_index("target").loc["fwd_ret_noise_1d"]
    assert row["status"] == TargetStatus.LEAKAGE.value
    assert "leaky" in row["reason"]
    assert "fwd_ret_noise_1d" not in result.selected


def test_score_too_good_to_be_true_is_dropped():
    frame = make_panel()
    rng = np.random.default_rng(3)
    # A feature that explains most of the label but is not a near-exact copy: the score guard must catch it.
    frame["almost"] = frame["fwd_ret_noise_1d"] + rng.normal(scale=0.004, size=len(frame))
    result = rank_targets(frame, FEATURES + ["almost"], ["fwd_ret_noise_1d"], 1440.0, RankParams(folds=3, embargo_bars=2, top_n=1, threads=1, leak_correlation=0.99))
    row = result.table.iloc[0]
    assert row["status"] == TargetStatus.TOO_GOOD.value
    assert "too good" in row["reason"]
    assert result.selected == ()


def test_past_return_equal_to_the_label_shifted_by_its_horizon_is_not_a_leak():
    frame = make_panel()
    # ret_1d at t is the label of t-1: known at t, so legitimate.
    frame["past_ret"] = frame.groupby("symbol")["fwd_ret_1d"].shift(1)
    frame["next_label"] = frame.groupby("symbol")["fwd_ret_1d"].shift(-1)  # tomorrow's label: future information
    frame["same_row"] = frame["fwd_ret_1d"]

    def leaks_of(cols, horizon=1):
        x = frame[cols].to_numpy(dtype=np.float32)
        return [(leak.feature, leak.shift) for leak in find_leaks(x, frame["fwd_ret_1d"].to_numpy(), frame["symbol"].to_numpy(), cols, horizon, 0.97)]

    assert leaks_of(["past_ret"]) == []
    assert sorted(leaks_of(["past_ret", "same_row", "next_label"])) == [("next_label", -1), ("same_row", 0)]
    # With a 5-bar horizon, the label of 1..4 bars ago is not yet known at t: a copy of it is a leak.
    assert ("past_ret", 1) in leaks_of(["past_ret"], horizon=5)


@pytest.mark.parametrize("horizon,expected_max", [(1, 0), (5, 4), (20, 19)])
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
