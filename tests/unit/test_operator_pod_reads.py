"""Which pod facts a reconcile pass reads (`pod_read`), and how fresh: never less than `decide` needs."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from operator_builders import observed_job, pipeline_view, succeeded_stages
from trainpipe.contract.names import Stage
from trainpipe.contract.pipeline import PipelineSpec
from trainpipe.contract.runs import run_id
from trainpipe.contract.status import PipelineStatus, PlanRef, Reason, StageStatus
from trainpipe_operator.config import OperatorConfig
from trainpipe_operator.decide import decide
from trainpipe_operator.naming import job_name
from trainpipe_operator.observed import (
    POD_RECHECK_MAX_SECONDS,
    POD_RECHECK_SECONDS,
    Observed,
    ObservedJob,
    ObservedPod,
    PipelineView,
    PodRead,
    pod_read,
    pod_scope,
    pod_wait_left,
)

NOW = datetime(2026, 12, 1, 12, 0, 0, tzinfo=UTC)
CONFIG = OperatorConfig(cpu_image="jobs-cpu:1", gpu_image="jobs-gpu:1")
SPEC = PipelineSpec.model_validate({"data": {"dir": "example", "volume": {"claimName": "bars"}}, "training": {"families": ["lightgbm", "mlp"]}})
RUN = run_id(SPEC)
UNITS = {"lightgbm": 4, "mlp": 4}
PLAN = PlanRef(digest="d" * 64, path=f"/artifacts/demo/{RUN}/globals/training_plan/master_training_plan.json", units=UNITS)
RANK_REPORT = '{"stage":"rank","selected":3}'
PLAN_REPORT = '{"stage":"plan","planDigest":"' + "d" * 64 + '","units":{"lightgbm":4,"mlp":4},"path":"globals/training_plan/master_training_plan.json"}'


def job(stage: Stage, family: str | None = None, *, run: str = RUN, completions: int = 1, succeeded: int = 0, active: int = 0, ready: int = 0,
        complete: bool = False, failed: str | None = None) -> ObservedJob:
    return observed_job(stage, family, run=run, completions=completions, succeeded=succeeded, active=active, ready=ready, complete=complete,
                        failed_condition=failed)


def pods_of(j: ObservedJob, n: int, phase: str, message: str = "", unschedulable: str | None = None) -> tuple[ObservedPod, ...]:
    return tuple(ObservedPod(name=f"{j.name}-{i}-x", job=j.name, index=i if j.indexed else None, phase=phase, message=message,
                             exit_code=0 if phase == "Succeeded" else (2 if phase == "Failed" else None), unschedulable=unschedulable)
                 for i in range(n))


def status_after(*finished: Stage, selected: int | None = 3, plan: PlanRef | None = PLAN) -> PipelineStatus:
    stages = succeeded_stages(*finished)
    return PipelineStatus(run_id=RUN, run_generation=1, started_at="2026-12-01T11:00:00Z", selected_targets=selected, plan=plan,
                          output_path=f"/artifacts/demo/{RUN}", stages=stages)


def view(status: PipelineStatus) -> PipelineView:
    return pipeline_view(SPEC, status)


RANK_DONE = job(Stage.RANK, complete=True, succeeded=1)
PLAN_DONE = job(Stage.PLAN, complete=True, succeeded=1)
EARLY = (Stage.RANK, Stage.SELECT, Stage.PLAN)
CPU_ALL_READY = job(Stage.CPU, "lightgbm", completions=4, active=4, ready=4)
CPU_TWO_PENDING = job(Stage.CPU, "lightgbm", completions=4, active=4, ready=2)
CPU_FAILED = job(Stage.CPU, "lightgbm", completions=4, succeeded=3, failed="FailedIndexes: Job has failed indexes")
OLD_RUN_FAILED = job(Stage.CPU, "lightgbm", run="r0000000000", completions=4, failed="BackoffLimitExceeded: Job has reached the specified backoff limit")

# (what the pass sees, the pods the run has, which read they call for). A report or a failure message
# must come from a LIST: the Job's event can reach the operator before its pod's.
CASES = {
    "rank just finished: its report is still to read": (PipelineStatus(), (RANK_DONE,), pods_of(RANK_DONE, 1, "Succeeded", RANK_REPORT),
                                                        PodRead.FRESH),
    "rank's report already in the status": (status_after(Stage.RANK, plan=None), (RANK_DONE,), pods_of(RANK_DONE, 1, "Succeeded", RANK_REPORT),
                                            PodRead.NONE),
    "plan just finished: its report is still to read": (status_after(Stage.RANK, Stage.SELECT, plan=None), (PLAN_DONE,),
                                                        pods_of(PLAN_DONE, 1, "Succeeded", PLAN_REPORT), PodRead.FRESH),
    "training pods all running Ready": (status_after(*EARLY), (CPU_ALL_READY,), pods_of(CPU_ALL_READY, 4, "Running"), PodRead.NONE),
    "training pods not running yet, maybe unschedulable": (status_after(*EARLY), (CPU_TWO_PENDING,),
                                                           pods_of(CPU_TWO_PENDING, 2, "Pending", unschedulable="0/4 nodes are available: 4 Insufficient cpu."),
                                                           PodRead.WAITING),
    "a failed Job: its pods say why": (status_after(*EARLY), (CPU_FAILED,), pods_of(CPU_FAILED, 1, "Failed", "bad column close in AAPL.parquet"),
                                       PodRead.FRESH),
    "a failed Job beside pending pods: the failure's message wins": (status_after(*EARLY), (CPU_TWO_PENDING, CPU_FAILED),
                                                                     pods_of(CPU_FAILED, 1, "Failed", "bad column close in AAPL.parquet"), PodRead.FRESH),
    "a failed Job of an earlier run only": (status_after(*EARLY), (OLD_RUN_FAILED,), pods_of(OLD_RUN_FAILED, 1, "Failed", "old"), PodRead.NONE),
}


@pytest.mark.parametrize("name", CASES)
def test_pods_are_read_only_when_they_can_add_to_what_the_jobs_show(name):
    status, jobs, _, expected = CASES[name]
    assert pod_read(jobs, RUN, status) is expected


@pytest.mark.parametrize("name", [n for n, case in CASES.items() if case[3] is PodRead.NONE])
def test_a_pass_that_skips_the_pod_read_decides_exactly_as_one_that_reads_them(name):
    status, jobs, pods, _ = CASES[name]
    with_pods = decide(view(status), Observed(jobs=jobs, pods=pods), CONFIG, NOW)
    without = decide(view(status), Observed(jobs=jobs), CONFIG, NOW)
    assert without == with_pods


@pytest.mark.parametrize("name", [n for n, case in CASES.items() if case[3] is not PodRead.NONE])
def test_the_passes_that_read_pods_would_decide_wrongly_without_them(name):
    status, jobs, pods, _ = CASES[name]
    with_pods = decide(view(status), Observed(jobs=jobs, pods=pods), CONFIG, NOW)
    without = decide(view(status), Observed(jobs=jobs), CONFIG, NOW)
    assert without.status != with_pods.status


# Pods a run has besides the ones each case is about: finished pods of earlier stages, running ones.
BYSTANDERS = (*pods_of(RANK_DONE, 1, "Succeeded", RANK_REPORT), *pods_of(CPU_ALL_READY, 4, "Running"),
              *pods_of(job(Stage.SELECT, completions=3, succeeded=3, complete=True), 3, "Succeeded"))
STAGE_OF_JOB = {j.name: j.stage for j in (RANK_DONE, PLAN_DONE, CPU_ALL_READY, CPU_TWO_PENDING, CPU_FAILED, job(Stage.SELECT))}


@pytest.mark.parametrize(("name", "stages", "unfinished_only"), [
    ("rank just finished: its report is still to read", (Stage.RANK,), False),
    ("plan just finished: its report is still to read", (Stage.PLAN,), False),
    ("training pods not running yet, maybe unschedulable", (Stage.CPU,), True),
    ("a failed Job: its pods say why", (Stage.CPU,), False),
    ("a failed Job beside pending pods: the failure's message wins", (Stage.CPU,), False),
])
def test_a_pod_read_lists_only_the_pods_it_needs_and_decides_as_if_it_had_them_all(name, stages, unfinished_only):
    status, jobs, pods, _ = CASES[name]
    scope = pod_scope(jobs, RUN, status, pod_read(jobs, RUN, status))
    assert (scope.stages, scope.unfinished_only) == (stages, unfinished_only)
    everything = (*pods, *BYSTANDERS)
    narrowed = tuple(p for p in everything if STAGE_OF_JOB[p.job] in scope.stages and (p.phase in ("Pending", "Running") or not scope.unfinished_only))
    assert len(narrowed) < len(everything)
    assert decide(view(status), Observed(jobs=jobs, pods=narrowed), CONFIG, NOW) == decide(view(status), Observed(jobs=jobs, pods=everything), CONFIG, NOW)


def test_a_pending_pod_the_scheduler_cannot_place_is_reported_because_its_pods_were_read():
    status, jobs, pods, _ = CASES["training pods not running yet, maybe unschedulable"]
    decision = decide(view(status), Observed(jobs=jobs, pods=pods if pod_read(jobs, RUN, status) is not PodRead.NONE else ()), CONFIG, NOW)
    assert decision.status.stages["cpu"].reason == Reason.UNSCHEDULABLE.value
    assert "Insufficient cpu" in (decision.status.stages["cpu"].message or "")


def selects(labels: str, fields: str, pod: dict[str, Any]) -> bool:
    """The API server's label (`k=v`, `k in (a,b)`) and field (`status.phase=P`) selectors, as far as `observe` uses them."""
    have = pod["metadata"]["labels"]
    for term in re.split(r",(?![^(]*\))", labels):
        if " in " in term:
            key, values = term.split(" in ")
            if have.get(key) not in values.strip("()").split(","):
                return False
        elif have.get(term.split("=")[0]) != term.split("=")[1]:
            return False
    return not fields or (pod.get("status") or {}).get("phase") == fields.removeprefix("status.phase=")


