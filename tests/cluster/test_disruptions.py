"""Disruptions on the real control plane: a unit's pod evicted through the eviction API.

Skipped pods for every stage but the CPU stage, whose pods run on the real node (a kubelet: it stops an
evicted pod's container and reports the pod Failed with its DisruptionTarget condition, which the Job
controller's podFailurePolicy reads; the executor of the simulated nodes reports no end for a deleted
pod). A MutatingAdmissionPolicy of the test turns them into a few seconds' `sleep` in the real node's
tools image: a unit that runs for a while, so there is a running pod to evict, without the minute a real
training run costs.
"""

from __future__ import annotations

import time
from contextlib import AbstractContextManager
from typing import Any

from pod_mutations import pod_mutation
from test_faults import COMPLETION_INDEX, skipped_spec, wait_ready
from test_operator import apply, get, jobs, pods, stage_of
from test_real_node import tools_image  # noqa: F401 -- the fixture: the real node's small image with `sleep`
from trainpipe.contract.names import LABEL_FAMILY, LABEL_STAGE
from trainpipe.contract.status import Reason
from trainpipe_localcluster import CORE, Kube, OperatorProcess, condition, pipeline_manifest, wait_for
from trainpipe_localcluster.node import RealNode

UNIT_SECONDS = 6  # how long a CPU unit's pod runs: time enough to evict it while it runs


def sleeping_cpu_units(kube: Kube, namespace: str, image: str, seconds: int) -> AbstractContextManager[Any]:
    """A policy that makes every CPU pod of `namespace` sleep `seconds` in `image` instead of training (its only
    container's image, command and args replaced; with a JSONPatch, as an apply cannot: they are atomic lists).
    The shell is the container's PID 1, which ignores a SIGTERM it does not trap: it traps it and exits as a
    stage does (143), a second after, as a stage finishing its last write: an evicted unit ends when the
    kubelet stops it, not when its sleep is over."""
    condition = f"object.metadata.labels['{LABEL_STAGE}'] == 'cpu'"
    script = f"trap 'sleep 1; exit 143' TERM; sleep {seconds} & wait"
    patch = (f'[JSONPatch{{op: "replace", path: "/spec/containers/0/image", value: "{image}"}}, '
             f'JSONPatch{{op: "add", path: "/spec/containers/0/command", value: ["sh", "-c", "{script}"]}}, '
             'JSONPatch{op: "add", path: "/spec/containers/0/args", value: ["unit"]}]')
    return pod_mutation(kube, namespace, f"sleep-{namespace}", condition, json_patch=patch)


def evict(kube: Kube, namespace: str, pod: str) -> None:
    """POST pods/<pod>/eviction: what `kubectl drain` and the cluster autoscaler do."""
    kube.create(f"{CORE}/namespaces/{namespace}/pods/{pod}/eviction",
                {"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": pod, "namespace": namespace}})


def running_unit(kube: Kube, namespace: str, name: str, family: str, index: int) -> dict[str, Any] | None:
    return next((p for p in pods(kube, namespace, name) if stage_of(p) == "cpu" and p["metadata"]["labels"][LABEL_FAMILY] == family
                 and p["metadata"]["annotations"][COMPLETION_INDEX] == str(index) and p["status"].get("phase") == "Running"
                 and not p["metadata"].get("deletionTimestamp")), None)


def on_the_real_node(real_node: RealNode, **cpu: Any) -> dict[str, Any]:
    """The skipped spec with the CPU stage's pods (not skipped) placed on the real node."""
    spec = skipped_spec({"lightgbm": 1, "xgboost": 1})
    spec["stages"]["cpu"] = {"nodeSelector": dict(real_node.node_selector), "tolerations": [dict(real_node.toleration)], **cpu}
    return spec


