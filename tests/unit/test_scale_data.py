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


def test_the_operator_run_is_a_valid_pipeline_on_the_store_with_rank_in_groups_and_a_memory_limit():
    from trainpipe_bench.scale_data_operator import MEMORY_LIMIT, TARGET_GROUPS, pipeline

    from trainpipe.contract.pipeline import TrainingPipeline

    s3 = {"AWS_ENDPOINT_URL": "http://10.213.1.1:8333", "AWS_REGION": "us-east-1"}
    tp = TrainingPipeline.model_validate(pipeline("panel", "s3://trainpipe/scale-data/500000-7", "ns", s3, None, 7, 2))
    assert tp.spec.data.uri == "s3://trainpipe/scale-data/500000-7" and tp.spec.data.volume is None
    assert tp.spec.stages.rank.target_groups == TARGET_GROUPS
    assert all(str(tp.spec.stages.of(s).resources.limits["memory"]) == MEMORY_LIMIT for s in ("rank", "select", "plan", "cpu", "report"))
    assert tp.spec.training.families == ["lightgbm"]


def test_each_pods_peak_comes_from_the_executors_lines_for_its_namespace(tmp_path):
    from trainpipe_bench.scale_data_operator import peaks

    from trainpipe_localcluster.executor import EXIT_FORMAT

    log = tmp_path / "executor.log"
    log.write_text("before the run\n")
    offset = log.stat().st_size
    lines = [EXIT_FORMAT % ("ns", "p-rank-0-a", "main", 0, "1024 KiB"), EXIT_FORMAT % ("other", "q-rank-0-a", "main", 0, "9999 KiB"),
             EXIT_FORMAT % ("ns", "p-cpu-0-b", "main", 137, "2048 KiB"), EXIT_FORMAT % ("ns", "p-cpu-0-b", "main", 0, "4096 KiB"),
             EXIT_FORMAT % ("ns", "p-plan-0-c", "main", 0, "unknown")]
    with log.open("a") as f:
        f.write("".join(f"2026-12-08 03:00:00 INFO {line}\n" for line in lines))
    assert peaks(log, offset, "ns") == {"p-rank-0-a": (0, 1024), "p-cpu-0-b": (0, 4096)}
