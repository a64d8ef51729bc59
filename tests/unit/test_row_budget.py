"""data.rowBudget: a panel over budget is cut to whole timestamp blocks (seeded, spread, newest kept), chosen before the features are read."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from trainpipe.contract.pipeline import PipelineSpec
from trainpipe.cv import holdout_cut, purged_walk_forward, timestamp_positions
from trainpipe.data.loading import load_panel
from trainpipe.data.sampling import block_ranges, choose_blocks, describe, in_ranges, overlaps, sample_ranges

# ---------------------------------------------------------------- choose_blocks: a table of cases


def _rows(counts, blocks):
    return sum(int(np.sum(np.asarray(counts)[a:b])) for a, b in blocks)


@pytest.mark.parametrize("counts,budget,n_blocks,seed,expected", [
    ([3] * 10, 30, 4, 0, ((0, 10),)),  # fits: everything, one block
    ([3] * 10, 1000, 1, 7, ((0, 10),)),
    ([1] * 10, 5, 1, 0, ((5, 10),)),  # one block: the newest five timestamps
    ([2] * 100, 40, 2, 0, None),  # two blocks of 10 timestamps; the last one ends at the newest
    ([5, 5, 5, 50, 5, 5, 5, 5], 20, 1, 3, ((4, 8),)),  # a heavy timestamp is trimmed off the block's old end
])
def test_choose_blocks_table(counts, budget, n_blocks, seed, expected):
    blocks = choose_blocks(np.array(counts), budget, n_blocks, seed)
    if expected is not None:
        assert blocks == expected
    assert _rows(counts, blocks) <= budget
    assert blocks[-1][1] == len(counts)  # the newest timestamp is always kept


@pytest.mark.parametrize("n_ts,per_ts,budget,n_blocks", [(5000, 100, 200_000, 8), (5000, 1000, 2_000_000, 8), (777, 13, 2_000, 5), (300, 7, 1_000, 16)])
@pytest.mark.parametrize("seed", [0, 1, 42])
def test_blocks_fit_the_budget_spread_over_history_and_use_most_of_it(n_ts, per_ts, budget, n_blocks, seed):
    counts = np.full(n_ts, per_ts)
    blocks = choose_blocks(counts, budget, n_blocks, seed)
    kept = _rows(counts, blocks)
    assert kept <= budget
    assert kept >= 0.8 * budget  # the budget is used, not thrown away by rounding
    assert all(a < b for a, b in blocks) and all(b1 < a2 for (_, b1), (a2, _) in zip(blocks, blocks[1:]))  # sorted, disjoint, gaps between
    assert blocks[-1][1] == n_ts
    edges = np.linspace(0, n_ts, min(n_blocks, n_ts) + 1)
    assert blocks[0][0] < edges[1]  # the oldest stratum holds a block: history, not just the recent past
    assert choose_blocks(counts, budget, n_blocks, seed) == blocks  # deterministic from the seed


def test_seed_moves_the_blocks_but_not_the_newest():
    counts = np.full(1000, 10)
    a, b = choose_blocks(counts, 2_000, 4, 1), choose_blocks(counts, 2_000, 4, 2)
    assert a != b and a[-1] == b[-1]


def test_ragged_counts_never_overflow():
    counts = np.random.default_rng(0).integers(1, 200, size=2_000)
    for seed in range(5):
        assert _rows(counts, choose_blocks(counts, 10_000, 6, seed)) <= 10_000


def test_a_budget_below_one_timestamp_is_a_clear_error():
    with pytest.raises(ValueError, match="rowBudget"):
        choose_blocks(np.array([100, 100, 100]), 50, 1, 0)


def test_ranges_and_overlaps():
    calendar = np.arange(0, 100, 10)
    ranges = block_ranges(calendar, ((1, 3), (6, 8)))
    assert ranges == ((10, 20), (60, 70))
    np.testing.assert_array_equal(in_ranges(np.array([0, 10, 15, 20, 25, 60, 70, 71]), ranges), [0, 1, 1, 1, 0, 1, 1, 0])
    assert overlaps(18, 40, ranges) and overlaps(0, 10, ranges) and not overlaps(21, 59, ranges) and not overlaps(71, 90, ranges)


def test_the_record_reads_back_to_the_same_ranges():
    calendar = pd.date_range("2020-01-01", periods=50, freq="5min", tz="UTC").asi8
    counts = np.full(50, 4)
    blocks = choose_blocks(counts, 80, 3, 0)
    sample = describe(calendar, counts, blocks, 80, 0)
    assert sample_ranges(sample) == block_ranges(calendar, blocks)
    assert sample.rows_kept == _rows(counts, blocks) and sample.rows_available == 200 and len(sample.blocks) == len(blocks)


# ---------------------------------------------------------------- CV on a panel with gaps between blocks


@pytest.mark.parametrize("seed", [0, 3])
def test_walk_forward_and_holdout_purge_in_real_bars_across_block_gaps(seed):
    """Positions of the kept calendar are a subset of the real bars: a purge of k positions is at least k real bars."""
    n_ts, symbols, horizon = 2_000, 5, 20
    counts = np.full(n_ts, symbols)
    blocks = choose_blocks(counts, 4_000, 6, seed)
    real_bar = np.concatenate([np.arange(a, b) for a, b in blocks])  # each kept timestamp's index in the real calendar
    ts = np.repeat(real_bar, symbols)
    pos, _ = timestamp_positions(ts)
    folds = list(purged_walk_forward(ts, 4, purge=horizon))
    assert folds
    for fold in folds:
        # A training row's label covers real bars (t, t + horizon]: all of it before the first test bar.
        assert ts[fold.train].max() + horizon < ts[fold.test].min()
        assert pos[fold.train].max() < fold.test_start - horizon
    stamps = (np.datetime64("2020-01-01", "ns") + ts.astype("timedelta64[m]")).astype("datetime64[ns]")
    cut = holdout_cut(stamps, np.array(["S"] * len(ts)), 0.2, {"fwd_ret_20m": horizon}, 5, min_development_rows=0)
    dev_end = np.datetime64(cut.development_end.removesuffix("Z"), "ns")
    start = np.datetime64(cut.holdout_start.removesuffix("Z"), "ns")
    last_dev = stamps[stamps < dev_end].max()
    assert (start - last_dev) // np.timedelta64(1, "m") > horizon + 5 - 1  # purge + embargo in real bars, gaps only widen it


# ---------------------------------------------------------------- the loader


def _write(tmp_path, n_ts=400, symbols=("AAA", "BBB", "CCC"), row_group=50):
    ts = pd.date_range("2021-01-04", periods=n_ts, freq="h", tz="UTC")
    rng = np.random.default_rng(0)
    for sym in symbols:
        folder = tmp_path / f"symbol={sym}"
        folder.mkdir(parents=True)
        table = pa.table({"ts": ts, "f0": rng.normal(size=n_ts), "fwd_ret_1h": rng.normal(size=n_ts)})
        pq.write_table(table, folder / f"{sym}.parquet", row_group_size=row_group)
    return ts


def test_under_budget_the_panel_is_read_whole_and_unmarked(tmp_path):
    _write(tmp_path)
    panel = load_panel(tmp_path, row_budget=1_200)
    assert panel.sample is None and len(panel.frame) == 1_200


def test_over_budget_whole_timestamps_in_blocks_newest_kept(tmp_path):
    ts = _write(tmp_path)
    whole = load_panel(tmp_path)
    panel = load_panel(tmp_path, row_budget=300, sample_blocks=3, seed=5)
    frame = panel.frame
    assert panel.sample is not None and panel.sample.rows_kept == len(frame) <= 300 and panel.sample.rows_available == 1_200
    assert frame.groupby("ts").size().eq(3).all()  # every kept timestamp with all its symbols
    assert frame["ts"].max() == ts[-1]  # the newest bar is kept
    assert frame["ts"].is_monotonic_increasing  # time order inside and across blocks
    # Exactly the rows of the whole panel inside the recorded blocks, values untouched.
    expected = whole.frame.loc[in_ranges(pd.DatetimeIndex(whole.frame["ts"]).asi8, sample_ranges(panel.sample))].reset_index(drop=True)
    pd.testing.assert_frame_equal(frame, expected)
    again = load_panel(tmp_path, columns=["f0"], time_ranges=sample_ranges(panel.sample))
    pd.testing.assert_frame_equal(again.frame, frame.drop(columns=["fwd_ret_1h"]))
    assert again.sample is None


def test_row_groups_outside_the_blocks_are_not_read(tmp_path, monkeypatch):
    _write(tmp_path, row_group=20)
    read: list[int] = []
    original = pq.ParquetFile.read_row_groups

    def spy(self, groups, *args, **kwargs):
        read.extend(groups)
        return original(self, groups, *args, **kwargs)

    monkeypatch.setattr(pq.ParquetFile, "read_row_groups", spy)
    panel = load_panel(tmp_path, row_budget=150, sample_blocks=2, seed=0)
    assert panel.sample is not None
    # 3 files × 20 groups; the kept blocks span few of them (a block touches at most one group more than it fills).
    assert 0 < len(read) <= 3 * (len(panel.sample.blocks) + panel.sample.timestamps_kept // 20 + 1)


def test_default_budget_leaves_the_examples_whole():
    assert PipelineSpec().data.row_budget == 2_000_000
