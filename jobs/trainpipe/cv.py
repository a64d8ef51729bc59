"""Time-ordered, purged splits over a panel (many symbols share timestamps); yields row indices, never shuffles.

Rank uses the walk-forward folds, training uses the holdout. Both work on *timestamp positions*, so a
purge of k bars removes the k timestamps before the test block for every symbol at once.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Fold:
    index: int
    train: np.ndarray  # row indices, ascending
    test: np.ndarray  # row indices, ascending
    test_start: int  # timestamp position where the test block starts
    train_end: int  # first timestamp position NOT used for training (train uses positions < train_end)


def timestamp_positions(ts: np.ndarray) -> tuple[np.ndarray, int]:
    """Position of each row's timestamp among the sorted unique timestamps, and how many there are."""
    uniques, inverse = np.unique(ts, return_inverse=True)
    return inverse.astype(np.int64), len(uniques)


def purged_walk_forward(ts: np.ndarray, n_folds: int, purge: int, min_train: int = 1) -> Iterator[Fold]:
    """Expanding-window walk-forward: the timeline is cut into n_folds + 1 blocks; block 0 only trains.

    For test block k the model trains on timestamps strictly before (block start − purge), so no training
    label can overlap the test period. `purge` is the target horizon plus the embargo, in bars.
    Folds whose training side would hold fewer than `min_train` timestamps are skipped.
    """
    if n_folds < 1:
        raise ValueError("n_folds must be at least 1")
    if purge < 0:
        raise ValueError("purge must be >= 0")
    pos, n_ts = timestamp_positions(ts)
    edges = np.linspace(0, n_ts, n_folds + 2).astype(np.int64)
    order = np.argsort(pos, kind="stable")
    sorted_pos = pos[order]
    for k in range(1, n_folds + 1):
        test_start, test_end = int(edges[k]), int(edges[k + 1])
        train_end = test_start - purge
        if train_end < min_train or test_end <= test_start:
            continue
        train = np.sort(order[: np.searchsorted(sorted_pos, train_end, side="left")])
        lo = np.searchsorted(sorted_pos, test_start, side="left")
        hi = np.searchsorted(sorted_pos, test_end, side="left")
        test = np.sort(order[lo:hi])
        yield Fold(index=k - 1, train=train, test=test, test_start=test_start, train_end=train_end)


def purged_holdout(ts: np.ndarray, fraction: float, purge: int) -> Fold:
    """The most recent `fraction` of timestamps is the test set; training stops `purge` bars before it."""
    if not 0 < fraction < 1:
        raise ValueError("holdout fraction must be between 0 and 1")
    pos, n_ts = timestamp_positions(ts)
    test_start = int(np.floor(n_ts * (1 - fraction)))
    train_end = test_start - purge
    if train_end < 1 or test_start >= n_ts:
        raise ValueError(
            f"not enough history for a purged holdout: {n_ts} timestamps, holdout {fraction:.0%}, purge {purge} bars"
        )
    rows = np.arange(len(pos))
    return Fold(index=0, train=rows[pos < train_end], test=rows[pos >= test_start], test_start=test_start, train_end=train_end)
