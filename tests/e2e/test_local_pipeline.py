"""`trainpipe run` on the real example data: every artefact of the output contract, the cache, determinism."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import machine_device, ok, trainpipe
from trainpipe.contract.cut import HoldoutCut
from trainpipe.contract.pipeline import TrainingSpec
from trainpipe.data.loading import load_panel
from trainpipe.families.registry import load_model
from trainpipe.io.layout import Layout

RUN = ("--auto-targets", "--auto-features", "--top-n-targets", "3", "--top-m-features", "15")


@pytest.fixture(scope="module")
def first_run(example_data: Path, tmp_path_factory) -> tuple[Layout, str]:
    out = tmp_path_factory.mktemp("run") / "out"
    result = ok(trainpipe("run", "--data-dir", str(example_data), *RUN, "--output-dir", str(out)))
    return Layout(out), result.stdout + result.stderr


def test_ranking_artefacts(first_run):
    layout, _ = first_run
    table = pd.read_parquet(layout.rankings_parquet)
    for col in ["target", "task", "score", "ic", "rank_ic", "r2", "auc", "consistency", "n_samples", "status", "reason"]:
        assert col in table.columns, col
    assert set(table["target"]) == {"fwd_ret_1d", "fwd_ret_5d", "fwd_ret_10d", "fwd_ret_20d", "y_up_5d", "y_up_20d"}
    assert table["selected"].sum() == 3
    assert (table.loc[table["task"] == "regression", "r2"].notna()).all()
    assert (table.loc[table["task"] == "binary", "auc"].between(0.3, 0.7)).all()  # honest OOS AUCs on daily returns
    ranking = json.loads(layout.rankings_json.read_text())
    assert ranking["selected"] == list(table.loc[table["selected"], "target"])


def test_selection_artefacts(first_run):
    layout, _ = first_run
    selected = json.loads(layout.rankings_json.read_text())["selected"]
    kept = 0
    for target in selected:
        sel = json.loads(layout.selected_features(target).read_text())
        assert len(sel["features"]) <= 15
        kept += len(sel["features"])
        scores = pd.read_parquet(layout.feature_scores(target))
        for col in ["lightgbm_gain", "xgboost_gain", "catboost", "permutation", "mutual_info", "consensus", "support", "oos_ic", "null_threshold",
                    "beats_null"]:
            assert col in scores.columns, col
        # A feature is selected only when its held-out effect beats the shuffled-target null: none may, for a target.
        assert scores.loc[scores["selected"], "beats_null"].all()
        chosen = scores.loc[scores["selected"]].sort_values("consensus", ascending=False)
        assert list(chosen["feature"]) == sel["features"]  # ordered best first
        assert (chosen["support"] >= 2).all()
    assert kept > 0, "the demo's targets carry evidence: some features beat the null"


def test_plan_artefacts(first_run):
    layout, _ = first_run
    cands = pd.read_parquet(layout.routing_candidates)
    assert (cands["sample_size"] > 0).all()
    routing = json.loads(layout.routing_plan_json.read_text())
    assert layout.routing_plan_md.exists()
    master = json.loads(layout.master_training_plan.read_text())
    assert master == json.loads(layout.training_plan_mirror.read_text())
    # snake_case keys, as plan readers written before trainpipe look them up.
    assert master["metadata"]["routing_plan_path"] == "METRICS/routing_plan/routing_plan.json"
    assert master["jobs"], "the plan has jobs"
    assert master["metadata"]["total_jobs"] == master["summary"]["total_jobs"] == sum(master["summary"]["by_route"].values()) == len(master["jobs"])
    assert {j["training_type"] for j in master["jobs"]} <= {"cross_sectional", "symbol_specific"}
    # A kept target whose features all failed the null is routed but has no job; the plan says why.
    assert set(routing["targets"]) >= {j["target"] for j in master["jobs"]}
    for view in ["by_target", "by_symbol", "by_type", "by_route"]:
        assert any((layout.training_plan_dir / view).glob("*.json")), view
    priorities = [j["priority"] for j in master["jobs"]]
    assert priorities == sorted(priorities, reverse=True)
    # The run's cut, fixed before ranking, is in the plan and is the one rank recorded.
    ranking = json.loads(layout.rankings_json.read_text())
    assert HoldoutCut.model_validate(master["metadata"]["holdout_cut"]) == HoldoutCut.model_validate(ranking["holdout_cut"])
    assert set(ranking["holdout_cut"]["symbols"]) == set(ranking["symbols"])


def test_every_planned_model_is_trained_with_honest_metrics_and_reloads(first_run, example_data):
    layout, _ = first_run
    master = json.loads(layout.master_training_plan.read_text())
    cut = master["metadata"]["holdout_cut"]
    panel = load_panel(example_data)
    new_rows = panel.frame.tail(60)
    for job in master["jobs"]:
        for family in job["model_families"]:
            model_dir = layout.model_dir(job["job_id"], family)
            metrics = json.loads((model_dir / "metrics.json").read_text())
            assert metrics["device"] == "cpu"
            assert metrics["n_test"] > 0 and metrics["n_train"] > metrics["n_test"]
            key = "auc" if job["task"] == "binary" else "rank_ic"
            # A headline figure is there, or the model is flagged as having no timing and `undefined` says why.
            if metrics["metrics"][key] is None:
                assert metrics["timing"]["has_timing"] is False and metrics["metrics"]["undefined"][key], metrics["timing"]
            else:
                # Every headline figure carries its interval, with overlapping labels counted once per horizon.
                assert metrics["metrics"][f"{key}_low"] <= metrics["metrics"][key] <= metrics["metrics"][f"{key}_high"]
            assert metrics["metrics"][f"{key}_method"] == ("pooled" if job["symbol"] else "cross_sectional_mean")
            assert metrics["timing"]["has_timing"] is (metrics["timing"]["kind"] is None)
            assert metrics["backtest"]["cost_bps"] == TrainingSpec().cost_bps
            assert "turnover" in metrics["backtest"]
            assert metrics["backtest"]["baseline_sharpe"] is not None and 240 < metrics["backtest"]["bars_per_year"] < 260
            assert 0 < metrics["metrics"]["n_eff"] < metrics["n_test"] or metrics["holdout"]["horizon_bars"] == 1
            if metrics["backtest"].get("sharpe") is not None:
                assert metrics["backtest"]["sharpe_se"] > 0 and metrics["backtest"]["phases"] == metrics["holdout"]["horizon_bars"]
            assert "hit_rate_baseline" in metrics["metrics"]
            if job["task"] == "binary":
                assert metrics["metrics"]["brier"] is not None and metrics["metrics"]["log_loss"] is not None
            # Scored on the run's one holdout, the same instant for every job: no test row precedes a training row.
            assert pd.Timestamp(metrics["holdout"]["test_start"]) >= pd.Timestamp(cut["holdout_start"]) > pd.Timestamp(metrics["holdout"]["train_end"])
    job = master["jobs"][0]
    model = load_model(layout.model_dir(job["job_id"], job["model_families"][0]))
    rows = new_rows if job["symbol"] is None else new_rows[new_rows["symbol"] == job["symbol"]]
    pred = model.predict(rows)
    assert len(pred) == len(rows) and np.isfinite(pred).all()


def test_report_shows_every_section(first_run):
    layout, out = first_run
    html = layout.report_html.read_text()
    for section in ["Holdout cut", "Target ranking", "Selected features", "Training plan", "Models"]:
        assert section in html
    assert html.count("<img") >= 2
    assert str(layout.report_html) in out
    assert "too_good" in html and "bt_baseline_sharpe" in html and "No feature leaked" in html
    assert "would show on pure noise" in html and "<th>bt_dsr</th>" in html
    assert "<th>no_timing</th>" in html and "<th>bt_long_only_excess_sharpe</th>" in html and "models without timing" in html


def test_second_run_hits_the_cache_and_a_setting_reruns_only_its_stages(first_run, example_data):
    layout, _ = first_run
    plan_before = layout.master_training_plan.read_text()
    again = ok(trainpipe("run", "--data-dir", str(example_data), *RUN, "--output-dir", str(layout.root)))
    text = again.stderr
    for stage in ["rank", "select", "plan", "cpu", "gpu"]:
        assert f"{stage}: inputs unchanged" in text, text
    assert layout.master_training_plan.read_text() == plan_before

    changed = ok(trainpipe("run", "--data-dir", str(example_data), *RUN[:-1], "12", "--output-dir", str(layout.root)))
    assert "rank: inputs unchanged" in changed.stderr
    assert "select: inputs unchanged" not in changed.stderr and "plan: inputs unchanged" not in changed.stderr
    selected = json.loads(layout.rankings_json.read_text())["selected"]
    assert all(len(json.loads(layout.selected_features(t).read_text())["features"]) <= 12 for t in selected)


def _without_timestamp(path: Path) -> dict:
    data = json.loads(path.read_text())
    data["metadata"].pop("generated_at")
    return data


def test_same_inputs_give_identical_plans(example_data, tmp_path):
    plans = []
    for name in ("a", "b"):
        out = tmp_path / name
        # Three symbols are too few for the evidence gates to leave a plan: the gates are reported, not applied.
        ok(trainpipe("run", "--data-dir", str(example_data), "--symbols", "AAPL", "NVDA", "META", "--top-n-targets", "2",
                     "--top-m-features", "10", "--train-anyway", "--skip-training", "--output-dir", str(out)))
        plans.append((_without_timestamp(Layout(out).master_training_plan), _without_timestamp(Layout(out).routing_plan_json)))
    assert plans[0] == plans[1]


def test_bad_input_is_one_clear_error(tmp_path, example_data):
    empty = tmp_path / "empty"
    empty.mkdir()
    result = trainpipe("run", "--data-dir", str(empty), "--output-dir", str(tmp_path / "out"))
    assert result.returncode == 3  # BAD_DATA
    assert str(empty) in result.stderr and "Traceback" not in result.stderr
    unknown = trainpipe("run", "--data-dir", str(example_data), "--families", "lightgbm", "no_such_family", "--output-dir", str(tmp_path / "out2"))
    assert unknown.returncode == 2 and "no_such_family" in unknown.stderr  # INVALID_SPEC and "Traceback" not in unknown.stderr
    assert not (tmp_path / "out2").exists()


def test_cpu_stage_finishes_before_the_gpu_stage_starts(example_data, tmp_path):
    # Relative paths, as `make demo` passes them: the isolated workers must not depend on their own cwd.
    (tmp_path / "data").symlink_to(example_data)
    out = tmp_path / "two-stage"
    # Three symbols are too few for the evidence gates to leave a plan: the stage order is under test, so the gates are off.
    ok(trainpipe("run", "--data-dir", "data", "--symbols", "AAPL", "NVDA", "META", "--top-n-targets", "1", "--train-anyway",
                 "--top-m-features", "10", "--families", "mlp", "lightgbm", "lstm", "--output-dir", "two-stage", cwd=tmp_path))
    layout = Layout(out)
    plan = json.loads(layout.master_training_plan.read_text())
    assert plan["jobs"][0]["model_families"] == ["lightgbm", "mlp", "lstm"]  # CPU→GPU order, whatever the flag order
    cpu_done = [(layout.model_dir(j["job_id"], "lightgbm") / "metrics.json").stat().st_mtime for j in plan["jobs"]]
    gpu_started = [p.stat().st_mtime for p in layout.training_work_dir("gpu").glob("*/request.json")]
    assert len(gpu_started) == 2 and max(cpu_done) <= min(gpu_started)
    # GPU families train on the GPU the machine has, on the CPU when it has none, and say which.
    expected = {"mlp": machine_device("tf"), "lstm": machine_device("torch")}
    for job in plan["jobs"]:
        for family in ("mlp", "lstm"):
            metrics = json.loads((layout.model_dir(job["job_id"], family) / "metrics.json").read_text())
            assert metrics["stage"] == "gpu" and metrics["device"].split(":")[0] == expected[family], (family, metrics["device"])
            # and train under the budget of that device, recorded beside it
            budget_device = "cpu" if expected[family] == "cpu" else "gpu"
            assert metrics["budget"]["device"] == budget_device and metrics["params"]["epochs"] == metrics["budget"]["epochs"], metrics["budget"]


def test_gpu_stage_refuses_to_start_before_the_cpu_stage(example_data, tmp_path):
    # Two symbols carry no evidence of skill: the gate between the stages is under test, so the run trains anyway.
    args = ("--data-dir", str(example_data), "--symbols", "AAPL", "NVDA", "--top-n-targets", "1", "--top-m-features", "8",
            "--families", "lightgbm", "mlp", "--train-anyway", "--output-dir", str(tmp_path / "out"))
    ok(trainpipe("run", *args, "--skip-training"))
    early = trainpipe("train", "--stage", "gpu", *args)
    assert early.returncode == 5 and "Traceback" not in early.stderr  # GATE_CLOSED
    assert "gpu stage cannot start" in early.stderr and "lightgbm" in early.stderr
    assert not any((tmp_path / "out" / "models").glob("*/mlp"))


def test_a_unit_run_alone_trains_the_model_the_whole_run_trained(first_run, example_data, tmp_path):
    # What a pod of the lightgbm Job does: the plan on the volume, one unit, its termination message.
    layout, _ = first_run
    unit_dir = tmp_path / "unit"
    shutil.copytree(layout.training_plan_dir, Layout(unit_dir).training_plan_dir)
    plan = json.loads(layout.master_training_plan.read_text())
    log = tmp_path / "termination-log"
    ok(trainpipe("train", "--stage", "cpu", "--family", "lightgbm", "--unit-index", "0", "--data-dir", str(example_data), *RUN,
                 "--output-dir", str(unit_dir), "--termination-log", str(log)))
    report = json.loads(log.read_text())
    assert report["status"] == "ran" and report["family"] == "lightgbm"
    whole = json.loads((layout.model_dir(report["jobId"], "lightgbm") / "metrics.json").read_text())
    alone = json.loads((Layout(unit_dir).model_dir(report["jobId"], "lightgbm") / "metrics.json").read_text())
    for timing in ("train_seconds", "peak_rss_mb"):
        whole.pop(timing), alone.pop(timing)
    assert alone == whole
    assert report["jobId"] in {job["job_id"] for job in plan["jobs"]}  # the termination message stays camelCase
