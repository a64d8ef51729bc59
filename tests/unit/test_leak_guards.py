"""Leak guards that ask the right question: more association with a label not yet known than with it resolved.

Each regression names the figure that misled before and the one that holds now.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.signal import lfilter

from trainpipe.contract.names import TaskType
from trainpipe.stages.leakage import LeakScanner, design_effect, find_leaks, leak_bound, noise_margin, too_good, unit_horizons
from trainpipe.stages.rank import LeakageError, RankParams, rank_targets

OLD_FLOOR = 0.30  # the fixed floor the scan used to compare every not-yet-known label with
PARAMS = RankParams(folds=2, embargo_bars=2, top_n=2, threads=1)


def returns_panel(n_days: int, n_symbols: int, seed: int, freq: str = "D", clustered: bool = False) -> pd.DataFrame:
    """Daily returns (optionally with volatility regimes), forward targets fwd_ret_<h>d and past-only features."""
    rng = np.random.default_rng(seed)
    ts = pd.date_range("2012-01-02", periods=n_days, freq=freq, tz="UTC")
    frames = []
    for k in range(n_symbols):
        scale = np.exp(lfilter([0.2], [1, -0.98], rng.normal(size=n_days))) if clustered else 1.0
        r = pd.Series(0.01 * scale * rng.normal(size=n_days))
        f = pd.DataFrame({"ts": ts, "symbol": f"S{k}"})
        for h in (1, 5, 20):
            f[f"fwd_ret_{h}d"] = r[::-1].rolling(h).sum()[::-1].shift(-1)  # r[t+1] + … + r[t+h]
        for p in (1, 5, 20):
            f[f"past_ret_{p}"] = r.rolling(p).sum()
        f["vol_20"] = r.rolling(20).std()
        f["noise_0"] = rng.normal(size=n_days)
        frames.append(f)
    return pd.concat(frames).sort_values(["ts", "symbol"], kind="stable").reset_index(drop=True)


def noisy_copy(values: pd.Series, correlation: float, seed: int) -> pd.Series:
    z = (values - values.mean()) / values.std()
    return correlation * z + np.sqrt(1 - correlation**2) * np.random.default_rng(seed).normal(size=len(values))


PAST = ["past_ret_1", "past_ret_5", "past_ret_20", "vol_20", "noise_0"]


def test_a_weak_copy_of_a_label_under_the_old_floor_is_a_leak():
    # Before: |corr| 0.246 with fwd_ret_5d passed the 0.30 floor, made fwd_ret_5d TOO_GOOD (best rank IC 0.23) and,
    # left in the pool, lent fwd_ret_1d and fwd_ret_20d rank ICs of 0.08 and 0.06. Now: it shares 0.013 with the
    # resolved labels, and 0.246 is beyond what that, genuine skill (0.10) and the noise of 10,000 rows reach (0.20).
    frame = returns_panel(2000, 5, seed=1)
    frame["hint_5d"] = noisy_copy(frame["fwd_ret_5d"], 0.25, seed=7)
    with pytest.raises(LeakageError, match=r"'hint_5d' tracks the same row's fwd_ret_5d") as caught:
        rank_targets(frame, PAST + ["hint_5d"], ["fwd_ret_1d", "fwd_ret_5d", "fwd_ret_20d"], 1440.0, PARAMS)
    (leak, *_) = [k for k in caught.value.leaks if k.target == "fwd_ret_5d"]
    assert 0.24 < leak.correlation < OLD_FLOOR and leak.resolved < 0.05 and 0.15 < leak.bound < 0.23


def test_a_leak_at_a_horizon_no_target_has_is_found_from_the_shortest_return():
    # A copy of the 5-day forward return (|corr| 0.50) beside 1- and 20-day targets only: it tracks those at 0.23
    # and 0.24, under the old floor, so it passed and both targets came out TOO_GOOD (rank IC 0.21) with no leak
    # named. The 5-bar return summed from fwd_ret_1d shows it at 0.50 (bound 0.22).
    frame = returns_panel(2000, 5, seed=2)
    frame["hint_5d"] = noisy_copy(frame["fwd_ret_5d"], 0.5, seed=8)
    targets = ["fwd_ret_1d", "fwd_ret_20d"]
    assert frame[targets].corrwith(frame["hint_5d"]).abs().max() < OLD_FLOOR
    with pytest.raises(LeakageError) as caught:
        rank_targets(frame, PAST + ["hint_5d"], targets, 1440.0, PARAMS)
    units = [k for k in caught.value.leaks if k.target.startswith("5-bar return")]
    assert units and abs(units[0].correlation) > 0.45 and {k.feature for k in caught.value.leaks} == {"hint_5d"}


def test_a_too_good_target_puts_its_top_features_under_suspicion_for_every_target():
    # |corr| 0.175 passes the first scan (bound 0.19) yet makes fwd_ret_5d too good (best rank IC 0.16 > maxRankIc
    # 0.08 + 0.053 that noise allows at this size); before, it then stayed in every pool (fwd_ret_1d ranked OK at
    # rank IC 0.05 with it). Rescanned as a suspect with half the skill allowance, its bound is 0.15: a leak, and
    # the run stops naming it.
    frame = returns_panel(2000, 5, seed=1)
    frame["hint_5d"] = noisy_copy(frame["fwd_ret_5d"], 0.18, seed=7)
    strict = RankParams(folds=2, embargo_bars=2, top_n=2, threads=1, max_rank_ic=0.08)
    with pytest.raises(LeakageError, match=r"'hint_5d'") as caught:
        rank_targets(frame, PAST + ["hint_5d"], ["fwd_ret_5d", "fwd_ret_1d"], 1440.0, strict)
    first_scan = find_leaks(frame[["hint_5d"]].to_numpy(np.float32), frame["fwd_ret_5d"].to_numpy(), frame["symbol"].to_numpy(),
                            ["hint_5d"], 5, strict.leak_correlation, "fwd_ret_5d")
    assert first_scan == []  # only the suspicion found it
    assert {k.feature for k in caught.value.leaks} == {"hint_5d"}


def test_volatility_predicting_a_big_move_label_is_kept_and_a_copy_of_the_label_is_not():
    # Before: a past-only 20-day volatility correlated 0.43 with the 5-day big-move label of its own row,
    # above the 0.30 floor, and stopped the run. It correlates 0.50 with the same label once resolved: kept.
    frame = returns_panel(1500, 4, seed=3, clustered=True)
    move = frame["fwd_ret_5d"]
    frame["y_big_move_5d"] = (move.abs() > 1.5 * frame.groupby("symbol")["fwd_ret_5d"].transform("std")).astype(float).where(move.notna())
    frame["copy"] = frame["y_big_move_5d"] + np.random.default_rng(4).normal(scale=0.5, size=len(frame))
    assert frame["vol_20"].corr(frame["y_big_move_5d"]) > OLD_FLOOR
    features = ["vol_20", "past_ret_5", "noise_0", "copy"]
    found = find_leaks(frame[features].to_numpy(np.float32), frame["y_big_move_5d"].to_numpy(), frame["symbol"].to_numpy(),
                       features, 5, PARAMS.leak_correlation, "y_big_move_5d", TaskType.BINARY)
    assert [leak.feature for leak in found] == ["copy"]


def test_a_weekly_past_return_on_business_days_is_kept_and_foxml_threshold_labels_parse(tmp_path):
    # Before: y_will_peak_60m_0.8 stopped the run ("cannot read its horizon"), and on business-day bars the weekly
    # label was 7 rows long, so the past weekly return (the label 5 rows back, |corr| 1.0 > bound 0.89) was a leak.
    from panels import write_panel
    from trainpipe.contract.names import Stage
    from trainpipe.contract.pipeline import PipelineSpec
    from trainpipe.io.layout import Layout
    from trainpipe.io.stage_files import read_rankings
    from trainpipe.runner.steps import RunContext, run_stage

    frame = returns_panel(400, 3, seed=5, freq="B").rename(columns={"fwd_ret_5d": "fwd_ret_1w"})
    frame["y_will_peak_60m_0.8"] = (frame["fwd_ret_1d"] > 0.008).astype(float).where(frame["fwd_ret_1d"].notna())
    frame = frame[["ts", "symbol", "fwd_ret_1w", "y_will_peak_60m_0.8", "past_ret_1", "past_ret_5", "past_ret_20", "noise_0"]]
    write_panel(frame, tmp_path / "data")
    wire = {"data": {"dir": str(tmp_path / "data"), "minRowsPerSymbol": 100}, "features": {"topM": 3}, "ranking": {"folds": 2}}
    ctx = RunContext(spec=PipelineSpec.model_validate(wire), layout=Layout(tmp_path / "run"), threads=1)
    run_stage(ctx, Stage.RANK)
    rankings = read_rankings(ctx.layout)
    assert rankings.holdout_cut.horizon_bars == {"fwd_ret_1w": 5, "y_will_peak_60m_0.8": 1}
    assert rankings.leaks == [] and "past_ret_5" in rankings.features
    # Counted 7 days a week, the label 5 rows back is not yet resolved and the past weekly return tracks it whole.
    x = frame[["past_ret_5"]].to_numpy(np.float32)
    (leak,) = find_leaks(x, frame["fwd_ret_1w"].to_numpy(), frame["symbol"].to_numpy(), ["past_ret_5"], 7, PARAMS.leak_correlation)
    assert leak.shift == 5 and leak.correlation > 0.99


@pytest.mark.parametrize(
    "longest,step,horizons",
    [(1, 1, []), (20, 1, list(range(2, 21))), (20, 5, [10, 15, 20]), (3, 5, []),
     (60, 1, list(range(2, 33)) + [40, 50, 60]), (390, 1, list(range(2, 33)) + [40, 50, 63, 79, 99, 124, 155, 194, 243, 304, 380, 390])],
)
def test_unit_horizons_cover_every_horizon_up_to_the_longest(longest, step, horizons):
    assert unit_horizons(longest, step) == horizons


@pytest.mark.parametrize(
    "resolved,shift,horizon,bound",
    [
        (0.0, 0, 5, 0.1),  # nothing known: the skill allowance only
        (0.5, 0, 5, 0.6),  # a volatility that tracks resolved big moves may track the next one as much
        (0.0, 4, 5, np.sqrt(0.8) + 0.1),  # four of five returns known: a past 4-bar return explains √0.8
        (0.95, 19, 20, 1 - 1e-9),  # never above a perfect correlation
    ],
)
def test_leak_bound_is_what_past_information_explains_plus_skill(resolved, shift, horizon, bound):
    assert float(leak_bound(resolved, shift, horizon, 0.1, 0.0)) == pytest.approx(bound)
    assert leak_bound(resolved, shift, horizon, 0.1, 0.1) > leak_bound(resolved, shift, horizon, 0.1, 0.0)


def test_noise_margin_widens_with_the_horizon_the_comovement_and_the_number_of_tests():
    base = noise_margin(10_000, 1, 1.0, 100)
    assert noise_margin(10_000, 5, 1.0, 100) == pytest.approx(noise_margin(2_000, 1, 1.0, 100))  # 10,000 rows of 5-bar labels: 2,000 independent
    assert noise_margin(10_000, 1, 4.0, 100) == pytest.approx(2 * base)
    assert noise_margin(10_000, 1, 1.0, 10_000) > base


def test_design_effect_counts_symbols_that_move_as_one_as_one():
    rng = np.random.default_rng(0)
    ts = np.repeat(np.arange(500), 4)
    assert design_effect(rng.normal(size=2000), ts) == pytest.approx(1.0, abs=0.2)
    assert design_effect(np.repeat(rng.normal(size=500), 4), ts) == pytest.approx(4.0)


def test_unit_returns_are_summed_within_each_symbol():
    frame = returns_panel(300, 2, seed=6)
    frame["copy_20d"] = frame["fwd_ret_20d"]
    scanner = LeakScanner(frame[["copy_20d", "noise_0"]].to_numpy(np.float32), frame["symbol"].to_numpy(), ["copy_20d", "noise_0"])
    (leak,) = scanner.find_unit_leaks(frame["fwd_ret_1d"].to_numpy(), 1, 20, 0.1, "fwd_ret_1d")
    assert leak.feature == "copy_20d" and leak.target.startswith("20-bar return") and leak.correlation == pytest.approx(1.0, abs=1e-5)


@pytest.mark.parametrize(
    ("rank_ic", "noise", "flagged"),
    [
        (0.16, 0.0, True),  # a fixed limit: any sample above 0.15 is a leak
        (0.16, 0.05, False),  # a short panel: 0.16 is within what noise allows past 0.15
        (0.21, 0.05, True),  # beyond the limit and the noise both
        (-0.21, 0.05, True),  # a leak with its sign flipped is as suspect
    ],
)
def test_too_good_limits_widen_with_the_standard_error(rank_ic, noise, flagged):
    reason = too_good(TaskType.REGRESSION, rank_ic, float("nan"), float("nan"), 0.15, 0.05, 0.65, noise)
    assert (reason is not None) is flagged
    if flagged and noise:
        assert f"+ {noise:.3f} for noise" in reason


def test_too_good_auc_limit_widens_by_half_the_skill_noise():
    # skill = 2·(AUC − 0.5): a noise allowance of 0.06 in skill is 0.03 in AUC.
    assert too_good(TaskType.BINARY, float("nan"), float("nan"), 0.67, 0.15, 0.05, 0.65, 0.06) is None
    assert too_good(TaskType.BINARY, float("nan"), float("nan"), 0.69, 0.15, 0.05, 0.65, 0.06) is not None
