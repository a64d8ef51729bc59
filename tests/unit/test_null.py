"""The selection null: label rotations by whole timestamps, the bar over features, and each feature's IC."""

from __future__ import annotations

import numpy as np
import pytest

from trainpipe.stages import null


def _panel_ts(n_ts: int, n_symbols: int) -> np.ndarray:
    return np.repeat(np.datetime64("2020-01-01") + np.arange(n_ts), n_symbols)


def test_a_rotation_moves_every_row_by_one_shift_of_whole_timestamps():
    n_ts, n_symbols, horizon = 60, 3, 5
    ts = _panel_ts(n_ts, n_symbols)
    orders = null.rotations(ts, horizon, 7, np.random.default_rng(0))
    assert orders.shape == (7, len(ts))
    min_shift = max(horizon, int(np.ceil(null.MIN_SHIFT_SHARE * n_ts)))
    shifts = []
    for order in orders:
        moved = (order // n_symbols - np.arange(len(ts)) // n_symbols) % n_ts
        assert (moved == moved[0]).all()  # the whole cross-section moves together, by one shift
        assert (order % n_symbols == np.arange(len(ts)) % n_symbols).all()  # each symbol keeps its own labels' series
        assert min_shift <= moved[0] <= n_ts - min_shift
        shifts.append(int(moved[0]))
    assert len(set(shifts)) == 7  # distinct rotations


def test_rotations_are_seeded_and_none_when_the_holdout_is_too_short_to_rotate():
    ts = _panel_ts(60, 3)
    np.testing.assert_array_equal(null.rotations(ts, 5, 5, np.random.default_rng(3)), null.rotations(ts, 5, 5, np.random.default_rng(3)))
    assert null.rotations(_panel_ts(30, 3), 20, 5, np.random.default_rng(3)) is None  # a 20-bar horizon on 30 timestamps


@pytest.mark.parametrize(
    "ics,thresholds,beats",
    [
        # Each feature's own bar: the 90% quantile of its ICs against the rotations (the highest of three).
        ([[0.5, 0.1, 0.3, 0.0], [0.2, 0.05, 0.1, 0.2]], [0.3, 0.2], [True, False]),
        ([[0.25, 0.1, 0.3, 0.0], [0.3, 0.05, 0.1, 0.2]], [0.3, 0.2], [False, True]),  # a bar set by another feature no longer hides it
        # A feature the model never used (NaN) has no bar and never beats.
        ([[0.5, 0.1, 0.3, 0.0], [np.nan, np.nan, np.nan, np.nan]], [0.3, np.nan], [True, False]),
        # Anti-predicting is no evidence, even above the bar; a positive IC above a negative bar is.
        ([[-0.6, -0.5, -0.7, -0.4], [0.01, -0.5, -0.7, -0.4]], [-0.4, -0.4], [False, True]),
        # No rotation possible: no bar, nothing beats (nothing tells a feature from chance).
        ([[0.5], [0.2]], [np.nan, np.nan], [False, False]),
    ],
)
def test_each_feature_faces_the_quantile_of_its_own_rotated_ics(ics, thresholds, beats):
    ev = null.evidence(np.array(ics, dtype=float))
    np.testing.assert_allclose(ev.thresholds, thresholds)
    assert ev.beats().tolist() == beats


def test_a_feature_ic_against_real_and_rotated_labels():
    ts = _panel_ts(100, 2)
    y = np.random.default_rng(1).normal(size=len(ts))
    labels = null.shuffled_labels(y, ts, 1, seed=0, classes=1)
    ics = labels.ics(y[None, :])
    assert ics.shape == (1 + null.ROTATIONS,)
    assert ics[0] == pytest.approx(1.0) and np.abs(ics[1:]).max() < 0.5
    assert np.isnan(labels.ics(np.zeros((1, len(ts))))).all()  # a feature never used: no evidence
    # Several classes: each class's effect against its indicator, averaged.
    classes = np.random.default_rng(2).integers(0, 3, size=len(ts)).astype(float)
    per_class = null.shuffled_labels(classes, ts, 1, seed=0, classes=3)
    assert per_class.ics(np.array([(classes == k).astype(float) for k in range(3)]))[0] == pytest.approx(1.0)
