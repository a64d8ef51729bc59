"""Each of decide's policies on its own, table by table: the stage gate's Jobs by fan-out, progress by
fan-out, the field a kill names, and the words an Event gives for a new run."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from operator_builders import observed_job, pipeline_view, succeeded_stages
from trainpipe.contract.names import Stage
from trainpipe.contract.pipeline import PipelineSpec
from trainpipe.contract.runs import run_id
from trainpipe.contract.status import PipelineStatus, PlanRef, Reason, ScheduleStatus
from trainpipe.kube.pods import ObservedPod
from trainpipe_operator.config import OperatorConfig
from trainpipe_operator.manifests import JobIntent
from trainpipe_operator.observed import Observed
from trainpipe_operator.policies.failures import kill_note
from trainpipe_operator.policies.gating import stage_intents
from trainpipe_operator.policies.passes import Pass
from trainpipe_operator.policies.run import trigger_of
from trainpipe_operator.policies.status import progress_of

NOW = datetime(2026, 12, 1, 12, 0, 0, tzinfo=UTC)
CONFIG = OperatorConfig(cpu_image="jobs-cpu:1", gpu_image="jobs-gpu:1")
SPEC = PipelineSpec.model_validate({"data": {"dir": "example"}, "training": {"families": ["lightgbm", "xgboost", "mlp"]},
                                    "stages": {"cpu": {"resources": {"limits": {"memory": "2Gi"}}, "families": {"xgboost": {"limits": {"memory": "6Gi"}}}}}})
RUN = run_id(SPEC)
DIGEST = "d" * 64
PLAN = PlanRef(digest=DIGEST, path="plan.json", units={"lightgbm": 4, "xgboost": 2, "mlp": 3, "catboost": 0})


def a_pass(status: PipelineStatus | None = None, *, spec: PipelineSpec = SPEC, config: OperatorConfig = CONFIG, slot: str | None = None,
           rerun: str | None = None, **status_fields: Any) -> Pass:
    view = pipeline_view(spec, status, rerun=rerun)
    return Pass(view, spec, Observed(jobs=()), config, NOW, RUN, status=PipelineStatus(run_id=RUN, **status_fields), stages={}, slot=slot)


@pytest.mark.parametrize(("stage", "fields", "expected"), [
    (Stage.RANK, {}, [JobIntent(Stage.RANK, None, 0, 1)]),
    (Stage.REPORT, {}, [JobIntent(Stage.REPORT, None, 0, 1)]),
    (Stage.SELECT, {"selected_targets": 5}, [JobIntent(Stage.SELECT, None, 0, 5)]),
    (Stage.SELECT, {"selected_targets": 0}, []),  # rank kept nothing: select has no Job and succeeds at once
    (Stage.CPU, {"plan": PLAN}, [JobIntent(Stage.CPU, "lightgbm", 0, 4, DIGEST), JobIntent(Stage.CPU, "xgboost", 0, 2, DIGEST)]),
    (Stage.GPU, {"plan": PLAN}, [JobIntent(Stage.GPU, "mlp", 0, 3, DIGEST)]),
])
def test_a_stage_gets_the_jobs_its_fan_out_gives(stage: Stage, fields: dict[str, Any], expected: list[JobIntent]):
    assert stage_intents(a_pass(**fields), stage, 0) == expected


@pytest.mark.parametrize(("stage", "fields", "config", "reason", "words"), [
    (Stage.SELECT, {}, CONFIG, Reason.STAGE_FAILED, "rank finished without reporting how many targets it kept"),
    (Stage.CPU, {}, CONFIG, Reason.STAGE_FAILED, "digest and unit counts are unknown"),
    (Stage.GPU, {"plan": PLAN}, OperatorConfig(cpu_image="jobs-cpu:1"), Reason.INVALID_SPEC, "3 gpu units but there is no gpu image: set spec.images.gpu"),
])
def test_a_stage_whose_size_or_image_is_unknown_says_why(stage: Stage, fields: dict[str, Any], config: OperatorConfig, reason: Reason, words: str):
    got = stage_intents(a_pass(config=config, **fields), stage, 0)
    assert isinstance(got, tuple) and got[0] is reason and words in got[1]


@pytest.mark.parametrize(("fields", "finished", "expected"), [
    ({}, (), "0/3"),  # rank, plan, report are one unit each; select and training are not sized yet
    ({"selected_targets": 4}, (Stage.RANK,), "1/7"),
    ({"selected_targets": 4, "plan": PLAN}, (Stage.RANK, Stage.SELECT, Stage.PLAN), "6/16"),
])
def test_progress_counts_each_stage_by_its_fan_out_once_its_size_is_known(fields: dict[str, Any], finished: tuple[Stage, ...], expected: str):
    p = a_pass(**fields)
    p.stages = dict(succeeded_stages(*finished))
    if Stage.SELECT in finished:
        p.stages[Stage.SELECT.value] = p.stages[Stage.SELECT.value].model_copy(update={"succeeded": 4})
    assert progress_of(p) == expected


@pytest.mark.parametrize(("family", "expected"), [
    ("lightgbm", "OOMKilled: raise stages.cpu.resources.limits.memory (now 2Gi)"),
    ("xgboost", "OOMKilled: raise stages.cpu.families.xgboost.limits.memory (now 6Gi)"),
])
def test_a_kill_names_the_field_that_set_the_limit(family: str, expected: str):
    job = observed_job(Stage.CPU, family, run=RUN, completions=4)
    pod = ObservedPod(name="p", job=job.name, index=0, phase="Failed", reason="OOMKilled")
    assert kill_note(a_pass(), Stage.CPU, job, pod) == expected


def test_a_kill_without_a_limit_says_the_node_ran_out():
    job = observed_job(Stage.RANK, run=RUN)
    pod = ObservedPod(name="p", job=job.name, index=None, phase="Failed", reason="OOMKilled")
    assert kill_note(a_pass(), Stage.RANK, job, pod) == "OOMKilled: raise stages.rank.resources.limits.memory (none set: the node's memory was exhausted)"


SCHEDULED = SPEC.model_copy(update={"schedule": PipelineSpec.model_validate({"data": {"dir": "x"}, "schedule": {"cron": "0 6 * * *"}}).schedule})


@pytest.mark.parametrize(("old", "kw", "expected"), [
    (PipelineStatus(), {}, "the pipeline is new"),
    (PipelineStatus(run_id="r0"), {"rerun": "t1"}, "the trainpipe.io/rerun token changed"),
    (PipelineStatus(run_id="r0", schedule=ScheduleStatus(cron="0 6 * * *", time_zone="UTC", since="2026-11-01T00:00:00Z", slot="2026-11-30T06:00:00Z")),
     {"spec": SCHEDULED, "slot": "2026-12-01T06:00:00Z"}, "the schedule fired (0 6 * * * UTC)"),
    (PipelineStatus(run_id="r0"), {}, "the spec changed what a run computes"),
])
def test_an_event_says_why_a_new_run_started(old: PipelineStatus, kw: dict[str, Any], expected: str):
    assert trigger_of(a_pass(old, **kw)) == expected
