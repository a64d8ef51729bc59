"""`trainpipe status` and `trainpipe logs` without a cluster: the page rendered from API dicts (pods parsed as the client
parses them, trainpipe.kube.pods), and which pods `logs` shows.

The same commands run against a real operator's objects in tests/cluster/test_gitops.py.
"""

from __future__ import annotations

from typing import Any

from trainpipe.cli.logs import pick
from trainpipe.cli.status import render
from trainpipe.kube.pods import ObservedPod, parse_pod


def pod(name: str, phase: str, **kw: Any) -> ObservedPod:
    return parse_pod(pod_dict(name, phase, **kw))


def pod_dict(name: str, phase: str, *, index: int | None = None, family: str = "lightgbm", code: int | None = None, message: str = "",
             created: str = "2026-12-01T12:00:00Z", pending: str | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "creationTimestamp": created,
                            "labels": {"trainpipe.io/stage": "cpu", "trainpipe.io/family": family}, "annotations": {}}
    if index is not None:
        meta["annotations"]["batch.kubernetes.io/job-completion-index"] = str(index)
    status: dict[str, Any] = {"phase": phase}
    if code is not None:
        status["containerStatuses"] = [{"state": {"terminated": {"exitCode": code, "message": message}}}]
    if pending:
        status["conditions"] = [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": pending}]
    return {"metadata": meta, "status": status}


def pipeline(status: dict[str, Any] | None, generation: int = 1) -> dict[str, Any]:
    obj: dict[str, Any] = {"metadata": {"name": "demo", "namespace": "ml", "generation": generation}}
    if status is not None:
        obj["status"] = status
    return obj


def cond(ctype: str, value: str, reason: str = "", message: str = "") -> dict[str, Any]:
    return {"type": ctype, "status": value, "reason": reason, "message": message, "lastTransitionTime": "2026-12-01T12:00:00Z", "observedGeneration": 1}


FAILED = {
    "observedGeneration": 1, "runId": "r1", "stage": "Failed", "progress": "3/6",
    "conditions": [cond("Ready", "False", "StageFailed"), cond("Reconciling", "False", "Failed"), cond("Stalled", "True", "StageFailed", "stage cpu failed"),
                   cond("Suspended", "False", "NotSuspended")],
    "stages": {"rank": {"succeeded": 1, "outcome": "Succeeded"}, "cpu": {"failed": 1, "succeeded": 1, "outcome": "Failed", "reason": "StageFailed",
                                                                           "message": "stage cpu, family lightgbm, index 1 failed"}},
}


def test_a_pipeline_without_status_says_the_operator_has_not_written_one() -> None:
    assert "No status yet" in render(pipeline(None), [])


def test_a_stalled_pipeline_shows_the_stage_table_the_failure_and_the_logs_command() -> None:
    page = render(pipeline(FAILED), [pod("p-0", "Succeeded", index=0, code=0), pod("p-1", "Failed", index=1, code=4, message="cpu family lightgbm unit 1: MISSING_INPUT: no plan")])
    assert "Stalled=True (StageFailed)" in page
    rows = {line.split()[0]: line.split() for line in page.splitlines() if line.split() and line.split()[0] in ("rank", "select", "cpu")}
    assert rows["rank"][6] == "Succeeded" and rows["select"][6] == "not" and rows["cpu"][6] == "Failed"
    assert "stage cpu (StageFailed): stage cpu, family lightgbm, index 1 failed" in page
    assert "pod p-1 (cpu lightgbm unit 1) exit 4: cpu family lightgbm unit 1: MISSING_INPUT: no plan" in page
    assert "trainpipe logs demo --stage cpu --family lightgbm --unit 1" in page


def test_a_waiting_pipeline_says_what_it_waits_on_once_per_scheduler_reason() -> None:
    status = {"observedGeneration": 1, "runId": "r1", "stage": "cpu", "message": "2 pod(s) cannot be scheduled",
              "conditions": [cond("Reconciling", "True", "Unschedulable", "2 pod(s) cannot be scheduled")], "stages": {"cpu": {"pending": 2}}}
    why = "0/4 nodes are available: 4 Insufficient nvidia.com/gpu."
    page = render(pipeline(status), [pod("p-0", "Pending", index=0, pending=why), pod("p-1", "Pending", index=1, pending=why)])
    assert "Unschedulable: 2 pod(s) cannot be scheduled" in page
    assert f"pod p-0 (cpu lightgbm unit 0) and 1 more Pending: {why}" in page


def test_a_status_for_an_older_generation_says_the_operator_has_not_caught_up() -> None:
    page = render(pipeline({**FAILED, "observedGeneration": 1}, generation=2), [])
    assert "(status describes 1)" in page and "the operator to observe generation 2" in page


def test_logs_picks_the_latest_failed_attempt_of_each_failing_unit() -> None:
    pods = [pod("a0", "Succeeded", index=0, code=0, created="1"), pod("b1", "Failed", index=1, code=1, created="1"),
            pod("c1", "Failed", index=1, code=4, created="2"), pod("d2", "Running", index=2, created="1")]
    assert [p.name for p in pick(pods)] == ["c1"]
    assert [p.name for p in pick(pods, unit=0)] == ["a0"]
    assert [p.name for p in pick(pods, every=True)] == ["a0", "b1", "c1", "d2"]


def test_logs_matches_a_target_in_termination_messages_in_either_spelling() -> None:
    pods = [pod("s0", "Failed", index=0, code=3, message="select unit 0 (target fwd_ret_5d): BAD_DATA: x"),
            pod("s1", "Succeeded", index=1, code=0, message='{"stage":"select","unitId":"fwd-ret-20d"}')]
    assert [p.name for p in pick(pods, target="fwd_ret_5d")] == ["s0"]
    assert [p.name for p in pick(pods, target="fwd_ret_20d")] == ["s1"]
    assert pick(pods, target="fwd_ret_1d") == []


def test_the_kubelets_reasons_show_for_a_pod_that_cannot_start_and_one_killed_at_its_limit() -> None:
    pulling = pod_dict("p-0", "Pending", index=0)
    pulling["status"]["containerStatuses"] = [{"state": {"waiting": {"reason": "ImagePullBackOff", "message": 'Back-off pulling image "r/nope:1"'}}}]
    status = {"observedGeneration": 1, "runId": "r1", "stage": "cpu",
              "conditions": [cond("Reconciling", "True", "ImagePullBackOff", "unit 0 of stage cpu cannot start")], "stages": {"cpu": {"pending": 1}}}
    page = render(pipeline(status), [parse_pod(pulling)])
    assert "ImagePullBackOff: unit 0 of stage cpu cannot start" in page
    assert 'pod p-0 (cpu lightgbm unit 0) Pending: ImagePullBackOff: Back-off pulling image "r/nope:1"' in page
    killed = pod_dict("p-1", "Failed", index=1, code=137)
    killed["status"]["containerStatuses"][0]["state"]["terminated"]["reason"] = "OOMKilled"
    assert "pod p-1 (cpu lightgbm unit 1) exit 137: OOMKilled" in render(pipeline(FAILED), [parse_pod(killed)])
