"""Time-ordered, purged splits over a panel (many symbols share timestamps); yields row indices, never shuffles.

Rank uses the walk-forward folds, training uses the holdout. Both work on *timestamp positions*, so a
purge of k bars removes the k timestamps before the test block for every symbol at once.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass

import numpy as np

from trainpipe.contract.cut import HoldoutCut, SymbolCoverage, SymbolCut


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


def _by_symbol(ts: np.ndarray, symbols: np.ndarray) -> Iterator[tuple[str, np.ndarray]]:
    """Each symbol (sorted by name) with its rows' timestamps, sorted: one sort for the whole panel."""
    names, code = np.unique(symbols.astype(str), return_inverse=True)
    order = np.lexsort((ts, code))
    bounds = np.searchsorted(code[order], np.arange(len(names) + 1), side="left")
    for i, name in enumerate(names):
        yield str(name), ts[order[bounds[i]:bounds[i + 1]]]


def development_end(ts: np.ndarray, symbols: np.ndarray, holdout_start: np.datetime64, purge_bars: int) -> np.datetime64:
    """The instant rows must precede to stay `purge_bars` bars clear of a holdout that starts at `holdout_start`.

    Counted in the rows' own timestamps (the union over symbols) and, for every symbol with bars on both
    sides, in that symbol's own bars, whichever reaches further back: a business-day symbol beside a
    seven-day one needs its weekend too, or its last development label would end inside the holdout.
    A symbol that ends before the holdout has none for its labels to reach, so it does not move the end.
    """
    calendar = np.unique(ts)
    start = int(np.searchsorted(calendar, holdout_start, side="left"))
    end = calendar[max(start - purge_bars, 0)] if len(calendar) else holdout_start
    for _, own in _by_symbol(ts, symbols):
        own = np.unique(own)
        k = int(np.searchsorted(own, holdout_start, side="left"))
        if 0 < k < len(own):
            end = min(end, own[max(k - purge_bars, 0)])
    return end


def symbol_coverage(development_rows: int, holdout_rows: int, min_development_rows: int) -> SymbolCoverage:
    """Which side of the cut a symbol has bars on; a missing development side outranks a missing holdout."""
    if development_rows == 0:
        return SymbolCoverage.NO_DEVELOPMENT
    if holdout_rows == 0:
        return SymbolCoverage.NO_HOLDOUT
    return SymbolCoverage.SHORT if development_rows < min_development_rows else SymbolCoverage.FULL


def holdout_cut(ts: np.ndarray, symbols: np.ndarray, fraction: float, horizons: Mapping[str, int], embargo_bars: int,
                *, min_development_rows: int) -> HoldoutCut:
    """One holdout for the whole panel: from the (1 − `fraction`) quantile of its timestamps (the union over symbols).

    Development ends `purge_bars` bars earlier (the longest of `horizons`, target → bars, plus the embargo;
    see `development_end`), so no development label reaches into the holdout, for any symbol. A symbol
    that ends before the cut, is listed after it, or keeps fewer than `min_development_rows` development bars is
    recorded as such (`SymbolCut.coverage`), never an error: only a panel left with no development bars is.
    `ts` is datetime64[ns] and `symbols` each row's symbol.
    """
    purge_bars = max(horizons.values(), default=1) + embargo_bars
    if not 0 < fraction < 1:
        raise ValueError(f"holdout fraction must be between 0 and 1, got {fraction}")
    calendar = np.unique(ts)
    start = int(np.floor(len(calendar) * (1 - fraction)))
    if start - purge_bars < 1 or start >= len(calendar):
        raise ValueError(
            f"the panel's {len(calendar)} timestamps leave no development bars before a {fraction:.0%} holdout and a {purge_bars}-bar purge "
            f"(longest target horizon + ranking.embargoBars); add history, lower training.holdoutFraction, or drop long-horizon targets"
        )
    holdout_start = calendar[start]
    dev_end = development_end(ts, symbols, holdout_start, purge_bars)
    cuts = {}
    for name, own in _by_symbol(ts, symbols):
        dev_rows = int(np.searchsorted(own, dev_end, side="left"))
        holdout_rows = len(own) - int(np.searchsorted(own, holdout_start, side="left"))
        cuts[name] = SymbolCut(first_ts=_iso(own[0]), last_ts=_iso(own[-1]), rows=len(own), development_rows=dev_rows,
                               holdout_rows=holdout_rows, coverage=symbol_coverage(dev_rows, holdout_rows, min_development_rows))
    if not any(c.development_rows for c in cuts.values()):
        raise ValueError(
            f"no symbol has a bar before development ends at {_iso(dev_end)} ({purge_bars} bars before the holdout at {_iso(holdout_start)}); "
            f"add history, lower training.holdoutFraction, or drop long-horizon targets"
        )
    return HoldoutCut(fraction=fraction, purge_bars=purge_bars, horizon_bars=dict(sorted(horizons.items())), holdout_start=_iso(holdout_start),
                      development_end=_iso(dev_end), min_development_rows=min_development_rows, symbols=cuts)


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
    """Rows rank, select and plan may read: the pinned panel strictly before the cut's development end."""
    return (ts >= _per_row(symbols, cut, "first_ts")) & (ts < _instant(cut.development_end))


@dataclass(frozen=True)
class HoldoutSplit:
    """One training job's rows on either side of the run's cut; every training row precedes every holdout row."""

    train: np.ndarray  # row indices, ascending
    test: np.ndarray  # row indices, ascending
    train_end: np.datetime64  # training rows are strictly before this instant
    holdout_start: np.datetime64  # holdout rows are at or after this one: the run's, for every job


def cut_split(ts: np.ndarray, symbols: np.ndarray, cut: HoldoutCut, purge_bars: int) -> HoldoutSplit:
    """Training rows and holdout rows of a (pinned) frame under the run's cut.

    The holdout is every row from the cut's holdout start; training stops `purge_bars` bars before it (the
    job's horizon plus the embargo, counted as `development_end` counts), so no training label overlaps it.
    """
    start = _instant(cut.holdout_start)
    train_end = development_end(ts, symbols, start, purge_bars)
    rows = np.arange(len(ts))
    train_rows, test_rows = rows[ts < train_end], rows[ts >= start]
    if len(train_rows) == 0 or len(test_rows) == 0:
        raise ValueError(f"the run's holdout cut at {cut.holdout_start} leaves {len(train_rows)} training and {len(test_rows)} holdout rows "
                         f"with a {purge_bars}-bar purge; add history or lower training.holdoutFraction")
    return HoldoutSplit(train=train_rows, test=test_rows, train_end=train_end, holdout_start=start)
