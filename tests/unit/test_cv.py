"""Purged splits: training never reaches into the purge window before the test block, for every symbol."""

from __future__ import annotations

import numpy as np
import pytest

from trainpipe.cv import purged_holdout, purged_walk_forward, timestamp_positions


def _panel_ts(n_ts: int, n_symbols: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    ts = np.repeat(np.arange(n_ts), n_symbols)
    keep = rng.random(len(ts)) > 0.1  # ragged panel: some symbols miss some bars
    return rng.permutation(ts[keep])  # row order must not matter


@pytest.mark.parametrize("n_ts,n_symbols,folds,purge", [(100, 1, 3, 0), (250, 4, 4, 5), (500, 6, 5, 25), (60, 3, 2, 10)])
def test_walk_forward_train_ends_purge_bars_before_each_test_block(n_ts, n_symbols, folds, purge):
    ts = _panel_ts(n_ts, n_symbols)
    pos, _ = timestamp_positions(ts)
    seen_test = set()
    produced = list(purged_walk_forward(ts, folds, purge))
    assert produced, "at least one fold"
    for fold in produced:
        train_pos, test_pos = pos[fold.train], pos[fold.test]
        assert train_pos.max() < test_pos.min() - purge  # the purge window holds no training row
        assert test_pos.min() == fold.test_start
        # every row of the test block is present, for all symbols at those timestamps
        block = np.flatnonzero((pos >= fold.test_start) & (pos <= test_pos.max()))
        np.testing.assert_array_equal(np.sort(fold.test), block)
        assert not (set(fold.test) & seen_test)  # test blocks are disjoint
        seen_test |= set(fold.test)
        assert np.all(np.diff(fold.train) > 0) and np.all(np.diff(fold.test) > 0)


def test_walk_forward_expands_and_skips_folds_without_history():
    ts = np.arange(100)
    folds = list(purged_walk_forward(ts, 4, purge=25))
    assert [f.index for f in folds] == [1, 2, 3]  # fold 0 would start at 20 < purge
    sizes = [len(f.train) for f in folds]
    assert sizes == sorted(sizes)


def test_holdout_is_the_most_recent_share_after_a_purge():
    ts = _panel_ts(200, 3)
    pos, n = timestamp_positions(ts)
    fold = purged_holdout(ts, 0.25, purge=7)
    assert pos[fold.test].min() == 150 and pos[fold.test].max() == 199
    assert pos[fold.train].max() == 150 - 7 - 1
    assert len(fold.train) + len(fold.test) == int(((pos < 143) | (pos >= 150)).sum())


@pytest.mark.parametrize("fraction,purge", [(0.0, 1), (1.0, 1), (0.5, 100)])
def test_holdout_refuses_impossible_splits(fraction, purge):
    with pytest.raises(ValueError):
        purged_holdout(np.arange(100), fraction, purge)
