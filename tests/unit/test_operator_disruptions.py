"""Units the cluster took away (policies/disruptions.py): a pod's DisruptionTarget read, evicted pods counted once
per unit across passes, and the stage failed once one unit was taken more than stages.<s>.maxEvictionsPerUnit times."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from operator_builders import observed_job, pipeline_view, succeeded_stages
from trainpipe.contract.names import Stage
from trainpipe.contract.pipeline import PipelineSpec
from trainpipe.contract.runs import run_id
from trainpipe.contract.status import PipelineStatus, PlanRef, Reason, StageStatus
from trainpipe.kube.pods import ObservedPod, parse_pod
from trainpipe_operator.config import OperatorConfig
from trainpipe_operator.decide import Decision, decide
from trainpipe_operator.observed import Observed, ObservedJob, ObservedPlan, PodRead, pod_read
from trainpipe_operator.policies.disruptions import over_cap, record_evictions

CONFIG = OperatorConfig(cpu_image="jobs-cpu:1", gpu_image="jobs-gpu:1")
UNITS = {"lightgbm": 2}
DIGEST = "d" * 64
EVICTED = "EvictionByEvictionAPI: Eviction API: evicting"


def spec(cap: int | None = None) -> PipelineSpec:
    stages = {"cpu": {"maxEvictionsPerUnit": cap}} if cap is not None else {}
    return PipelineSpec.model_validate({"data": {"dir": "example", "volume": {"claimName": "bars"}},
                                        "training": {"families": ["lightgbm"]}, "stages": stages})


RUN = run_id(spec())  # maxEvictionsPerUnit schedules, it does not change the run


def cpu_job(**fields: Any) -> ObservedJob:
    return observed_job(Stage.CPU, "lightgbm", run=RUN, completions=2, **fields)


def pod(name: str, index: int, disruption: str = EVICTED, job: str | None = None) -> ObservedPod:
    return ObservedPod(name=name, job=cpu_job().name if job is None else job, index=index, phase="Running", disruption=disruption)


def status(evictions: dict[str, list[str]] | None = None) -> PipelineStatus:
    stages = succeeded_stages(Stage.RANK, Stage.SELECT, Stage.PLAN)
    stages["cpu"] = StageStatus(started_at="2026-12-01T11:02:00Z", evictions=evictions or {})
    ref = PlanRef(digest=DIGEST, path=f"/artifacts/demo/{RUN}/globals/training_plan/master_training_plan.json", units=UNITS)
    return PipelineStatus(run_id=RUN, run_generation=1, started_at="2026-12-01T11:00:00Z", selected_targets=2, plan=ref,
                          output_path=f"/artifacts/demo/{RUN}", stages=stages)


def decide_cpu(cap: int | None, pods: tuple[ObservedPod, ...], evictions: dict[str, list[str]] | None = None) -> Decision:
    plan = ObservedPlan(run=RUN, digest=DIGEST, path=f"/artifacts/demo/{RUN}/globals/training_plan/master_training_plan.json", units=UNITS)
    job = cpu_job(active=1, ready=1, terminating=1)
    return decide(pipeline_view(spec(cap), status(evictions)), Observed(jobs=(job,), pods=pods, plan=plan, spec_map_exists=True), CONFIG,
                  datetime(2026, 12, 1, 12, 0, 0, tzinfo=UTC))


@pytest.mark.parametrize(("conditions", "expected"), [
    ([{"type": "DisruptionTarget", "status": "True", "reason": "EvictionByEvictionAPI", "message": "Eviction API: evicting"}], EVICTED),
    ([{"type": "DisruptionTarget", "status": "True", "reason": "PreemptionByScheduler"}], "PreemptionByScheduler"),
    ([{"type": "DisruptionTarget", "status": "True", "reason": "DeletionByPodGC", "message": "PodGC: node no longer exists"}],
     "DeletionByPodGC: PodGC: node no longer exists"),
    ([{"type": "DisruptionTarget", "status": "False", "reason": "EvictionByEvictionAPI"}], ""),  # a condition that no longer holds
    ([{"type": "Ready", "status": "True"}], ""),
    ([], ""),
])
def test_a_pods_disruption_is_its_disruption_target_condition_in_its_own_words(conditions: list[dict[str, Any]], expected: str) -> None:
    obj = {"metadata": {"name": "p", "labels": {"job-name": "j"}}, "status": {"phase": "Running", "conditions": conditions}}
    assert parse_pod(obj).disruption == expected


@pytest.mark.parametrize(("seen", "pods", "cap", "expected"), [
    # a disrupted pod is counted under its unit; an undisturbed one, or one no Job made, is not
    ({}, [pod("a", 0, job="j"), pod("b", 1, disruption="", job="j"), pod("c", 0, job="")], 3, {"j/0": ["a"]}),
    # a pod of a Job that is not Indexed is its Job's one unit
    ({}, [ObservedPod(name="r", job="rank", index=None, phase="Running", disruption=EVICTED)], 3, {"rank": ["r"]}),
    # the same pod seen again in a later pass counts once
    ({"j/0": ["a"]}, [pod("a", 0, job="j")], 3, {"j/0": ["a"]}),
    # what earlier passes saw stays, once its pods are gone; a new pod of the unit adds to it
    ({"j/0": ["a"], "j/1": ["x"]}, [pod("b", 0, job="j")], 3, {"j/0": ["a", "b"], "j/1": ["x"]}),
    # no more than one past the cap is kept: the decision needs no more, and status stays small
    ({"j/0": ["a", "b"]}, [pod("c", 0, job="j"), pod("d", 0, job="j")], 1, {"j/0": ["a", "b"]}),
    ({"j/0": ["a"]}, [pod("c", 0, job="j"), pod("d", 0, job="j")], 1, {"j/0": ["a", "c"]}),
])
def test_evicted_pods_are_counted_once_per_unit_across_passes(seen: dict[str, list[str]], pods: list[ObservedPod], cap: int,
                                                             expected: dict[str, list[str]]) -> None:
    assert record_evictions(seen, pods, cap) == expected


@pytest.mark.parametrize(("evictions", "cap", "expected"), [
    ({}, 0, None),
    ({"j/0": ["a"]}, 1, None),
    ({"j/0": ["a"]}, 0, ("j/0", ["a"])),
    ({"j/1": ["a", "b"], "j/0": ["c", "d"]}, 1, ("j/0", ["c", "d"])),  # the first unit by key: the same answer every pass
])
def test_a_unit_is_over_the_cap_once_taken_more_times_than_it_allows(evictions: dict[str, list[str]], cap: int,
                                                                    expected: tuple[str, list[str]] | None) -> None:
    assert over_cap(evictions, cap) == expected


def test_a_job_with_a_pod_being_taken_away_has_its_pods_read_now_while_they_still_say_why() -> None:
    assert pod_read([cpu_job(active=1, ready=1, terminating=1)], RUN, status()) is PodRead.FRESH
    assert pod_read([cpu_job(active=2, ready=2)], RUN, status()) is PodRead.NONE


def test_an_eviction_within_the_cap_is_recorded_and_the_unit_runs_again() -> None:
    d = decide_cpu(None, (pod("p-0-a", 0),))
    cpu = d.status.stages["cpu"]
    assert cpu.evictions == {f"{cpu_job().name}/0": ["p-0-a"]} and cpu.outcome is None
    assert not d.delete_jobs and d.status.stage == "cpu"


def test_one_eviction_past_the_cap_fails_the_stage_naming_the_unit_and_its_pods_and_stops_its_jobs() -> None:
    key = f"{cpu_job().name}/1"
    d = decide_cpu(1, (pod("p-1-b", 1),), evictions={key: ["p-1-a"]})
    cpu = d.status.stages["cpu"]
    assert cpu.outcome == "Failed" and cpu.reason == Reason.EVICTED_TOO_OFTEN.value
    assert cpu.evictions == {key: ["p-1-a", "p-1-b"]}
    message = cpu.message or ""
    for words in ("unit 1 of stage cpu, family lightgbm", "2 times", "p-1-a, p-1-b", "last: " + EVICTED, "maxEvictionsPerUnit=1",
                  "trainpipe.io/retry"):
        assert words in message, f"{words!r} not in {message!r}"
    assert d.delete_jobs == (cpu_job().name,)
    ready = next(c for c in d.status.conditions if c.type == "Ready")
    assert (ready.status, ready.reason) == ("False", Reason.EVICTED_TOO_OFTEN.value)
    assert any(e.reason == Reason.EVICTED_TOO_OFTEN.value and e.type == "Warning" for e in d.events)


def test_a_cap_of_zero_fails_the_stage_at_the_first_eviction() -> None:
    d = decide_cpu(0, (pod("p-0-a", 0),))
    assert d.status.stages["cpu"].reason == Reason.EVICTED_TOO_OFTEN.value
