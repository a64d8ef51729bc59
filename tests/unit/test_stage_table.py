"""The stage table (contract.stages) is what both sides read: each row's Jobs, as the operator builds them,
run a command the jobs' CLI accepts, with the unit options its fan-out needs and no other."""

from __future__ import annotations

import pytest

from trainpipe.cli.main import build_parser
from trainpipe.contract.names import Stage
from trainpipe.contract.pipeline import PipelineSpec
from trainpipe.contract.reports import HtmlReport, PlanReport, RankReport
from trainpipe.contract.stages import STAGES, Pool
from trainpipe.contract.status import PipelineStatus
from trainpipe.runner.steps import STEPS
from trainpipe_operator.config import OperatorConfig
from trainpipe_operator.manifests import JobIntent, Owner, job

SPEC = PipelineSpec.model_validate({"data": {"dir": "/data/bars", "symbols": ["AAPL"]}, "training": {"families": ["lightgbm", "mlp"]},
                                    "images": {"cpu": "jobs-cpu:1", "gpu": "jobs-gpu:1"}})
DIGEST = "a" * 64


def test_every_stage_has_one_row_in_run_order_and_the_derived_sets_follow_the_rows():
    assert STAGES.order == tuple(Stage)
    assert STAGES.computing == tuple(s for s in Stage if s is not Stage.REPORT)
    assert STAGES.training == (Stage.CPU, Stage.GPU) and STAGES.reusable == (Stage.RANK, Stage.SELECT, Stage.PLAN)
    assert {s: r.report for s, r in STAGES.items() if r.report} == {Stage.RANK: RankReport, Stage.PLAN: PlanReport, Stage.REPORT: HtmlReport}


def test_each_report_names_a_status_field_the_operator_fills():
    fields = PipelineStatus.model_fields
    for row in STAGES.values():
        if row.report is not None:
            assert row.report.status_field in fields


def test_the_runner_has_a_step_and_outputs_for_every_computing_stage():
    assert set(STEPS) == set(STAGES.computing)


def _intent(stage: Stage) -> JobIntent:
    row = STAGES[stage]
    family = {Stage.CPU: "lightgbm", Stage.GPU: "mlp"}.get(stage)
    return JobIntent(stage, family, 0, 3 if row.indexed else 1, DIGEST if row.trains else None)


@pytest.mark.parametrize("stage", STAGES.order)
def test_the_job_of_each_row_runs_a_command_the_cli_parses_with_the_unit_options_of_its_fan_out(stage: Stage):
    row = STAGES[stage]
    manifest = job(SPEC, Owner("ml", "p", "uid"), "r1", _intent(stage), OperatorConfig(), suspend=False)
    spec = manifest["spec"]
    [container] = spec["template"]["spec"]["containers"]
    argv = [a.replace("$(JOB_COMPLETION_INDEX)", "2") for a in container["args"]]
    assert argv[:len(row.command)] == list(row.command)
    args = build_parser().parse_args(argv)
    assert spec["completionMode"] == ("Indexed" if row.indexed else "NonIndexed")
    assert (getattr(args, "unit_index", None) == 2) is row.indexed
    assert (getattr(args, "family", None) is not None) is row.trains
    assert (getattr(args, "plan_digest", None) == DIGEST) is row.trains
    assert container["image"] == ("jobs-gpu:1" if row.pool is Pool.GPU else "jobs-cpu:1")
