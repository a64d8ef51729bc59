"""Units on a node that stopped reporting (policies/failures.on_lost_node, observe's node reads) and units the
kubelet evicted for outgrowing their scratch (failures.evict_note): what the status says, and what it leaves alone."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from operator_builders import observed_job, pipeline_view, succeeded_stages
from trainpipe.contract.names import Stage
from trainpipe.contract.pipeline import PipelineSpec
from trainpipe.contract.runs import run_id
from trainpipe.contract.status import PipelineStatus, PlanRef, Reason, StageStatus
from trainpipe.kube.client import ApiError
from trainpipe.kube.pods import ObservedPod, parse_pod
from trainpipe_operator.cache import ChildCache
from trainpipe_operator.config import OperatorConfig
from trainpipe_operator.decide import Decision, decide
from trainpipe_operator.observe import _node_troubles
from trainpipe_operator.observed import NodeTrouble, Observed, ObservedJob, ObservedPlan, PodRead, parse_node_trouble, pod_read, stranded_nodes

CONFIG = OperatorConfig(cpu_image="jobs-cpu:1", gpu_image="jobs-gpu:1")
UNITS = {"lightgbm": 2, "xgboost": 1}
DIGEST = "d" * 64
LOST = NodeTrouble("node-7", "Unknown", "NodeStatusUnknown", "Kubelet stopped posting node status.", "2026-12-01T11:58:00Z")
SCRATCH_FULL = 'Usage of EmptyDir volume "scratch" exceeds the limit "4Mi". '


def spec(**cpu: Any) -> PipelineSpec:
    return PipelineSpec.model_validate({"data": {"dir": "example", "volume": {"claimName": "bars"}},
                                        "training": {"families": ["lightgbm", "xgboost"]}, "stages": {"cpu": cpu} if cpu else {}})


RUN = run_id(spec())


def job(family: str, **fields: Any) -> ObservedJob:
    return observed_job(Stage.CPU, family, run=RUN, completions=UNITS[family], **fields)


def pod(name: str, family: str, index: int, phase: str = "Running", ready: bool = True, node: str = "node-1", **fields: Any) -> ObservedPod:
    return ObservedPod(name=name, job=job(family).name, index=index, phase=phase, ready=ready, node=node, stage="cpu", family=family, **fields)


def status(started: str = "2026-12-01T11:02:00Z") -> PipelineStatus:
    stages = succeeded_stages(Stage.RANK, Stage.SELECT, Stage.PLAN)
    stages["cpu"] = StageStatus(started_at=started)
    ref = PlanRef(digest=DIGEST, path=f"/artifacts/demo/{RUN}/globals/training_plan/master_training_plan.json", units=UNITS)
    return PipelineStatus(run_id=RUN, run_generation=1, started_at="2026-12-01T11:00:00Z", selected_targets=2, plan=ref,
                          output_path=f"/artifacts/demo/{RUN}", stages=stages)


def decide_cpu(jobs: tuple[ObservedJob, ...], pods: tuple[ObservedPod, ...], lost: tuple[NodeTrouble, ...] = (), sp: PipelineSpec | None = None,
               st: PipelineStatus | None = None) -> Decision:
    plan = ObservedPlan(run=RUN, digest=DIGEST, path=f"/artifacts/demo/{RUN}/globals/training_plan/master_training_plan.json", units=UNITS)
    return decide(pipeline_view(sp or spec(), st or status()), Observed(jobs=jobs, pods=pods, plan=plan, spec_map_exists=True, lost_nodes=lost),
                  CONFIG, datetime(2026, 12, 1, 12, 0, 0, tzinfo=UTC))


# ---- reading pods and nodes ---------------------------------------------------------------------------------


def test_a_pod_says_its_node_whether_it_is_ready_and_the_kubelets_eviction() -> None:
    obj = {"metadata": {"name": "p", "labels": {"job-name": "j"}}, "spec": {"nodeName": "node-7"},
           "status": {"phase": "Failed", "reason": "Evicted", "message": SCRATCH_FULL, "conditions": [{"type": "Ready", "status": "False"}]}}
    got = parse_pod(obj)
    assert (got.node, got.ready, got.pod_reason, got.evicted_by_kubelet) == ("node-7", False, "Evicted", True)
    obj["status"]["conditions"] = [{"type": "Ready", "status": "True"},
                                   {"type": "DisruptionTarget", "status": "True", "reason": "TerminationByKubelet"}]
    got = parse_pod(obj)
    # Node pressure carries DisruptionTarget: the Job ignores it, so it is an eviction, not a failure of the unit.
    assert got.ready and not got.evicted_by_kubelet


@pytest.mark.parametrize(("pods", "expected"), [
    ((pod("a", "lightgbm", 0), pod("b", "lightgbm", 1, ready=False, node="node-7")), ("node-7",)),
    # a Pending pod is not Ready because it has not started: its node (if any) is not suspect
    ((pod("a", "lightgbm", 0, phase="Pending", ready=False, node="node-2"),), ()),
    ((pod("a", "lightgbm", 0, ready=False, node="n2"), pod("b", "xgboost", 0, ready=False, node="n1"), pod("c", "lightgbm", 1, ready=False, node="n2")),
     ("n1", "n2")),
    ((pod("a", "lightgbm", 0),), ()),
])
def test_only_running_pods_that_are_not_ready_make_their_node_suspect(pods: tuple[ObservedPod, ...], expected: tuple[str, ...]) -> None:
    assert stranded_nodes(pods) == expected


@pytest.mark.parametrize(("node", "expected"), [
    ({"status": {"conditions": [{"type": "Ready", "status": "True"}]}}, None),
    ({"status": {"conditions": [{"type": "Ready", "status": "Unknown", "reason": "NodeStatusUnknown", "message": "Kubelet stopped posting node status.",
                                 "lastTransitionTime": "2026-12-01T11:58:00Z"}]}},
     NodeTrouble("n", "Unknown", "NodeStatusUnknown", "Kubelet stopped posting node status.", "2026-12-01T11:58:00Z")),
    ({"status": {}}, NodeTrouble("n", "Unknown")),  # a node without a Ready condition has never reported
    (None, NodeTrouble("n", "gone")),
])
def test_a_node_is_trouble_unless_its_ready_condition_is_true(node: dict[str, Any] | None, expected: NodeTrouble | None) -> None:
    assert parse_node_trouble("n", node) == expected


class NodeReads:
    """The node GETs observe makes: answers by name, each request recorded."""

    def __init__(self, answers: dict[str, Any]) -> None:
        self.answers, self.asked = answers, []

    def get_or_none(self, path: str) -> Any:
        self.asked.append(path)
        answer = self.answers[path.rsplit("/", 1)[1]]
        if isinstance(answer, ApiError):
            raise answer
        return answer


def test_nodes_are_read_once_per_recheck_for_every_pipeline_and_a_forbidden_read_still_names_the_node() -> None:
    now = [0.0]
    cache = ChildCache(clock=lambda: now[0])
    down = {"status": {"conditions": [{"type": "Ready", "status": "Unknown", "reason": "NodeStatusUnknown"}]}}
    kube = NodeReads({"n1": down, "n2": {"status": {"conditions": [{"type": "Ready", "status": "True"}]}},
                      "n3": ApiError("GET", "/api/v1/nodes/n3", 403, {"reason": "Forbidden", "message": "nodes is forbidden"})})
    got = _node_troubles(kube, cache, ("n1", "n2", "n3"), max_age=10)  # type: ignore[arg-type]
    assert [(t.name, t.status) for t in got] == [("n1", "Unknown"), ("n3", "unreadable")]
    assert "grant" not in got[1].describe() and "cannot be read by the operator" in got[1].describe()
    assert _node_troubles(kube, cache, ("n1", "n2", "n3"), max_age=10) == got  # type: ignore[arg-type]
    assert len(kube.asked) == 3, "a second pipeline's pass within the recheck period asks nothing"
    now[0] = 11.0
    _node_troubles(kube, cache, ("n1",), max_age=10)  # type: ignore[arg-type]
    assert len(kube.asked) == 4


def test_a_job_whose_running_pods_are_not_all_ready_has_its_unfinished_pods_read() -> None:
    assert pod_read([job("lightgbm", active=2, ready=1)], RUN, status()) is PodRead.WAITING
    assert pod_read([job("lightgbm", active=2, ready=2)], RUN, status()) is PodRead.NONE


# ---- what the status says -----------------------------------------------------------------------------------


def test_units_on_a_node_that_stopped_reporting_are_named_with_the_node_and_the_way_out() -> None:
    jobs = (job("lightgbm", active=2, ready=1), job("xgboost", active=1, ready=1))
    pods = (pod("lgb-0", "lightgbm", 0), pod("lgb-1", "lightgbm", 1, ready=False, node="node-7"), pod("xgb-0", "xgboost", 0))
    d = decide_cpu(jobs, pods, (LOST,))
    cpu = d.status.stages["cpu"]
    message = cpu.message or ""
    assert cpu.reason == Reason.NODE_NOT_READY.value and cpu.outcome is None
    for words in ("node node-7 is not Ready (Ready=Unknown since 2026-12-01T11:58:00Z: NodeStatusUnknown; Kubelet stopped posting node status.)",
                  "unit 1, family lightgbm (pod lgb-1) of stage cpu",
                  "kubectl taint nodes node-7 node.kubernetes.io/out-of-service=nodeshutdown:NoExecute"):
        assert words in message, f"{words!r} not in {message!r}"
    assert "lgb-0" not in message and "xgb-0" not in message, "units on healthy nodes are not named"
    reconciling = next(c for c in d.status.conditions if c.type == "Reconciling")
    assert reconciling.reason == Reason.NODE_NOT_READY.value and "node-7" in reconciling.message
    assert not d.delete_jobs and not d.create


def test_a_stage_whose_every_unit_is_on_a_lost_node_is_not_taken_for_one_that_never_started() -> None:
    """Units on a lost node are not counted running (they are not Ready): the start timeout must not stop them."""
    jobs = (job("lightgbm", active=2, ready=0), job("xgboost", succeeded=0, active=1, ready=0))
    pods = (pod("lgb-0", "lightgbm", 0, ready=False, node="node-7"), pod("lgb-1", "lightgbm", 1, ready=False, node="node-7"),
            pod("xgb-0", "xgboost", 0, ready=False, node="node-7"))
    d = decide_cpu(jobs, pods, (LOST,), sp=spec(startTimeoutSeconds=60), st=status(started="2026-12-01T11:02:00Z"))
    assert d.status.stages["cpu"].reason == Reason.NODE_NOT_READY.value and d.status.stages["cpu"].outcome is None
    assert not d.delete_jobs
    assert "unit 0, family lightgbm (pod lgb-0), unit 1, family lightgbm (pod lgb-1), unit 0, family xgboost (pod xgb-0)" in (
        d.status.stages["cpu"].message or "")


def test_without_a_lost_node_a_pod_not_ready_says_nothing_of_nodes() -> None:
    jobs = (job("lightgbm", active=2, ready=1), job("xgboost", active=1, ready=1))
    pods = (pod("lgb-0", "lightgbm", 0), pod("lgb-1", "lightgbm", 1, ready=False), pod("xgb-0", "xgboost", 0))
    assert decide_cpu(jobs, pods).status.stages["cpu"].reason != Reason.NODE_NOT_READY.value


@pytest.mark.parametrize(("cpu", "said", "fix"), [
    ({"scratchSizeLimit": "4Mi"}, SCRATCH_FULL, "raise stages.cpu.scratchSizeLimit (now 4Mi)"),
    ({}, "Pod ephemeral local storage usage exceeds the total limit of containers 1Gi. ", "raise stages.cpu.resources.limits.ephemeral-storage"),
    ({"families": {"lightgbm": {"limits": {"memory": "1Gi"}}}}, "Pod ephemeral local storage usage exceeds the total limit of containers 1Gi.",
     "raise stages.cpu.families.lightgbm.limits.ephemeral-storage"),
])
def test_a_unit_the_kubelet_evicted_for_its_scratch_fails_its_index_naming_the_limit_to_raise(cpu: dict[str, Any], said: str, fix: str) -> None:
    failed = job("lightgbm", succeeded=1, failed=2, failed_indexes=(1,), failed_condition="FailedIndexes: Job has failed indexes")
    pods = (pod("lgb-0", "lightgbm", 0, phase="Succeeded"),
            pod("lgb-1-a", "lightgbm", 1, phase="Failed", ready=False, exit_code=137, pod_reason="Evicted", status_message=said),
            pod("lgb-1-b", "lightgbm", 1, phase="Failed", ready=False, exit_code=137, pod_reason="Evicted", status_message=said))
    d = decide_cpu((failed, job("xgboost", succeeded=1, complete=True)), pods, sp=spec(**cpu))
    stage = d.status.stages["cpu"]
    assert stage.outcome == "Failed" and stage.reason == Reason.EVICTED.value
    message = stage.message or ""
    for words in ("stage cpu, family lightgbm, index 1 failed", "unit 1 Evicted (pod lgb-1-b)", f"{said.strip().rstrip('.')}; {fix}"):
        assert words in message, f"{words!r} not in {message!r}"


def test_a_scratch_eviction_is_shown_while_the_unit_still_retries() -> None:
    retrying = job("lightgbm", active=1, ready=1, failed=1)
    pods = (pod("lgb-1-a", "lightgbm", 1, phase="Failed", ready=False, pod_reason="Evicted", status_message=SCRATCH_FULL),
            pod("lgb-1-b", "lightgbm", 1))
    d = decide_cpu((retrying, job("xgboost", active=1, ready=1)), pods, sp=spec(scratchSizeLimit="4Mi"))
    stage = d.status.stages["cpu"]
    assert stage.reason == Reason.EVICTED.value and stage.outcome is None
    assert "scratchSizeLimit (now 4Mi)" in (stage.message or "") and (stage.message or "").endswith("retrying")