class _RecordingKube:
    """Answers the LISTs and GETs `observe` makes from fixed objects, and records the pod selectors it used."""

    def __init__(self, jobs: list[dict[str, object]], pods: list[dict[str, object]]) -> None:
        self.jobs, self.pods, self.pod_selectors = jobs, pods, []  # type: ignore[var-annotated]

    def get(self, resource: str, labelSelector: str = "", fieldSelector: str = "", resourceVersion: str | None = None) -> dict[str, object]:  # noqa: N803 -- the API's parameter names
        if resource.endswith("/pods"):
            self.pod_selectors.append(labelSelector)
            return {"items": [p for p in self.pods if selects(labelSelector, fieldSelector, p)]}
        return {"items": self.jobs if resource.endswith("/jobs") else []}

    def get_or_none(self, resource: str) -> dict[str, object] | None:
        return {"metadata": {"name": resource.rsplit("/", 1)[-1]}} if "/persistentvolumeclaims/" in resource else None


def test_a_scheduled_runs_rank_report_is_read_from_the_pods_of_its_slot():
    """A run started by a cron fire time has an id that includes the slot: observe must select that run's
    pods, or the rank pod's report is never read and the run waits forever after rank."""
    from trainpipe.contract.names import LABEL_PIPELINE, LABEL_RUN, LABEL_STAGE
    from trainpipe.contract.status import ScheduleStatus
    from trainpipe_operator.cache import ChildCache
    from trainpipe_operator.observe import observe

    slot = "2026-12-01T02:00:00Z"
    spec = SPEC.model_copy(update={"schedule": PipelineSpec.model_validate({"data": {"dir": "example"}, "schedule": {"cron": "0 2 * * *", "timeZone": "UTC"}}).schedule})
    run = run_id(spec, None, slot)
    assert run != run_id(spec), "the slot is part of the run's identity"
    schedule = ScheduleStatus(cron="0 2 * * *", time_zone="UTC", since="2026-11-30T00:00:00Z", slot=slot, next_run_at="2026-12-02T02:00:00Z")
    status = PipelineStatus(run_id=run, run_generation=1, started_at="2026-12-01T02:00:05Z", schedule=schedule)
    name = job_name("demo", run, Stage.RANK, None, 0)
    labels = {LABEL_PIPELINE: "demo", LABEL_RUN: run, LABEL_STAGE: Stage.RANK.value, "trainpipe.io/attempt": "0"}
    owner = {"kind": "TrainingPipeline", "name": "demo", "uid": "uid-1", "controller": True}
    rank_job = {"metadata": {"name": name, "labels": labels, "ownerReferences": [owner]},
                "spec": {"completions": 1}, "status": {"succeeded": 1, "conditions": [{"type": "Complete", "status": "True"}]}}
    rank_pod = {"metadata": {"name": f"{name}-abcde", "labels": {**labels, "job-name": name}},
                "status": {"phase": "Succeeded", "containerStatuses": [{"state": {"terminated": {"exitCode": 0, "message": RANK_REPORT}}}]}}
    kube = _RecordingKube([rank_job], [rank_pod])
    scheduled = PipelineView(namespace="ns", name="demo", uid="uid-1", generation=1, spec=spec, spec_error=None, status=status)

    observed = observe(kube, ChildCache(), scheduled, NOW)  # type: ignore[arg-type]

    assert kube.pod_selectors == [f"{LABEL_PIPELINE}=demo,{LABEL_RUN}={run},{LABEL_STAGE} in (rank)"]
    assert [p.message for p in observed.pods] == [RANK_REPORT]
    assert decide(scheduled, observed, CONFIG, NOW).status.selected_targets == 3


