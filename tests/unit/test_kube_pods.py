"""The one pod parser (trainpipe.kube.pods) that the operator's conditions and `trainpipe status`/`logs` both read.

Each row is a pod as the API server returns it and the view it must parse to. The rows a user would
notice: which container's end is the pod's (a failed init container explains a pod whose command
never ran; a succeeded one explains nothing), and that only a Pending pod waits on the scheduler or
the kubelet (a pod that ended before it was placed keeps PodScheduled=False, yet waits for nothing).
"""

from __future__ import annotations

from typing import Any

import pytest

from trainpipe.contract.names import NO_FAMILY
from trainpipe.kube.pods import ObservedPod, parse_pod

UNSCHEDULED = {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": "0/4 nodes are available: 4 Insufficient nvidia.com/gpu."}
PULL_BACKOFF = {"waiting": {"reason": "ImagePullBackOff", "message": 'Back-off pulling image "r/nope:1"'}}


def terminated(code: int, message: str = "", reason: str = "") -> dict[str, Any]:
    return {"terminated": {"exitCode": code, "message": message, "reason": reason or ("Completed" if code == 0 else "Error")}}


def pod(phase: str | None = "Running", *, containers: list[dict[str, Any]] | None = None, init: list[dict[str, Any]] | None = None,
        conditions: list[dict[str, Any]] | None = None, labels: dict[str, str] | None = None, index: str | None = "3",
        message: str | None = None) -> dict[str, Any]:
    """A pod of Job `j` as the API returns it; `containers`/`init` are container statuses by their state (or state + lastState)."""
    status: dict[str, Any] = {"conditions": conditions or []}
    if phase is not None:
        status["phase"] = phase
    if containers is not None:
        status["containerStatuses"] = [{"name": f"c{i}", **(s if "state" in s else {"state": s})} for i, s in enumerate(containers)]
    if init is not None:
        status["initContainerStatuses"] = [{"name": f"i{i}", **(s if "state" in s else {"state": s})} for i, s in enumerate(init)]
    if message is not None:
        status["message"] = message
    meta: dict[str, Any] = {"name": "p", "labels": {"batch.kubernetes.io/job-name": "j", "trainpipe.io/stage": "cpu", "trainpipe.io/family": "xgboost"}
                            if labels is None else labels, "annotations": {} if index is None else {"batch.kubernetes.io/job-completion-index": index}}
    return {"metadata": meta, "status": status}


def view(phase: str = "Running", **fields: Any) -> ObservedPod:
    return ObservedPod(**{"name": "p", "job": "j", "index": 3, "phase": phase, "stage": "cpu", "family": "xgboost", **fields})


@pytest.mark.parametrize(("obj", "expected"), [
    # which terminated container is the pod's end
    (pod("Failed", containers=[terminated(4, "cpu unit 3: MISSING_INPUT: no plan\n")]),
     view("Failed", exit_code=4, message="cpu unit 3: MISSING_INPUT: no plan", reason="Error")),
    (pod("Running", containers=[{"state": {"running": {}}, "lastState": terminated(137, reason="OOMKilled")}]),
     view("Running", exit_code=137, reason="OOMKilled")),  # the try before the restart: its end is the news
    (pod("Failed", containers=[{"state": terminated(2, "now"), "lastState": terminated(1, "before")}]),
     view("Failed", exit_code=2, message="now", reason="Error")),  # the current state before the last one
    (pod("Running", init=[terminated(0)], containers=[{"running": {}}]),
     view("Running")),  # a succeeded init container says nothing of the stage: no "exit 0" on a running pod
    (pod("Succeeded", init=[terminated(0)], containers=[terminated(0, '{"stage":"rank"}')]),
     view("Succeeded", exit_code=0, message='{"stage":"rank"}', reason="Completed")),
    (pod("Failed", init=[terminated(1, "volume not ready")], containers=[{"waiting": {"reason": "PodInitializing"}}]),
     view("Failed", exit_code=1, message="volume not ready", reason="Error")),  # the init container kept the command from starting
    (pod("Failed", containers=[terminated(0, "sidecar done"), terminated(3, "main failed")]),
     view("Failed", exit_code=3, message="main failed", reason="Error")),  # the last main container to end
    # only a Pending pod waits on the scheduler or the kubelet
    (pod("Pending", conditions=[UNSCHEDULED]), view("Pending", unschedulable=UNSCHEDULED["message"])),
    (pod("Failed", conditions=[UNSCHEDULED], message="Pod was terminated: the Job's deadline passed"),
     view("Failed", status_message="Pod was terminated: the Job's deadline passed")),  # ended before it was placed: waits for nothing
    (pod("Pending", conditions=[{"type": "PodScheduled", "status": "False"}]), view("Pending", unschedulable="not scheduled")),
    (pod("Pending", containers=[PULL_BACKOFF]), view("Pending", waiting='ImagePullBackOff: Back-off pulling image "r/nope:1"')),
    (pod("Pending", containers=[{"waiting": {"reason": "ContainerCreating"}}]), view("Pending")),  # a normal start
    (pod("Failed", containers=[PULL_BACKOFF]), view("Failed")),
    (pod(None), view("Pending")),  # no phase yet: the API server makes every pod Pending first
    # labels and annotations
    (pod(labels={"job-name": "j", "trainpipe.io/stage": "rank", "trainpipe.io/family": NO_FAMILY}, index=None),
     view(index=None, stage="rank", family=None)),  # the unprefixed Job label; a stage without families
    (pod(labels={"trainpipe.io/stage": "cpu"}, index="x"), view(job="", index=None, family=None)),  # no Job made it; a foreign index
])
def test_a_pod_parses_to_the_view_both_the_operator_and_the_cli_read(obj: dict[str, Any], expected: ObservedPod) -> None:
    assert parse_pod(obj) == expected


@pytest.mark.parametrize(("reason", "message", "said"), [
    ("Error", "select unit 0 (target fwd_ret_5d): BAD_DATA: x", "select unit 0 (target fwd_ret_5d): BAD_DATA: x"),
    ("OOMKilled", "", "OOMKilled"),  # the kubelet's kill leaves no message of the command's own
    ("OOMKilled", "loading panel", "OOMKilled: loading panel"),
    ("", "", ""),
])
def test_what_a_pod_said_about_its_end_names_the_kubelet_when_it_killed_the_container(reason: str, message: str, said: str) -> None:
    assert view("Failed", reason=reason, message=message).said == said
