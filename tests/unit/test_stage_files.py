"""Rank, select and training result files: one reader each, which names the file and the command to run when it cannot be used."""

from __future__ import annotations

import json

import pytest

from trainpipe.contract.names import Stability, TaskType
from trainpipe.contract.results import UnitResult
from trainpipe.contract.selection import PreviousRunCheck, ResampledCheck, SelectionStability, TargetSelection
from trainpipe.io.layout import Layout
from trainpipe.io.stage_files import (
    StageFileError,
    read_rankings,
    read_record,
    read_selection,
    write_record,
    write_selection,
)
from trainpipe.io.training_files import TrainingFileError, append_unit_result, read_unit_results
from trainpipe.runner.records import read_record_at, write_record_at


def test_a_missing_rankings_file_names_the_file_and_the_command(tmp_path):
    with pytest.raises(StageFileError, match=r"ranking/target_rankings\.json is missing: run `trainpipe rank` first"):
        read_rankings(Layout(tmp_path))


def test_a_rankings_file_of_another_schema_is_refused_with_the_field_named(tmp_path):
    layout = Layout(tmp_path)
    layout.ranking_dir.mkdir()
    layout.rankings_json.write_text(json.dumps({"interval_minutes": 1440.0, "selected": ["fwd_ret_1d"]}))
    with pytest.raises(StageFileError, match=r"target_rankings\.json: not a valid rankings file: .*symbols.*run `trainpipe rank` to rewrite it"):
        read_rankings(layout)
    layout.rankings_json.write_text("{not json")
    with pytest.raises(StageFileError, match=r"target_rankings\.json: not a valid rankings file"):
        read_rankings(layout)


def test_a_selection_round_trips_with_its_snake_case_keys(tmp_path):
    layout = Layout(tmp_path)
    selection = TargetSelection(target="fwd_ret_1d", task=TaskType.REGRESSION, features=["b", "a"],
                                stability=SelectionStability(
                                    state=Stability.STABLE,
                                    against_previous=PreviousRunCheck(state=Stability.STABLE, overlap=1.0, kendall_tau=1.0, previous_run="/a/r1",
                                                                      previous_features=["b", "a"]),
                                    resampled=ResampledCheck(state=Stability.STABLE, overlap=0.9, kendall_tau=0.8, resamples=3, block_bars=8, seed=7)))
    write_selection(layout, selection)
    on_disk = json.loads(layout.selected_features("fwd_ret_1d").read_text())
    assert on_disk["features"] == ["b", "a"] and on_disk["stability"]["against_previous"]["kendall_tau"] == 1.0
    assert on_disk["stability"]["resampled"] == {"state": "STABLE", "overlap": 0.9, "kendall_tau": 0.8, "note": None, "resamples": 3,
                                                 "block_bars": 8, "seed": 7}
    assert read_selection(layout, "fwd_ret_1d") == selection
    with pytest.raises(StageFileError, match=r"selection/y_up_1d/selected_features\.json is missing: run `trainpipe select`"):
        read_selection(layout, "y_up_1d")


def test_a_selection_under_another_targets_name_is_refused(tmp_path):
    layout = Layout(tmp_path)
    selection = TargetSelection(target="fwd_ret_1d", task=TaskType.REGRESSION, features=["a"],
                                stability=SelectionStability(
                                    state=Stability.UNKNOWN,
                                    against_previous=PreviousRunCheck(state=Stability.UNKNOWN, overlap=None, kendall_tau=None, note="first run"),
                                    resampled=ResampledCheck(state=Stability.UNKNOWN, overlap=None, kendall_tau=None, resamples=0)))
    write_selection(layout, selection)
    layout.selected_features("fwd_ret_5d").parent.mkdir(parents=True)
    layout.selected_features("fwd_ret_5d").write_bytes(layout.selected_features("fwd_ret_1d").read_bytes())
    with pytest.raises(StageFileError, match="holds the selection of 'fwd_ret_1d', not 'fwd_ret_5d'"):
        read_selection(layout, "fwd_ret_5d")


def test_a_stage_record_lists_unit_and_source_only_when_set(tmp_path):
    path = tmp_path / "rank.json"
    write_record_at(path, "rank", "k1", ["b", "a"], {"selected": ["t"]})
    raw = json.loads(path.read_text())
    assert "unit" not in raw and "reused_from" not in raw and raw["outputs"] == ["a", "b"]
    record = read_record(path)
    assert (record.key, record.outputs, record.summary) == ("k1", ("a", "b"), {"selected": ["t"]})
    write_record(path, record.model_copy(update={"unit": "fwd_ret_1d"}))
    assert json.loads(path.read_text())["unit"] == "fwd_ret_1d"
    # A record the cache cannot trust means "not done", never a crash: the stage simply runs again.
    path.write_text(json.dumps({**raw, "key": 3}))
    assert read_record_at(path) is None
    assert read_record_at(tmp_path / "none.json") is None


def test_unit_results_skip_a_last_line_cut_mid_write_but_not_a_wrong_one(tmp_path):
    path = tmp_path / "results.jsonl"
    assert read_unit_results(path) == []
    done = UnitResult(job_id="j", family="lightgbm", stage="cpu", status="trained", seconds=1.5, device="cpu", model_dir="/m")
    append_unit_result(path, done)
    assert "error" not in json.loads(path.read_text())  # unset fields stay out of the line
    with open(path, "a") as handle:
        handle.write('{"job_id": "k", "fam')  # the worker died while writing
    assert read_unit_results(path) == [done]
    path.write_text('{"job_id": "k"}\n' + done.model_dump_json() + "\n")
    with pytest.raises(TrainingFileError, match=r"results\.jsonl:1: not a unit result"):
        read_unit_results(path)
