"""What a real kubelet reports reaches the pipeline's status with its own reason and the unit named.

An image that cannot be pulled is never counted as running; a unit killed at its memory limit says which
spec field to raise, first while its Job retries it and then when the stage has failed. The pods are
parsed from the dicts a kubelet writes, so the same shapes the API server returns are exercised.
"""

from __future__ import annotations

import pytest

from test_operator_decide import RUN, job, plan_cm, run, spec, status_after, view
from trainpipe.contract.names import Stage
from trainpipe.contract.status import PipelineStatus
from trainpipe.kube.pods import parse_pod
from trainpipe_operator.decide import Decision
from trainpipe_operator.observed import PodRead, pod_read

EARLY = (Stage.RANK, Stage.SELECT, Stage.PLAN)


def kubelet_pod(of_job: str, index: int, phase: str, *, waiting: tuple[str, str] | None = None,
                terminated: tuple[str, int] | None = None) -> dict:
    """A pod as the kubelet reports it: a waiting container, or a terminated one with the kubelet's reason and exit code."""
    state: dict = {}
    if waiting:
        state["waiting"] = {"reason": waiting[0], "message": waiting[1]}
    if terminated:
        state["terminated"] = {"reason": terminated[0], "exitCode": terminated[1], "startedAt": "2026-12-01T11:59:00Z"}
    return {"metadata": {"name": f"{of_job}-{index}-x7k2p", "labels": {"batch.kubernetes.io/job-name": of_job},
                         "annotations": {"batch.kubernetes.io/job-completion-index": str(index)}},
            "status": {"phase": phase, "containerStatuses": [{"name": "trainpipe", "state": state}]}}


def condition(d: Decision, ctype: str) -> tuple[str, str, str]:
    c = next(c for c in d.status.conditions if c.type == ctype)
    return c.status, c.reason, c.message


def test_parse_pod_keeps_the_kubelets_reasons_and_ignores_a_normal_start() -> None:
    pulling = parse_pod(kubelet_pod("j", 2, "Pending", waiting=("ImagePullBackOff", 'Back-off pulling image "nope:1"')))
    assert pulling is not None and pulling.waiting == 'ImagePullBackOff: Back-off pulling image "nope:1"' and pulling.index == 2
    creating = parse_pod(kubelet_pod("j", 0, "Pending", waiting=("ContainerCreating", "")))
    assert creating is not None and creating.waiting == ""
    killed = parse_pod(kubelet_pod("j", 1, "Failed", terminated=("OOMKilled", 137)))
    assert killed is not None and (killed.reason, killed.exit_code) == ("OOMKilled", 137)


def test_an_image_that_cannot_be_pulled_is_never_shown_as_running() -> None:
    rank = job(Stage.RANK, active=1)  # the Job counts the pod as active: it exists and has not ended
    pods = (parse_pod(kubelet_pod(rank.name, 0, "Pending", waiting=("ErrImagePull", 'failed to pull "registry/nope:1": not found'))),)
    d = run(view(status=PipelineStatus(run_id=RUN, run_generation=1, started_at="2026-12-01T11:59:00Z")), rank, pods=pods)
    status, reason, message = condition(d, "Reconciling")
    assert (status, reason) == ("True", "ErrImagePull")
    assert "0 running" in message and "unit 0 of stage rank cannot start" in message and "registry/nope:1" in message
    assert d.status.stages["rank"].active == 0 and d.status.stages["rank"].pending == 1
    assert condition(d, "Ready")[1] == "ErrImagePull"


def test_a_ready_pod_is_running() -> None:
    from dataclasses import replace

    rank = replace(job(Stage.RANK, active=1), ready=1)
    d = run(view(status=PipelineStatus(run_id=RUN, run_generation=1, started_at="2026-12-01T11:59:00Z")), rank)
    assert condition(d, "Reconciling")[1] == "StageRunning" and "1 running" in condition(d, "Reconciling")[2]


CPU_LIMITS = {"stages.cpu.resources": {"limits": {"cpu": 1, "memory": "64Mi"}}}


@pytest.mark.parametrize(("overrides", "field"), [
    (CPU_LIMITS, "stages.cpu.resources.limits.memory (now 64Mi)"),
    ({**CPU_LIMITS, "stages.cpu.families": {"lightgbm": {"limits": {"memory": "48Mi"}}}}, "stages.cpu.families.lightgbm.limits.memory (now 48Mi)"),
])
def test_an_oom_killed_unit_names_the_field_to_raise_while_it_is_retried(overrides: dict, field: str) -> None:
    from dataclasses import replace

    s = spec(**overrides)
    training = replace(job(Stage.CPU, "lightgbm", completions=4, active=1), failed=1)
    pods = (parse_pod(kubelet_pod(training.name, 3, "Failed", terminated=("OOMKilled", 137))),)
    status = status_after(*EARLY)
    assert pod_read([training], RUN, status) is PodRead.FRESH, "a failed try's reason is only in its pod"
    d = run(view(s, status=status), training, pods=pods, plan=plan_cm())
    state, reason, message = condition(d, "Reconciling")
    assert (state, reason) == ("True", "OOMKilled") and condition(d, "Stalled")[0] == "False"
    assert f"unit 3 of stage cpu, family lightgbm was OOMKilled: raise {field}; retrying" in message


def test_a_stage_whose_unit_ran_out_of_retries_at_its_memory_limit_is_stalled_with_the_kubelets_reason() -> None:
    from dataclasses import replace

    s = spec(**CPU_LIMITS)
    failed = replace(job(Stage.CPU, "lightgbm", completions=4, succeeded=3, failed="FailedIndexes: Job has failed indexes",
                         failed_indexes=(3,)), failed=3)
    pods = tuple(parse_pod(kubelet_pod(failed.name, 3, "Failed", terminated=("OOMKilled", 137))) for _ in range(3))
    d = run(view(s, status=status_after(*EARLY)), failed, pods=pods, plan=plan_cm())
    state, reason, message = condition(d, "Stalled")
    assert (state, reason) == ("True", "OOMKilled")
    assert "stage cpu, family lightgbm, index 3 failed" in message
    assert "OOMKilled: raise stages.cpu.resources.limits.memory (now 64Mi)" in message
    assert d.status.stage == "Failed" and d.status.stages["cpu"].reason == "OOMKilled"
    # A later pass, with the Jobs' pods gone, still reports it from the status it wrote.
    later = run(view(s, status=d.status), failed, plan=plan_cm())
    assert condition(later, "Stalled")[:2] == ("True", "OOMKilled")
