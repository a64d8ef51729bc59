"""Disruptions on the real control plane: a unit's pod evicted through the eviction API, a unit that fills its
scratch, and the real node lost with units running on it.

Skipped pods for every stage but the CPU stage, whose pods run on the real node (a kubelet: it stops an
evicted pod's container and reports the pod Failed with its DisruptionTarget condition, which the Job
controller's podFailurePolicy reads; the executor of the simulated nodes reports no end for a deleted
pod). A MutatingAdmissionPolicy of the test turns them into a few seconds' `sleep` in the real node's
tools image: a unit that runs for a while, so there is a running pod to evict, without the minute a real
training run costs.
"""

from __future__ import annotations

import json
import time
from contextlib import AbstractContextManager
from typing import Any

from pod_mutations import pod_mutation
from test_faults import COMPLETION_INDEX, HOLD_GATE, SKIP_MESSAGE, skipped_spec, wait_ready
from test_operator import apply, get, jobs, pods, stage_of
from test_real_node import tools_image  # noqa: F401 -- the fixture: the real node's small image with `sleep`
from trainpipe.contract.names import LABEL_FAMILY, LABEL_STAGE
from trainpipe.contract.status import Reason
from trainpipe_localcluster import CORE, Cluster, Kube, OperatorProcess, condition, pipeline_manifest, wait_for
from trainpipe_localcluster.node import RealNode, kill_kubelet, start_kubelet

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


def cpu_units_running(kube: Kube, namespace: str, name: str, image: str, script: str, only: str = "") -> AbstractContextManager[Any]:
    """As `sleeping_cpu_units`, with any `script` (a TERM trap added), for the CPU pods for which CEL `only` also holds."""
    condition = f"object.metadata.labels['{LABEL_STAGE}'] == 'cpu'" + (f" && {only}" if only else "")
    script = f"trap 'exit 143' TERM; {script}"
    patch = (f'[JSONPatch{{op: "replace", path: "/spec/containers/0/image", value: "{image}"}}, '
             f'JSONPatch{{op: "add", path: "/spec/containers/0/command", value: ["sh", "-c", "{script}"]}}, '
             'JSONPatch{op: "add", path: "/spec/containers/0/args", value: ["unit"]}]')
    return pod_mutation(kube, namespace, f"{name}-{namespace}", condition, json_patch=patch)


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


def test_a_unit_that_fills_its_scratch_fails_only_its_own_index_after_its_retries(
        kube: Kube, namespace: str, operator: OperatorProcess, real_node: RealNode,
        tools_image: str) -> None:  # noqa: F811 -- the fixture imported above
    """lightgbm's unit 0 writes 16 MiB to /tmp, whose scratchSizeLimit is 4Mi: the kubelet evicts it (no
    DisruptionTarget: a failure of the unit). With backoffLimitPerIndex 1 it runs twice, then its index fails; its
    sibling index and the other family finish; the stage fails naming the unit, the kubelet's words and the field."""
    spec = on_the_real_node(real_node, backoffLimitPerIndex=1, scratchSizeLimit="4Mi")
    spec["stages"]["plan"]["podMetadata"]["annotations"][SKIP_MESSAGE] = json.dumps(
        {**json.loads(spec["stages"]["plan"]["podMetadata"]["annotations"][SKIP_MESSAGE]), "units": {"lightgbm": 2, "xgboost": 1}})
    filler = (f"object.metadata.labels['{LABEL_FAMILY}'] == 'lightgbm' && "
              f"object.metadata.annotations['{COMPLETION_INDEX}'] == '0'")
    with cpu_units_running(kube, namespace, "fill", tools_image, "head -c 16777216 /dev/zero > /tmp/fill; sleep 120", filler), \
            cpu_units_running(kube, namespace, "rest", tools_image, "sleep 3", f"!({filler})"):
        apply(kube, namespace, pipeline_manifest("scratch", validate=False, **spec))

        def failed() -> dict[str, Any] | None:
            # Evicted is also the reason while the unit retries: wait for the stage's end.
            obj = get(kube, namespace, "scratch")
            cpu = ((obj.get("status") or {}).get("stages") or {}).get("cpu") or {}
            return obj if cpu.get("outcome") == "Failed" else None

        obj = wait_for("the stage failed for unit 0's scratch", failed, timeout=180, interval=1)
    cpu = obj["status"]["stages"]["cpu"]
    assert cpu["reason"] == (condition(obj, "Ready") or {}).get("reason") == Reason.EVICTED.value, cpu
    message = cpu["message"]
    for words in ("stage cpu, family lightgbm, index 0 failed", "unit 0 Evicted", 'EmptyDir volume "scratch"',
                  "raise stages.cpu.scratchSizeLimit (now 4Mi)"):
        assert words in message, f"{words!r} not in {message!r}"
    cpu_pods = [p for p in pods(kube, namespace, "scratch") if stage_of(p) == "cpu"]
    def unit(family: str, index: int) -> list[dict[str, Any]]:
        return [p for p in cpu_pods if p["metadata"]["labels"][LABEL_FAMILY] == family and p["metadata"]["annotations"][COMPLETION_INDEX] == str(index)]
    filled = unit("lightgbm", 0)
    assert [(p["status"].get("phase"), p["status"].get("reason")) for p in filled] == [("Failed", "Evicted")] * 2, (
        f"unit 0 ran backoffLimitPerIndex+1 = 2 times, each evicted: {[(p['metadata']['name'], p['status'].get('reason')) for p in filled]}")
    assert [p["status"]["phase"] for p in unit("lightgbm", 1)] == ["Succeeded"], "the sibling index was not touched"
    assert [p["status"]["phase"] for p in unit("xgboost", 0)] == ["Succeeded"], "the other family was not touched"
    [lgb] = [j for j in jobs(kube, namespace, "scratch") if stage_of(j) == "cpu" and j["metadata"]["labels"][LABEL_FAMILY] == "lightgbm"]
    assert (lgb["status"].get("failedIndexes"), lgb["status"].get("succeeded")) == ("0", 1), lgb["status"]


