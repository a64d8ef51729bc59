"""The scale benchmark's panels load as the stages read them, and its spec is a valid pipeline spec."""

from __future__ import annotations

import pyarrow.parquet as pq
from trainpipe_bench.scale_data import ROW_GROUP, bench_spec, symbol_bars

from trainpipe.contract.pipeline import PipelineSpec
from trainpipe.data.loading import load_panel


def test_generated_bars_load_with_row_groups_and_a_budget(tmp_path):
    for i in range(3):
        folder = tmp_path / f"symbol=S{i:04d}"
        folder.mkdir()
        pq.write_table(symbol_bars(i, 2_000, seed=7), folder / f"S{i:04d}.parquet", row_group_size=ROW_GROUP)
    assert pq.ParquetFile(tmp_path / "symbol=S0000" / "S0000.parquet").metadata.num_row_groups == 2_000 // ROW_GROUP
    panel = load_panel(tmp_path)
    assert set(panel.targets) == {"fwd_ret_5m", "fwd_ret_1h", "y_up_5m"} and "sig" in panel.features
    assert len(panel.frame) == 6_000 and panel.interval_minutes == 5
    budgeted = load_panel(tmp_path, row_budget=3_000, seed=7)
    assert budgeted.sample is not None and len(budgeted.frame) <= 3_000
    assert symbol_bars(1, 100, seed=7).to_pandas().equals(symbol_bars(1, 100, seed=7).to_pandas())  # cached panels are reproducible


def test_bench_spec_is_a_valid_spec(tmp_path):
    spec = PipelineSpec.model_validate(bench_spec(tmp_path, 1_000_000, 7))
    assert spec.data.row_budget == 1_000_000 and spec.training.families == ["lightgbm"]
    assert PipelineSpec.model_validate(bench_spec(tmp_path, None, 7)).data.row_budget == PipelineSpec().data.row_budget
