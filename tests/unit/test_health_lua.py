"""The Argo CD health check (operator/deploy/argocd-health.lua) run by a real Lua 5.1 interpreter (lupa).

Statuses come from the operator's own pure `decide` (serialised exactly as `act` writes them), so they
have the operator's shape without a cluster; a few hand-written ones cover what `decide` never writes
(no status yet, a status for an older generation). tests/cluster/test_gitops.py runs the same script
on statuses a running operator wrote.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from operator_builders import observed_job, pipeline_view
from trainpipe.contract.names import API_GROUP, API_VERSION, KIND, Stage
from trainpipe.contract.pipeline import PipelineSpec
from trainpipe.contract.runs import run_id
from trainpipe.contract.status import PipelineStatus, PlanRef, StageStatus
from trainpipe.kube.pods import ObservedPod
from trainpipe_operator.config import OperatorConfig
from trainpipe_operator.decide import decide
from trainpipe_operator.observed import Observed, ObservedJob, ObservedPlan, PipelineView

lupa = pytest.importorskip("lupa.lua51", reason="lupa is a dev dependency: pip install -e .[dev]")

SCRIPT = Path(__file__).resolve().parents[2] / "operator" / "deploy" / "argocd-health.lua"
NOW = datetime(2026, 12, 1, 12, 0, 0, tzinfo=UTC)
CONFIG = OperatorConfig(cpu_image="jobs-cpu:1", gpu_image="jobs-gpu:1")
SPEC = PipelineSpec.model_validate({"data": {"dir": "example", "volume": {"claimName": "bars"}}, "training": {"families": ["lightgbm"]}})
RUN = run_id(SPEC)
DIGEST = "d" * 64


def health(obj: dict[str, Any]) -> tuple[str, str]:
    """(status, message) as Argo CD computes them: the script runs with the object as the global `obj`."""
    lua = lupa.LuaRuntime(unpack_returned_tuples=True)
    lua.globals().obj = lua.table_from(obj, recursive=True)
    result = lua.execute(SCRIPT.read_text())
    return result["status"], result["message"]


def written(status: PipelineStatus, generation: int = 1, suspend: bool = False) -> dict[str, Any]:
    spec = SPEC.model_dump(mode="json", by_alias=True, exclude_none=True) | {"suspend": suspend}
    return {"apiVersion": f"{API_GROUP}/{API_VERSION}", "kind": KIND,
            "metadata": {"name": "demo", "namespace": "ns", "generation": generation}, "spec": spec,
            "status": status.model_dump(mode="json", by_alias=True, exclude_none=True)}


def view(status: PipelineStatus | None = None, generation: int = 1, spec: PipelineSpec = SPEC) -> PipelineView:
    return pipeline_view(spec, status, generation=generation)


def job(stage: Stage, family: str | None = None, **kw: Any) -> ObservedJob:
    return observed_job(stage, family, run=RUN, **kw)


def after(*finished: Stage) -> PipelineStatus:
    stages = {s.value: StageStatus(succeeded=1, outcome="Succeeded", started_at="2026-12-01T11:00:00Z", finished_at="2026-12-01T11:01:00Z")
              for s in finished}
    plan = PlanRef(digest=DIGEST, path=f"/artifacts/demo/{RUN}/globals/training_plan/master_training_plan.json", units={"lightgbm": 2})
    return PipelineStatus(run_id=RUN, run_generation=1, started_at="2026-12-01T11:00:00Z", selected_targets=1, plan=plan,
                          output_path=f"/artifacts/demo/{RUN}", stages=stages)


PLAN = ObservedPlan(run=RUN, digest=DIGEST, path=f"/artifacts/demo/{RUN}/globals/training_plan/master_training_plan.json", units={"lightgbm": 2})
CPU_DONE = (Stage.RANK, Stage.SELECT, Stage.PLAN, Stage.CPU, Stage.GPU)


def decided(v: PipelineView, *jobs: ObservedJob, pods: tuple[ObservedPod, ...] = (), plan: ObservedPlan | None = PLAN,
            **observed: Any) -> PipelineStatus:
    return decide(v, Observed(jobs=jobs, pods=pods, plan=plan, **observed), CONFIG, NOW).status


def test_a_new_pipeline_is_progressing_with_the_operators_message() -> None:
    status, message = health(written(decided(view(), plan=None)))
    assert status == "Progressing" and "stage rank" in message


def test_a_run_going_through_its_stages_is_progressing() -> None:
    running = job(Stage.CPU, "lightgbm", completions=2, succeeded=1, active=1, ready=1)
    status, message = health(written(decided(view(after(Stage.RANK, Stage.SELECT, Stage.PLAN)), running)))
    assert (status, message) == ("Progressing", "stage cpu: 1/2 units done, 1 running, 0 pending")


def test_a_run_waiting_on_an_unschedulable_pod_is_progressing_and_says_why() -> None:
    waiting = job(Stage.CPU, "lightgbm", completions=2)
    pod = ObservedPod(name=f"{waiting.name}-0-x", job=waiting.name, index=0, phase="Pending", exit_code=None, message="",
                      unschedulable="0/4 nodes are available: 4 Insufficient cpu.")
    status, message = health(written(decided(view(after(Stage.RANK, Stage.SELECT, Stage.PLAN)), waiting, pods=(pod,))))
    assert status == "Progressing" and "Insufficient cpu" in message


def test_a_finished_run_is_healthy() -> None:
    status, message = health(written(decided(view(after(*CPU_DONE)), job(Stage.REPORT, complete=True, succeeded=1))))
    assert status == "Healthy" and RUN in message


def test_a_failed_unit_degrades_the_pipeline_with_the_failure_message() -> None:
    bad = job(Stage.CPU, "lightgbm", completions=2, succeeded=1, failed_condition="FailedIndexes", failed_indexes=(1,))
    pod = ObservedPod(name=f"{bad.name}-1-x", job=bad.name, index=1, phase="Failed", exit_code=3, message="cpu family lightgbm unit 1: DATA: no bars")
    status, message = health(written(decided(view(after(Stage.RANK, Stage.SELECT, Stage.PLAN)), bad, pods=(pod,))))
    assert status == "Degraded" and "family lightgbm" in message and "no bars" in message


@pytest.mark.parametrize("observed", [{"missing_claims": ("bars",)}, {}], ids=["missing-claim", "invalid-spec"])
def test_a_spec_that_cannot_run_is_degraded(observed: dict[str, Any]) -> None:
    if observed:
        status = decided(view(), plan=None, **observed)
    else:
        bad = PipelineView(namespace="ns", name="demo", uid="u", generation=3, spec=None, spec_error="spec.targets.topN: must be >= 1",
                           status=PipelineStatus(), rerun_token=None, retry_token=None)
        status = decide(bad, Observed(), CONFIG, NOW).status
    verdict, message = health(written(status, generation=status.observed_generation or 1))
    assert verdict == "Degraded" and ("bars" in message or "topN" in message)


def test_a_suspended_pipeline_is_suspended() -> None:
    held = SPEC.model_copy(update={"suspend": True})
    status, message = health(written(decided(view(after(Stage.RANK), spec=held), plan=None), suspend=True))
    assert status == "Suspended" and "spec.suspend" in message


def test_a_status_for_an_older_generation_is_progressing_even_when_it_says_ready() -> None:
    ready = decided(view(after(*CPU_DONE)), job(Stage.REPORT, complete=True, succeeded=1))
    status, message = health(written(ready, generation=2))
    assert status == "Progressing" and "generation 2" in message and "generation 1" in message


def test_a_stale_ready_condition_does_not_count_even_with_a_current_top_level_generation() -> None:
    obj = written(decided(view(after(*CPU_DONE)), job(Stage.REPORT, complete=True, succeeded=1)), generation=2)
    obj["status"]["observedGeneration"] = 2  # conditions still carry observedGeneration 1
    assert health(obj)[0] == "Progressing"


@pytest.mark.parametrize("status", [None, {}, {"conditions": []}], ids=["no-status", "empty", "no-conditions"])
def test_before_the_operator_writes_anything_the_pipeline_is_progressing(status: dict[str, Any] | None) -> None:
    obj: dict[str, Any] = {"apiVersion": f"{API_GROUP}/{API_VERSION}", "kind": KIND, "metadata": {"name": "demo", "generation": 1}}
    if status is not None:
        obj["status"] = status
    verdict, message = health(obj)
    assert verdict == "Progressing" and "operator" in message
