"""One outcome vocabulary, the words on disk unchanged: stage records, training result files and termination lines
read into the typed models and write back byte for byte what the dict-building code wrote (the literals below are
copied from a run made before the models existed)."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from trainpipe.cli.display import describe
from trainpipe.cli.termination import success_line
from trainpipe.contract.names import Stability, Stage
from trainpipe.contract.outcomes import TRAINING_WORDS, Outcome
from trainpipe.contract.reports import (
    DataReport,
    HtmlReport,
    PlanReport,
    RankReport,
    RunReport,
    SelectUnitReport,
    StageCountsReport,
    TrainUnitReport,
)
from trainpipe.contract.results import StageResultFile, UnitRecord, UnitResult
from trainpipe.contract.summaries import TrainingStageSummary
from trainpipe.runner.steps import STEPS
from trainpipe.runner.units import unit_run_outcome

# The `summary` of each stage's record, as `trainpipe run` wrote it into `.trainpipe/<stage>.json`.
RECORDED = {
    Stage.RANK: {"targets_ranked": 6, "selected": ["fwd_ret_20d", "y_up_5d"], "rows": 15834, "development_rows": 12516,
                 "cut_warnings": ["symbol OLD: ends before the cut (…): no holdout"]},
    Stage.SELECT: {"targets": {"fwd_ret_20d": {"n_features": 24, "stability": "UNKNOWN"}, "y_up_5d": {"n_features": 31, "stability": "STABLE"}}},
    Stage.PLAN: {"jobs": 32, "by_route": {"ROUTE_BOTH": 18, "ROUTE_CROSS_SECTIONAL": 3, "ROUTE_SYMBOL_SPECIFIC": 6}, "families": ["lightgbm", "mlp"]},
    Stage.CPU: {"units": 3, "trained": 1, "failed": 1, "skipped": 1, "reused": 0, "devices": ["cpu"],
                "failures": [{"job_id": "sym_aaa", "family": "lightgbm", "reason": "KeyError: 'close'"}]},
    Stage.GPU: {"units": 0, "trained": 0, "failed": 0, "skipped": 0, "reused": 0, "devices": [], "failures": []},
}


@pytest.mark.parametrize("stage", list(RECORDED))
def test_a_stage_summary_reads_and_writes_back_the_record_it_came_from(stage) -> None:
    summary = STEPS[stage].summary.model_validate(RECORDED[stage])
    assert json.dumps(summary.to_wire()) == json.dumps(RECORDED[stage])  # same keys, same order


# What the summary table says about each stage (the line users read at the end of `trainpipe run`).
DESCRIBED = {
    Stage.RANK: "6 targets ranked; kept fwd_ret_20d, y_up_5d\nwarning: symbol OLD: ends before the cut (…): no holdout",
    Stage.SELECT: "fwd_ret_20d: 24 features, first run; y_up_5d: 31 features, stable",
    Stage.PLAN: "32 jobs (both 18, cross_sectional 3, symbol_specific 6); families lightgbm, mlp",
    Stage.CPU: "1 models trained, 1 failed, 1 already done on cpu",
    Stage.GPU: "no units in this stage (the plan's families have none here)",
}


def test_a_rank_record_written_before_the_cut_warnings_still_reads() -> None:
    older = {k: v for k, v in RECORDED[Stage.RANK].items() if k != "cut_warnings"}
    assert describe(STEPS[Stage.RANK].summary.model_validate(older)) == "6 targets ranked; kept fwd_ret_20d, y_up_5d"


@pytest.mark.parametrize("stage", list(DESCRIBED))
def test_the_summary_table_describes_each_stage(stage) -> None:
    assert describe(STEPS[stage].summary.model_validate(RECORDED[stage])) == DESCRIBED[stage]


# Lines of a stage's training result file and of a worker's results.jsonl, as the stages wrote them.
RECORD_LINES = [
    ('{"job_id":"cs_fwd_ret_10d","family":"lightgbm","status":"trained","reason":"","seconds":2.025,"device":"cpu","model_dir":"/o/m"}',
     Outcome.RAN),
    ('{"job_id":"cs_fwd_ret_10d","family":"lightgbm","status":"skipped","reason":"up to date (same fingerprint)","seconds":0.0,'
     '"device":"cpu","model_dir":"/o/m"}', Outcome.SKIPPED),
    ('{"job_id":"cs_fwd_ret_10d","family":"lightgbm","status":"reused","reason":"same fingerprint in /runs/r1","seconds":0.0,'
     '"device":"","model_dir":"/o/m"}', Outcome.REUSED),
    ('{"job_id":"sym_aaa","family":"ftrl_proximal","status":"failed","reason":"KeyError: x","seconds":0.1,"device":"","model_dir":""}',
     Outcome.FAILED),
]


@pytest.mark.parametrize(("line", "outcome"), RECORD_LINES)
def test_a_unit_record_keeps_its_training_word_on_disk(line, outcome) -> None:
    record = UnitRecord.model_validate_json(line)
    assert record.outcome is outcome and record.status == TRAINING_WORDS[outcome]
    assert json.dumps(record.to_wire(), separators=(",", ":")) == line


def test_a_workers_line_round_trips_and_says_trained_or_failed_only() -> None:
    line = ('{"job_id":"cs","family":"catboost","stage":"cpu","status":"trained","seconds":0.465,"device":"cpu","model_dir":"/o/m",'
            '"train_seconds":0.3709,"peak_rss_mb":310.4}')
    result = UnitResult.model_validate_json(line)
    assert result.outcome is Outcome.RAN and result.model_dump_json(by_alias=True, exclude_none=True) == line
    with pytest.raises(ValidationError, match="does not report one skipped"):
        UnitResult(job_id="cs", family="catboost", stage="cpu", outcome=Outcome.SKIPPED, seconds=0.0)


@pytest.mark.parametrize("word", ["ran", "cached", "done", ["trained"], None])
def test_a_training_file_refuses_a_word_it_never_wrote(word) -> None:
    with pytest.raises(ValidationError, match="training files write trained, failed, skipped, reused"):
        UnitRecord.model_validate({"job_id": "j", "family": "lightgbm", "status": word})


def test_a_stage_result_file_counts_its_records_in_the_training_words() -> None:
    records = [UnitRecord.model_validate_json(line) for line, _ in RECORD_LINES]
    wire = {"schema_version": "trainpipe.io/training-result/v1", "stage": "cpu", "trained": 1, "failed": 1, "skipped": 1, "reused": 1,
            "seconds": 1.5, "records": [json.loads(line) for line, _ in RECORD_LINES]}
    assert StageResultFile.model_validate(wire).records == records
    assert json.dumps(StageResultFile.model_validate(wire).to_wire()) == json.dumps(wire)
    with pytest.raises(ValidationError, match="counts disagree"):
        StageResultFile.model_validate({**wire, "trained": 2})


@pytest.mark.parametrize(("trained", "reported"), [
    (Outcome.RAN, Outcome.RAN),
    (Outcome.SKIPPED, Outcome.CACHED),  # up to date: a unit addressed alone is always one its family trains
    (Outcome.REUSED, Outcome.REUSED),
])
def test_a_training_unit_run_alone_reports_in_the_stage_vocabulary(trained, reported) -> None:
    assert unit_run_outcome(trained) is reported


# Each command's termination line, as the dict-building code wrote it (the operator and `kubectl describe pod` read these).
LINES = {
    "rank": (RankReport(selected=2, ranked=6, targets=["fwd_ret_1d", "y_up_1d"], status=Outcome.REUSED),
             '{"stage":"rank","selected":2,"ranked":6,"targets":["fwd_ret_1d","y_up_1d"],"status":"reused"}'),
    "plan without a run id": (PlanReport(plan_digest="a" * 64, units={"lightgbm": 2}, jobs=2, path="globals/training_plan/p.json", status=Outcome.RAN),
                              '{"stage":"plan","planDigest":"' + "a" * 64 + '","units":{"lightgbm":2},"jobs":2,'
                              '"path":"globals/training_plan/p.json","status":"ran"}'),
    "whole select": (StageCountsReport(stage="select", status=Outcome.RAN, targets=2), '{"stage":"select","status":"ran","targets":2}'),
    "one family": (StageCountsReport(stage="cpu", status=Outcome.RAN, units=3, trained=2, skipped=1, reused=0, failed=0, family="lightgbm"),
                   '{"stage":"cpu","status":"ran","units":3,"trained":2,"skipped":1,"reused":0,"failed":0,"family":"lightgbm"}'),
    "select unit": (SelectUnitReport(unit_index=1, target="y_up_1d", status=Outcome.CACHED, features=3, stability=Stability.UNKNOWN),
                    '{"stage":"select","unitIndex":1,"target":"y_up_1d","status":"cached","features":3,"stability":"UNKNOWN"}'),
    "select unit nothing recorded": (SelectUnitReport(unit_index=0, target="t", status=Outcome.RAN, features=None, stability=None),
                                     '{"stage":"select","unitIndex":0,"target":"t","status":"ran","features":null,"stability":null}'),
    "train unit": (TrainUnitReport(stage="cpu", family="lightgbm", unit_index=0, unit="cs-lightgbm", job_id="cs", target="fwd_ret_1d",
                                   status=Outcome.RAN, device=None),
                   '{"stage":"cpu","family":"lightgbm","unitIndex":0,"unit":"cs-lightgbm","jobId":"cs","target":"fwd_ret_1d",'
                   '"status":"ran","device":null}'),
    "run": (RunReport(stages={"rank": Outcome.CACHED, "cpu": Outcome.RAN}, report="report.html"),
            '{"stage":"run","stages":{"rank":"cached","cpu":"ran"},"report":"report.html"}'),
    "report": (HtmlReport(path="report.html", models=5), '{"stage":"report","path":"report.html","models":5}'),
    "report and pruning": (HtmlReport(path="report.html", models=5, removed_runs=["r1"]),
                           '{"stage":"report","path":"report.html","models":5,"removedRuns":["r1"]}'),
    "data": (DataReport(symbols=6), '{"stage":"data","symbols":6}'),
}


@pytest.mark.parametrize("name", list(LINES))
def test_each_commands_termination_line_is_the_one_it_always_wrote(name) -> None:
    report, line = LINES[name]
    assert success_line(report.to_wire()) == line
    assert type(report).model_validate_json(line) == report


def test_a_failed_training_stage_names_its_failures() -> None:
    from trainpipe.runner.steps import StageFailedError

    summary = TrainingStageSummary.model_validate(RECORDED[Stage.CPU])
    assert str(StageFailedError(Stage.CPU, summary)) == "cpu: 1 of 3 units failed — sym_aaa/lightgbm: KeyError: 'close'"

