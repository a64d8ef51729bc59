"""Feature selection: the consensus finds the real signal, support gates features, stability compares runs."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from panels import FEATURES, make_panel
from trainpipe.contract.names import Stability, TaskType
from trainpipe.contract.pipeline import ALL_SELECTION_METHODS
from trainpipe.stages.select import SelectParams, consensus, normalise, select_features, stability

PARAMS = SelectParams(methods=ALL_SELECTION_METHODS, min_support=2, top_m=3, holdout_fraction=0.2, embargo_bars=2, seed=7, threads=1)


@pytest.mark.parametrize("target,task", [("fwd_ret_1d", TaskType.REGRESSION), ("y_up_1d", TaskType.BINARY)])
def test_every_method_puts_the_signal_first(target, task):
    # Each method on its own must find the signal, so it is twice the realistic default (IC ≈ 0.2): at 0.1,
    # mutual information on its 4,000-row sample cannot tell it from noise, though the consensus can.
    frame = make_panel(signal=0.2)
    sel = select_features(frame, target, task, FEATURES, horizon_bars=1, params=PARAMS)
    assert sel.features[0] == "sig"
    assert len(sel.features) <= 3
    scores = sel.scores.set_index("feature")
    for method in ALL_SELECTION_METHODS:
        assert scores[method].idxmax() == "sig", method
    assert np.isclose(scores[list(ALL_SELECTION_METHODS)].sum().to_numpy(), 1.0).all()


def test_selection_is_deterministic():
    frame = make_panel()
    a = select_features(frame, "fwd_ret_1d", TaskType.REGRESSION, FEATURES, 1, PARAMS)
    b = select_features(frame, "fwd_ret_1d", TaskType.REGRESSION, FEATURES, 1, PARAMS)
    assert a.features == b.features and a.scores.equals(b.scores)


def test_consensus_needs_support_from_min_methods():
    feats = ["a", "b", "c", "d"]
    scores = {
        "m1": np.array([10.0, 0.0, 1.0, 0.0]),
        "m2": np.array([5.0, 0.0, 1.0, 0.0]),
        "m3": np.array([0.0, 9.0, 0.0, 0.0]),  # b: one method only
    }
    table = consensus(scores, feats, min_support=2, top_m=10)
    assert list(table.loc[table["selected"], "feature"]) == ["a", "c"]
    assert dict(zip(table["feature"], table["support"])) == {"a": 2, "b": 1, "c": 2, "d": 0}


def test_consensus_ties_break_by_name_and_top_m_cuts():
    scores = {"m1": np.array([1.0, 1.0, 1.0]), "m2": np.array([1.0, 1.0, 1.0])}
    table = consensus(scores, ["z", "a", "m"], min_support=1, top_m=2)
    assert list(table["feature"]) == ["a", "m", "z"]
    assert list(table.loc[table["selected"], "feature"]) == ["a", "m"]


def test_normalise_clips_negative_and_nan():
    np.testing.assert_allclose(normalise(np.array([2.0, -1.0, np.nan, 2.0])), [0.5, 0, 0, 0.5])
    np.testing.assert_allclose(normalise(np.array([0.0, -1.0])), [0.0, 0.0])


@pytest.mark.parametrize(
    "current,previous,state",
    [
        (["a", "b", "c"], None, Stability.UNKNOWN),
        (["a", "b", "c"], ["a", "b", "c"], Stability.STABLE),
        (["a", "b", "c", "d"], ["a", "b", "c", "e"], Stability.DRIFTING),
        (["a", "b", "c"], ["c", "b", "a"], Stability.DIVERGED),
        (["a", "b"], ["x", "y"], Stability.DIVERGED),
    ],
)
def test_stability_against_previous_run(current, previous, state):
    assert stability(current, previous).stability is state


def test_selecting_targets_together_gives_each_the_result_it_gets_alone():
    # select_all runs method by method over every target on shared datasets; a target's
    # selection must not depend on which other targets share the run.
    from trainpipe.stages.select import TargetToSelect, select_all

    frame = make_panel()
    frame.loc[frame.index[-6:], "fwd_ret_1d"] = np.nan  # unlabelled tail rows are left out, not copied out
    together = select_all(frame, [TargetToSelect("fwd_ret_1d", TaskType.REGRESSION, 1), TargetToSelect("y_up_1d", TaskType.BINARY, 1)],
                          FEATURES, PARAMS)
    for target, task in (("fwd_ret_1d", TaskType.REGRESSION), ("y_up_1d", TaskType.BINARY)):
        alone = select_features(frame, target, task, FEATURES, 1, PARAMS)
        assert together[target].features == alone.features
        pd.testing.assert_frame_equal(together[target].scores, alone.scores)
    assert together["fwd_ret_1d"].features[0] == "sig"


def test_progress_is_reported_for_every_method_of_every_target():
    from trainpipe.stages.select import TargetToSelect, select_all

    seen = []
    select_all(make_panel(n_days=200), [TargetToSelect("fwd_ret_1d", TaskType.REGRESSION, 1), TargetToSelect("y_up_1d", TaskType.BINARY, 1)],
               FEATURES, PARAMS, on_step=lambda target, method: seen.append((target, method)))
    assert sorted(seen) == sorted((t, m) for t in ("fwd_ret_1d", "y_up_1d") for m in ALL_SELECTION_METHODS)


def test_mutual_information_never_fills_missing_values_with_zeros():
    # A noise feature that is missing whenever the label is high: zeros in its place would make a
    # spike that tracks the label, and mutual information would score the invented zeros.
    frame = make_panel()
    rng = np.random.default_rng(9)
    frame["patchy"] = rng.normal(loc=5.0, size=len(frame))
    frame.loc[frame["fwd_ret_1d"] > frame["fwd_ret_1d"].quantile(0.7), "patchy"] = np.nan
    params = SelectParams(methods=("mutual_info",), min_support=1, top_m=3, holdout_fraction=0.2, embargo_bars=2, seed=7, threads=1)
    scores = select_features(frame, "fwd_ret_1d", TaskType.REGRESSION, FEATURES + ["patchy"], 1, params).scores.set_index("feature")
    assert scores.loc["patchy", "mutual_info"] < scores.loc["sig", "mutual_info"]


def test_a_multi_day_target_is_selected_with_its_horizon_purged():
    # A 5-day return with one feature at a realistic IC of about 0.1 and the daily noise features beside it.
    from panels import make_return_panel

    frame = make_return_panel(n_days=1500, horizons=(5,))
    rng = np.random.default_rng(4)
    future = frame["fwd_ret_5d"].fillna(0.0).to_numpy()
    frame["sig5"] = 0.15 * future / future.std() + rng.normal(size=len(frame))
    for k in range(3):
        frame[f"noise_{k + 1}"] = rng.normal(size=len(frame))
    features = ["sig5", "noise_0", "noise_1", "noise_2", "noise_3", "past_ret_20d"]
    sel = select_features(frame, "fwd_ret_5d", TaskType.REGRESSION, features, horizon_bars=5, params=PARAMS)
    # Kept among the top 3 of 6 on every seed tried (first on most): at this strength first place is not guaranteed.
    assert "sig5" in sel.features