OUT_OF_SERVICE = {"key": "node.kubernetes.io/out-of-service", "value": "nodeshutdown", "effect": "NoExecute"}


def node_ready(kube: Kube, name: str) -> dict[str, Any]:
    node = kube.get(f"{CORE}/nodes/{name}")
    return next(c for c in node["status"]["conditions"] if c["type"] == "Ready")


def set_taints(kube: Kube, name: str, change: Any) -> None:
    node = kube.get(f"{CORE}/nodes/{name}")
    kube.patch(f"{CORE}/nodes/{name}", {"spec": {"taints": change(node["spec"].get("taints") or [])}})


def test_units_on_a_lost_node_are_named_within_a_minute_and_rerun_elsewhere_once_it_is_out_of_service(
        kube: Kube, cluster: Cluster, namespace: str, operator: OperatorProcess, real_node: RealNode,
        tools_image: str) -> None:  # noqa: F811 -- the fixture imported above
    """The CPU units prefer the real node; its kubelet is killed while they run. Once the node controller marks the
    node NotReady (its 40 s grace), the status names the node and the units within 60 s, and says to mark it out of
    service; with the out-of-service taint, Kubernetes deletes the pods there and the units run again on another
    node, without using up their retries (backoffLimitPerIndex 0). The kubelet is started again after."""
    spec = skipped_spec({"lightgbm": 1, "xgboost": 1})
    prefer = {"weight": 100, "preference": {"matchExpressions": [{"key": real_node.pool_label, "operator": "In", "values": [real_node.pool]}]}}
    spec["stages"]["cpu"] = {"tolerations": [dict(real_node.toleration)], "backoffLimitPerIndex": 0,
                             "affinity": {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [prefer]}}}
    stopped = None
    try:
        with cpu_units_running(kube, namespace, "long", tools_image, "sleep 45 & wait"):
            apply(kube, namespace, pipeline_manifest("lost", validate=False, **spec))

            def both_running_there() -> list[dict[str, Any]] | None:
                running = [p for p in pods(kube, namespace, "lost") if stage_of(p) == "cpu" and p["status"].get("phase") == "Running"]
                return running if len(running) == 2 else None

            first = wait_for("both CPU units running", both_running_there, timeout=90, interval=0.5)
            assert {p["spec"]["nodeName"] for p in first} == {real_node.name}, (
                f"the units did not land on the real node they prefer: {[(p['metadata']['name'], p['spec']['nodeName']) for p in first]}")
            stopped = kill_kubelet(cluster.state)
            killed_at = time.monotonic()
            wait_for("the node controller to mark the node not Ready", lambda: node_ready(kube, real_node.name)["status"] != "True",
                     timeout=90, interval=1)
            marked_at = time.monotonic()

            def named() -> str | None:
                cpu = ((get(kube, namespace, "lost").get("status") or {}).get("stages") or {}).get("cpu") or {}
                return cpu.get("message") if cpu.get("reason") == Reason.NODE_NOT_READY.value else None

            message = wait_for("the lost node named in status", named, timeout=75, interval=1)
            named_after = time.monotonic() - marked_at
            print(f"node NotReady {marked_at - killed_at:.0f}s after the kubelet died; named in status {named_after:.1f}s after that")
            assert named_after <= 60, f"named {named_after:.0f}s after the node went NotReady"
            for words in (f"node {real_node.name} is not Ready (Ready=Unknown", "unit 0, family lightgbm", "unit 0, family xgboost",
                          f"kubectl taint nodes {real_node.name} node.kubernetes.io/out-of-service=nodeshutdown:NoExecute"):
                assert words in message, f"{words!r} not in {message!r}"
            set_taints(kube, real_node.name, lambda taints: [*taints, OUT_OF_SERVICE])
            wait_ready(kube, namespace, "lost", timeout=120)
        cpu_jobs = [j for j in jobs(kube, namespace, "lost") if stage_of(j) == "cpu"]
        assert len(cpu_jobs) == 2 and all(not j["status"].get("failed") and not j["status"].get("failedIndexes") for j in cpu_jobs), (
            f"the lost pods counted as failures: {[j['status'] for j in cpu_jobs]}")
        reran = [p for p in pods(kube, namespace, "lost") if stage_of(p) == "cpu" and p["status"].get("phase") == "Succeeded"]
        assert len(reran) == 2 and all(p["spec"]["nodeName"] != real_node.name for p in reran), (
            f"the units did not run again on another node: {[(p['metadata']['name'], p['spec'].get('nodeName')) for p in reran]}")
    finally:
        if stopped is not None:
            start_kubelet(cluster.state, stopped)
            set_taints(kube, real_node.name, lambda taints: [t for t in taints if t["key"] != OUT_OF_SERVICE["key"]])
            # The node is back for the tests after this one: Ready, and the node controller's taints gone.
            wait_for("the real node Ready again, untainted", lambda: node_ready(kube, real_node.name)["status"] == "True" and not [
                t for t in kube.get(f"{CORE}/nodes/{real_node.name}")["spec"].get("taints") or [] if t["key"].startswith("node.kubernetes.io/")],
                timeout=120, interval=1)


