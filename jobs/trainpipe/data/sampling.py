"""Which timestamp blocks a panel larger than its row budget (data.rowBudget) keeps; `data.loading` calls these before it reads any feature.

A budget never keeps random rows: it keeps whole *timestamp blocks*, contiguous runs of the panel's
calendar (the union of every symbol's timestamps) with every symbol's rows inside them, so a block is
a small panel of its own in time order. The blocks are spread across history (one per equal stratum
of the calendar, at an offset drawn from the run's seed), and the last one always ends at the newest
bar, so the holdout the run cuts from the end of the kept calendar is the panel's own latest history.

Why the purged splits stay honest across the gaps: `trainpipe.cv` counts purges in positions of the
*kept* calendar, and a kept calendar is a subset of the real one, so k positions apart is at least k
real bars apart; a gap only widens the distance between a training label and the test rows after it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from trainpipe.contract.cut import PanelSample, TimeBlock

Block = tuple[int, int]  # [start, stop) positions in the calendar


def calendar_counts(ts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(sorted unique timestamps, rows at each) of a panel's int64 timestamps."""
    calendar, counts = np.unique(ts, return_counts=True)
    return calendar, counts.astype(np.int64)


def choose_blocks(counts: np.ndarray, budget: int, n_blocks: int, seed: int) -> tuple[Block, ...]:
    """The calendar blocks to keep so that at most `budget` rows remain; `counts` is the rows at each timestamp.

    Everything is kept (one block) when it fits. Otherwise the calendar is cut into `n_blocks` equal
    strata; each holds one block of at most budget / n_blocks rows (its share), starting at an offset
    drawn from `seed` and grown forward, then backward, while its rows fit the share (the last
    stratum's block ends at the newest timestamp). Adjacent blocks are merged, empty ones dropped. Pure: the same
    counts, budget, blocks and seed always give the same blocks.
    """
    if budget < 1:
        raise ValueError(f"row budget must be at least 1, got {budget}")
    if n_blocks < 1:
        raise ValueError(f"blocks must be at least 1, got {n_blocks}")
    counts = np.asarray(counts, dtype=np.int64)
    n_ts = len(counts)
    if n_ts == 0:
        return ()
    if int(counts.sum()) <= budget:
        return ((0, n_ts),)
    n = min(n_blocks, n_ts)
    quota = budget // n
    edges = np.linspace(0, n_ts, n + 1).astype(np.int64)
    cumulative = np.concatenate([[0], np.cumsum(counts)])
    rng = np.random.default_rng(seed)
    blocks: list[Block] = []
    for i in range(n):
        lo, hi = int(edges[i]), int(edges[i + 1])
        mean = cumulative[hi] - cumulative[lo]
        length = min(hi - lo, max(1, int(quota * (hi - lo) // max(mean, 1))))
        draw = int(rng.integers(0, hi - lo - length + 1))  # drawn for every stratum, so one block's length moves no other's offset
        if i == n - 1:
            stop = hi  # the newest stratum's block ends at the newest bar
        else:  # from the drawn start, forward as far as the share and the stratum allow
            stop = min(hi, int(np.searchsorted(cumulative, cumulative[lo + draw] + quota, side="right")) - 1)
        # Then backward as far as the share allows: a heavy stretch shortens the block, a light one lengthens it.
        start = max(lo, int(np.searchsorted(cumulative, cumulative[stop] - quota, side="left")))
        if start < stop:
            blocks.append((start, stop))
    if not blocks:
        raise ValueError(f"a row budget of {budget} leaves no timestamp whole: one timestamp holds up to {int(counts.max())} rows "
                         f"over {n} blocks; raise data.rowBudget or lower data.sampleBlocks")
    return _merged(blocks)


def _merged(blocks: Sequence[Block]) -> tuple[Block, ...]:
    out: list[Block] = []
    for start, stop in blocks:
        if out and out[-1][1] >= start:
            out[-1] = (out[-1][0], max(out[-1][1], stop))
        else:
            out.append((start, stop))
    return tuple(out)


def block_ranges(calendar: np.ndarray, blocks: Sequence[Block]) -> tuple[tuple[int, int], ...]:
    """Each block as (first, last) timestamp, both inclusive, in the calendar's units (int64 ns in the loader)."""
    return tuple((int(calendar[start]), int(calendar[stop - 1])) for start, stop in blocks)


def in_ranges(ts: np.ndarray, ranges: Sequence[tuple[int, int]]) -> np.ndarray:
    """Rows whose timestamp falls inside one of `ranges` (inclusive bounds, sorted, disjoint)."""
    if not ranges:
        return np.zeros(len(ts), dtype=bool)
    lows = np.array([lo for lo, _ in ranges], dtype=np.int64)
    highs = np.array([hi for _, hi in ranges], dtype=np.int64)
    which = np.searchsorted(lows, ts, side="right") - 1  # the last range starting at or before each row
    return (which >= 0) & (ts <= highs[np.maximum(which, 0)])


def overlaps(low: int, high: int, ranges: Sequence[tuple[int, int]]) -> bool:
    """Whether [low, high] (a row group's timestamp statistics) meets one of `ranges`: if not, it is skipped unread."""
    return any(lo <= high and low <= hi for lo, hi in ranges)


def describe(calendar: np.ndarray, counts: np.ndarray, blocks: Sequence[Block], budget: int, seed: int) -> PanelSample:
    """The record of a cut-down panel (rankings keep it in the run's holdout cut); `calendar` is int64 ns."""
    cumulative = np.concatenate([[0], np.cumsum(counts)])
    kept = [TimeBlock(first=_iso(calendar[start]), last=_iso(calendar[stop - 1]), timestamps=stop - start,
                      rows=int(cumulative[stop] - cumulative[start])) for start, stop in blocks]
    return PanelSample(row_budget=budget, seed=seed, rows_available=int(cumulative[-1]), rows_kept=sum(b.rows for b in kept),
                       timestamps_available=len(calendar), timestamps_kept=sum(b.timestamps for b in kept), blocks=kept)


def sample_ranges(sample: PanelSample) -> tuple[tuple[int, int], ...]:
    """The recorded blocks as inclusive (first, last) int64 nanoseconds: what a later stage reads again."""
    return tuple((_ns(b.first), _ns(b.last)) for b in sample.blocks)


def _iso(value: np.int64) -> str:
    return str(np.datetime_as_string(np.datetime64(int(value), "ns"), unit="ns")) + "Z"


def _ns(text: str) -> int:
    return int(np.datetime64(text.removesuffix("Z"), "ns").astype(np.int64))
