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
    frame = make_panel(n_days=300)
    sel = select_features(frame, target, task, FEATURES, horizon_bars=1, params=PARAMS)
    assert sel.features[0] == "sig"
    assert len(sel.features) <= 3
    scores = sel.scores.set_index("feature")
    for method in ALL_SELECTION_METHODS:
        assert scores[method].idxmax() == "sig", method
    assert np.isclose(scores[list(ALL_SELECTION_METHODS)].sum().to_numpy(), 1.0).all()


def test_selection_is_deterministic():
    frame = make_panel(n_days=300)
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

    frame = make_panel(n_days=300)
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
