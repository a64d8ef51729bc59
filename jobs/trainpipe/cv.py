"""Time-ordered, purged splits over a panel (many symbols share timestamps); yields row indices, never shuffles.

Rank uses the walk-forward folds, training uses the holdout. Both work on *timestamp positions*, so a
purge of k bars removes the k timestamps before the test block for every symbol at once.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass

import numpy as np

from trainpipe.contract.cut import HoldoutCut, SymbolCut


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


# ---------------------------------------------------------------- the run's holdout cut


def _iso(value: np.datetime64) -> str:
    return str(np.datetime_as_string(value.astype("datetime64[ns]"), unit="ns")) + "Z"


def _instant(text: str) -> np.datetime64:
    return np.datetime64(text.removesuffix("Z"), "ns")


def holdout_cut(ts: np.ndarray, symbols: np.ndarray, fraction: float, horizons: Mapping[str, int], embargo_bars: int) -> HoldoutCut:
    """Each symbol's latest `fraction` of its own bars is the holdout; development stops `purge_bars` bars before it.

    Counted per symbol, so a symbol on its own calendar (FX beside crypto) is still scored on its own latest
    bars; on a panel whose symbols share a calendar this is one time cut. `ts` is datetime64[ns], `symbols`
    each row's symbol, rows in time order within each symbol. The purge is the longest of `horizons`
    (target → bars) plus the embargo, so no development label reaches into the holdout.
    """
    purge_bars = max(horizons.values(), default=1) + embargo_bars
    if not 0 < fraction < 1:
        raise ValueError(f"holdout fraction must be between 0 and 1, got {fraction}")
    cuts = {}
    for name in sorted(set(symbols.tolist())):
        own = np.sort(ts[symbols == name])
        n = len(own)
        start = int(np.floor(n * (1 - fraction)))
        dev_end = start - purge_bars
        if dev_end < 1 or start >= n:
            raise ValueError(
                f"symbol {name}: {n} bars leave no development rows before a {fraction:.0%} holdout and a {purge_bars}-bar purge "
                f"(longest target horizon + ranking.embargoBars); add history, lower training.holdoutFraction, or drop long-horizon targets"
            )
        cuts[str(name)] = SymbolCut(first_ts=_iso(own[0]), last_ts=_iso(own[-1]), rows=n, development_end=_iso(own[dev_end]),
                                    holdout_start=_iso(own[start]), holdout_rows=n - start)
    return HoldoutCut(fraction=fraction, purge_bars=purge_bars, horizon_bars=dict(sorted(horizons.items())), symbols=cuts)


def _per_row(symbols: np.ndarray, cut: HoldoutCut, field: str) -> np.ndarray:
    """`field` of each row's symbol as datetime64[ns]; NaT for a symbol the cut does not know."""
    out = np.full(len(symbols), np.datetime64("NaT"), dtype="datetime64[ns]")
    for name, sym_cut in cut.symbols.items():
        out[symbols == name] = _instant(getattr(sym_cut, field))
    return out


def pinned_mask(ts: np.ndarray, symbols: np.ndarray, cut: HoldoutCut) -> np.ndarray:
    """Rows inside the panel rank read: bars appended later, older bars, or other symbols are left out."""
    first, last = _per_row(symbols, cut, "first_ts"), _per_row(symbols, cut, "last_ts")
    return (ts >= first) & (ts <= last)  # NaT compares False: unknown symbols are out


def development_mask(ts: np.ndarray, symbols: np.ndarray, cut: HoldoutCut) -> np.ndarray:
    """Rows rank, select and plan may read: the pinned panel strictly before each symbol's development end."""
    first, end = _per_row(symbols, cut, "first_ts"), _per_row(symbols, cut, "development_end")
    return (ts >= first) & (ts < end)


def cut_split(ts: np.ndarray, symbols: np.ndarray, cut: HoldoutCut, purge_bars: int) -> Fold:
    """Training rows and holdout rows of a (pinned) frame under the run's cut.

    The holdout is each symbol's bars from its holdout start; training stops `purge_bars` of that symbol's
    own bars before it (the job's horizon plus the embargo), so no training label overlaps the holdout.
    """
    rows = np.arange(len(ts))
    train, test = np.zeros(len(ts), dtype=bool), np.zeros(len(ts), dtype=bool)
    for name, sym_cut in cut.symbols.items():
        mine = rows[symbols == name]
        if len(mine) == 0:
            continue
        mine = mine[np.argsort(ts[mine], kind="stable")]
        start = int(np.searchsorted(ts[mine], _instant(sym_cut.holdout_start), side="left"))
        test[mine[start:]] = True
        train[mine[: max(0, start - purge_bars)]] = True
    train_rows, test_rows = rows[train], rows[test]
    if len(train_rows) == 0 or len(test_rows) == 0:
        raise ValueError(f"the run's holdout cut leaves {len(train_rows)} training and {len(test_rows)} holdout rows "
                         f"with a {purge_bars}-bar purge; add history or lower training.holdoutFraction")
    return Fold(index=0, train=train_rows, test=test_rows, test_start=-1, train_end=-1)
