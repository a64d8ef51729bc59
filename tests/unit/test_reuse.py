"""Reuse across runs: a stage, a select unit or a model is copied from a sibling run folder only when its key matches and its outputs exist."""

from __future__ import annotations

import json

import pytest

from trainpipe.io.layout import Layout
from trainpipe.runner import records
from trainpipe.runner.reuse import find_record, reuse_model, reuse_record, sibling_runs
from trainpipe.training.units import error_path, unit_state


def _finished_rank(root, key: str = "k1", content: str = "rankings") -> Layout:
    layout = Layout(root)
    layout.ranking_dir.mkdir(parents=True)
    layout.rankings_json.write_text(content)
    layout.oos_scores_parquet.write_text("oos")
    records.write_record(layout, "rank", key, ["ranking/target_rankings.json", "ranking/oos_scores.parquet"], {"selected": ["t"]})
    return layout


def test_siblings_leave_out_the_current_run_hidden_folders_and_files(tmp_path) -> None:
    for name in ("r2", "r1", ".tmp", "current"):
        (tmp_path / name).mkdir()
    (tmp_path / "notes.txt").write_text("x")
    assert [p.name for p in sibling_runs(tmp_path, tmp_path / "current")] == ["r1", "r2"]
    assert sibling_runs(tmp_path / "missing", tmp_path / "current") == []


@pytest.mark.parametrize(
    ("sibling_key", "delete_output", "found"),
    [
        ("k1", None, True),
        ("k2", None, False),  # other inputs
        ("k1", "ranking/oos_scores.parquet", False),  # an output went away
    ],
)
def test_a_sibling_counts_only_with_the_same_key_and_all_its_outputs(tmp_path, sibling_key, delete_output, found) -> None:
    _finished_rank(tmp_path / "old", sibling_key)
    if delete_output:
        (tmp_path / "old" / delete_output).unlink()
    current = Layout(tmp_path / "new")
    assert (find_record(tmp_path, current, current.stage_record("rank"), "k1") is not None) is found


def test_reuse_copies_the_outputs_then_writes_the_record(tmp_path) -> None:
    _finished_rank(tmp_path / "old", content="the old run's rankings")
    current = Layout(tmp_path / "new")
    record = reuse_record(tmp_path, current, current.stage_record("rank"), "k1")
    assert record is not None and record.reused_from == str(tmp_path / "old") and record.summary == {"selected": ["t"]}
    assert current.rankings_json.read_text() == "the old run's rankings"
    assert records.is_fresh(current, "rank", "k1")
    assert not any(p.name.endswith(".tmp") for p in current.ranking_dir.iterdir())  # temp copies renamed into place
    assert reuse_record(tmp_path, current, current.stage_record("rank"), "k2") is None


def test_a_folder_output_is_copied_whole(tmp_path) -> None:
    old = Layout(tmp_path / "old")
    (old.training_plan_dir / "by_target").mkdir(parents=True)
    (old.training_plan_dir / "by_target" / "t.json").write_text("{}")
    old.master_training_plan.write_text("plan")
    records.write_record(old, "plan", "k", ["globals/training_plan"], {})
    current = Layout(tmp_path / "new")
    (current.training_plan_dir / "by_target").mkdir(parents=True)
    (current.training_plan_dir / "by_target" / "gone.json").write_text("{}")  # a view of a target that left the plan
    assert reuse_record(tmp_path, current, current.stage_record("plan"), "k") is not None
    assert sorted(p.name for p in (current.training_plan_dir / "by_target").iterdir()) == ["t.json"]
    assert current.master_training_plan.read_text() == "plan"


def test_a_select_unit_record_is_found_at_its_own_path(tmp_path) -> None:
    old = Layout(tmp_path / "old")
    old.selected_features("t").parent.mkdir(parents=True)
    old.selected_features("t").write_text("features")
    old.feature_scores("t").write_text("scores")
    outputs = ["selection/t/selected_features.json", "selection/t/feature_scores.parquet"]
    records.write_record_at(old.select_unit_record("t"), "select", "ku", outputs, {"n_features": 1}, unit="t")
    current = Layout(tmp_path / "new")
    record = reuse_record(tmp_path, current, current.select_unit_record("t"), "ku")
    assert record is not None and record.unit == "t"
    assert current.selected_features("t").read_text() == "features"
    assert not current.selected_features("u").exists()


def _model(root, job: str, family: str, fingerprint: str) -> Layout:
    layout = Layout(root)
    folder = layout.model_dir(job, family)
    folder.mkdir(parents=True)
    (folder / "metrics.json").write_text(json.dumps({"fingerprint": fingerprint, "device": "cpu"}))
    (folder / "model.txt").write_text("trees")
    return layout


def test_a_model_with_the_same_fingerprint_is_copied_and_an_old_error_cleared(tmp_path) -> None:
    _model(tmp_path / "r1", "j", "lightgbm", "other")
    _model(tmp_path / "r2", "j", "lightgbm", "fp")
    current = Layout(tmp_path / "r3")
    error_path(current, "j", "lightgbm").parent.mkdir(parents=True)
    error_path(current, "j", "lightgbm").write_text("failed last time")
    assert reuse_model(tmp_path, current, "j", "lightgbm", "fp") == str(tmp_path / "r2")
    assert unit_state(current, "j", "lightgbm", "fp") == "done"
    assert (current.model_dir("j", "lightgbm") / "model.txt").read_text() == "trees"
    assert not error_path(current, "j", "lightgbm").exists()
    assert reuse_model(tmp_path, current, "j", "xgboost", "fp") is None
    assert reuse_model(tmp_path, Layout(tmp_path / "r4"), "j", "lightgbm", "nobody-has-it") is None
