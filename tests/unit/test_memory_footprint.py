"""The accessors and helpers that keep a stage's memory near the size of its data."""

from __future__ import annotations

import numpy as np
import pandas as pd
from trainpipe_bench.stage_bench import panel_bytes

from trainpipe.data.frames import frame_ts
from trainpipe.memory import configure, release
from trainpipe.stages.binned import binned_dataset, subset


def test_zoned_timestamps_come_back_as_datetime64_not_python_objects():
    ts = pd.date_range("2024-01-01 09:30", periods=5, freq="h", tz="America/New_York")
    frame = pd.DataFrame({"ts": ts})
    out = frame_ts(frame)
    assert out.dtype == np.dtype("datetime64[ns]")
    np.testing.assert_array_equal(out, ts.tz_convert("UTC").tz_localize(None).to_numpy())


def test_naive_timestamps_are_read_as_they_are():
    ts = pd.date_range("2024-01-01", periods=3, freq="D")
    np.testing.assert_array_equal(frame_ts(pd.DataFrame({"ts": ts})), ts.to_numpy())


def test_a_subset_of_the_binned_dataset_has_exactly_its_rows_and_labels():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(500, 4)).astype(np.float32)
    base = binned_dataset(x, seed=1)
    rows = np.arange(0, 500, 3)
    label = rng.normal(size=len(rows))
    part = subset(base, rows, label)
    assert part.num_data() == len(rows)
    np.testing.assert_allclose(part.get_label(), label.astype(np.float32))


def test_panel_bytes_counts_a_shared_symbol_name_once():
    frame = pd.DataFrame({"symbol": np.array(["AAPL", "MSFT"] * 500, dtype=object), "v": np.zeros(1000)})
    shallow = int(frame.memory_usage(deep=False, index=True).sum())
    import sys

    assert panel_bytes(frame) == shallow + sys.getsizeof("AAPL") + sys.getsizeof("MSFT")
    assert panel_bytes(frame) < int(frame.memory_usage(deep=True).sum())


def test_allocator_settings_leave_a_users_choice_alone(monkeypatch):
    monkeypatch.setenv("MIMALLOC_PURGE_DELAY", "250")
    configure()
    import os

    assert os.environ["MIMALLOC_PURGE_DELAY"] == "250"
    release()  # glibc here: must simply return