def test_a_rank_report_lost_with_its_pod_reruns_rank_once_and_the_run_goes_on(kube: Kube, namespace: str, operator: OperatorProcess) -> None:
    """rank's pod is held by a scheduling gate until the operator is stopped; it then runs, and is deleted before any
    operator read its report (as when its node is lost or the pod is garbage-collected). The operator, started again,
    finds rank's Job complete and no pod to read: it runs rank once more, whose pod reports again (a real rank finds
    its outputs cached; here a skipped pod says the same), and the run ends Ready on that report."""
    gate = f'Object{{spec: Object.spec{{schedulingGates: [Object.spec.schedulingGates{{name: "{HOLD_GATE}"}}]}}}}'
    rank = f"object.metadata.labels['{LABEL_STAGE}'] == 'rank'"
    with pod_mutation(kube, namespace, f"hold-rank-{namespace}", rank, gate) as mutation:
        sample = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "probe", "labels": {LABEL_STAGE: "rank"}},
                  "spec": {"containers": [{"name": "c", "image": "none"}]}}
        mutation.wait_active(namespace, sample, lambda pod: bool(pod["spec"].get("schedulingGates")))
        apply(kube, namespace, pipeline_manifest("lost-report", validate=False, **skipped_spec()))
        held = wait_for("rank's pod held by its gate", lambda: next(
            (p for p in pods(kube, namespace, "lost-report") if stage_of(p) == "rank" and p["spec"].get("schedulingGates")), None),
            timeout=60, interval=0.2)
        operator.stop()
        mutation.unbind()  # the rerun's pod runs as it comes
    path = f"{CORE}/namespaces/{namespace}/pods/{held['metadata']['name']}"
    kube.patch(path, {"spec": {"schedulingGates": []}})

    def rank_complete() -> bool:
        return any(stage_of(j) == "rank" and any(c["type"] == "Complete" and c["status"] == "True" for c in j["status"].get("conditions") or [])
                   for j in jobs(kube, namespace, "lost-report"))

    wait_for("rank's Job complete", rank_complete, timeout=60, interval=0.5)
    kube.delete(path)
    wait_for("rank's pod gone", lambda: not kube.exists(path), timeout=30, interval=0.5)
    assert (get(kube, namespace, "lost-report").get("status") or {}).get("selectedTargets") is None, "the report was read before the pod went"
    operator.start()
    wait_ready(kube, namespace, "lost-report", timeout=120)
    status = get(kube, namespace, "lost-report")["status"]
    assert status["stages"]["rank"]["reportReruns"] == 1 and status["selectedTargets"] == 2, status["stages"]["rank"]
    ran = [p for p in pods(kube, namespace, "lost-report") if stage_of(p) == "rank"]
    assert len(ran) == 1 and ran[0]["metadata"]["name"] != held["metadata"]["name"], "rank ran once more, and only once"