def test_an_evicted_unit_is_rerun_without_using_up_its_retries(kube: Kube, namespace: str, operator: OperatorProcess,
                                                              real_node: RealNode, tools_image: str) -> None:  # noqa: F811 -- the fixture imported above
    """No retry is left to the CPU units (backoffLimitPerIndex 0): a failure of the unit would fail its index.
    The eviction must not count as one: the unit runs again and the run ends Ready."""
    spec = on_the_real_node(real_node, backoffLimitPerIndex=0)
    with sleeping_cpu_units(kube, namespace, tools_image, UNIT_SECONDS):
        apply(kube, namespace, pipeline_manifest("evict", validate=False, **spec))
        pod = wait_for("lightgbm's unit running", lambda: running_unit(kube, namespace, "evict", "lightgbm", 0), timeout=90, interval=0.2)
        evicted_at = time.monotonic()
        evict(kube, namespace, pod["metadata"]["name"])
        wait_ready(kube, namespace, "evict", timeout=90)
    print(f"evicted {time.monotonic() - evicted_at:.1f}s before Ready")
    [job] = [j for j in jobs(kube, namespace, "evict") if stage_of(j) == "cpu" and j["metadata"]["labels"][LABEL_FAMILY] == "lightgbm"]
    ran = [p for p in pods(kube, namespace, "evict") if p["metadata"]["labels"].get("job-name") == job["metadata"]["name"]]
    assert [p["status"]["phase"] for p in ran] == ["Succeeded"] and ran[0]["metadata"]["uid"] != pod["metadata"]["uid"], (
        f"the evicted pod's unit ran again: {[(p['metadata']['name'], p['status'].get('phase')) for p in ran]}")
    assert not job["status"].get("failed") and not job["status"].get("failedIndexes"), f"the eviction counted as a failure: {job['status']}"


def test_a_unit_evicted_more_often_than_its_stage_allows_fails_the_stage_naming_it(
        kube: Kube, namespace: str, operator: OperatorProcess, real_node: RealNode,
        tools_image: str) -> None:  # noqa: F811 -- the fixture imported above
    """stages.cpu.maxEvictionsPerUnit 1: lightgbm's unit is evicted twice (each time once its next pod runs). The
    first is rerun; the second fails the stage (EvictedTooOften) with the unit, its pods and the cap named, and
    stops the stage's Jobs instead of running the unit again."""
    with sleeping_cpu_units(kube, namespace, tools_image, 60):
        apply(kube, namespace, pipeline_manifest("cap", validate=False, **on_the_real_node(real_node, maxEvictionsPerUnit=1)))
        evicted: list[str] = []
        for _ in range(2):
            def next_pod() -> dict[str, Any] | None:
                found = running_unit(kube, namespace, "cap", "lightgbm", 0)
                return found if found and found["metadata"]["name"] not in evicted else None

            pod = wait_for(f"lightgbm's unit running again after {len(evicted)} eviction(s)", next_pod, timeout=60, interval=0.2)
            evict(kube, namespace, pod["metadata"]["name"])
            evicted.append(pod["metadata"]["name"])

        def stalled() -> dict[str, Any] | None:
            obj = get(kube, namespace, "cap")
            return obj if (condition(obj, "Ready") or {}).get("reason") == Reason.EVICTED_TOO_OFTEN.value else None

        obj = wait_for("the stage failed for its evictions", stalled, timeout=60, interval=0.5)
    cpu = obj["status"]["stages"]["cpu"]
    message = cpu["message"]
    assert cpu["outcome"] == "Failed" and cpu["reason"] == Reason.EVICTED_TOO_OFTEN.value, cpu
    for words in ("unit 0 of stage cpu, family lightgbm", "2 times", ", ".join(evicted), "maxEvictionsPerUnit=1"):
        assert words in message, f"{words!r} not in {message!r}"
    wait_for("the CPU stage's Jobs stopped", lambda: not [j for j in jobs(kube, namespace, "cap") if stage_of(j) == "cpu"],
             timeout=30, interval=0.5)
    assert not [j for j in jobs(kube, namespace, "cap") if stage_of(j) == "gpu"], "the run went on past the failed stage"