def started(seconds_ago: float) -> PipelineStatus:
    """The run at its CPU stage, which started `seconds_ago` before NOW."""
    stamp = (NOW - timedelta(seconds=seconds_ago)).strftime("%Y-%m-%dT%H:%M:%SZ")
    status = status_after(*EARLY)
    return status.model_copy(update={"stages": {**status.stages, "cpu": StageStatus(active=4, started_at=stamp)}})


@pytest.mark.parametrize(("status", "jobs", "left", "every"), [
    (started(3), (CPU_TWO_PENDING,), POD_RECHECK_SECONDS - 3, POD_RECHECK_SECONDS),  # pods only starting: ask why later, not now
    (started(POD_RECHECK_SECONDS + 5), (CPU_TWO_PENDING,), 0.0, POD_RECHECK_SECONDS),  # waited long enough: read the scheduler's reason
    (started(50), (CPU_TWO_PENDING,), 0.0, 25.0),  # waiting a while: asked again less often
    (started(3600), (CPU_TWO_PENDING,), 0.0, POD_RECHECK_MAX_SECONDS),  # but never less than once a minute
    (status_after(*EARLY), (CPU_TWO_PENDING,), 0.0, POD_RECHECK_SECONDS),  # no recorded start: ask at once
    (started(3), (CPU_ALL_READY,), 0.0, POD_RECHECK_SECONDS),  # nothing waits
])
def test_pods_are_asked_why_they_wait_once_they_have_waited_a_while_and_less_often_the_longer_they_wait(status, jobs, left, every):
    assert pod_wait_left(jobs, RUN, status, NOW) == (pytest.approx(left), pytest.approx(every))


def test_the_pod_list_asks_the_api_server_for_the_scope_alone():
    from trainpipe_operator.observe import pod_query
    from trainpipe_operator.observed import PodScope

    assert pod_query("trainpipe.io/pipeline=demo", "r1", PodScope((Stage.CPU, Stage.GPU), unfinished_only=True)) == {
        "labelSelector": "trainpipe.io/pipeline=demo,trainpipe.io/run=r1,trainpipe.io/stage in (cpu,gpu)", "fieldSelector": "status.phase!=Succeeded,status.phase!=Failed"}
    assert pod_query("trainpipe.io/pipeline=demo", "r1", PodScope((Stage.RANK,), unfinished_only=False)) == {
        "labelSelector": "trainpipe.io/pipeline=demo,trainpipe.io/run=r1,trainpipe.io/stage in (rank)"}
