"""Which status writes the operator may hold back (`act.progress_only`) and that it holds back only those.

A held write must never be a change a user or the next stage waits on: a stage starting or ending, a
failure, a reason to wait. Only the running counts may lag (by `--status-progress-seconds`).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from operator_builders import observed_job, pipeline_view, succeeded_stages
from trainpipe.contract.names import Stage
from trainpipe.contract.pipeline import PipelineSpec
from trainpipe.contract.runs import run_id
from trainpipe.contract.status import PipelineStatus, PlanRef
from trainpipe.kube.pods import ObservedPod
from trainpipe_operator.act import act, progress_only
from trainpipe_operator.config import OperatorConfig
from trainpipe_operator.decide import Decision, decide
from trainpipe_operator.metrics import Metrics
from trainpipe_operator.observed import Observed, ObservedJob, PipelineView

NOW = datetime(2026, 12, 1, 12, 0, 0, tzinfo=UTC)
CONFIG = OperatorConfig(cpu_image="jobs-cpu:1", gpu_image="jobs-gpu:1")
SPEC = PipelineSpec.model_validate({"data": {"dir": "example", "volume": {"claimName": "bars"}}, "training": {"families": ["lightgbm", "mlp"]}})
RUN = run_id(SPEC)
PLAN = PlanRef(digest="d" * 64, path=f"/artifacts/demo/{RUN}/globals/training_plan/master_training_plan.json", units={"lightgbm": 4, "mlp": 4})
EARLY = succeeded_stages(Stage.RANK, Stage.SELECT, Stage.PLAN)
BEFORE = PipelineStatus(run_id=RUN, run_generation=1, started_at="2026-12-01T11:00:00Z", selected_targets=3, plan=PLAN,
                        output_path=f"/artifacts/demo/{RUN}", stages=EARLY)


def cpu(**kw: Any) -> ObservedJob:
    return observed_job(Stage.CPU, "lightgbm", run=RUN, completions=4, **kw)


def view(status: PipelineStatus) -> PipelineView:
    return pipeline_view(SPEC, status)


def settle(jobs: tuple[ObservedJob, ...], pods: tuple[ObservedPod, ...] = (), start: PipelineStatus = BEFORE) -> PipelineStatus:
    """The status the operator converges to for these children (decide until it stops changing)."""
    status = start
    for _ in range(5):
        status = decide(view(status), Observed(jobs=jobs, pods=pods), CONFIG, NOW).status
    return status


RUNNING_1 = settle((cpu(active=4, ready=4),))
RUNNING_2 = settle((cpu(active=2, ready=2, succeeded=2),))
PENDING = (ObservedPod(name="p-0", job=cpu().name, index=0, phase="Pending", unschedulable="0/4 nodes are available: 4 Insufficient cpu."),)

CASES = {
    "two pods finished, the stage runs on": (RUNNING_1, RUNNING_2, True),
    "nothing changed": (RUNNING_1, RUNNING_1, False),
    "the stage finished: the next one starts": (RUNNING_2, settle((cpu(succeeded=4, complete=True),), start=RUNNING_2), False),
    "a pod cannot be scheduled": (RUNNING_1, settle((cpu(active=4, ready=3),), PENDING, start=RUNNING_1), False),
    "the stage failed": (RUNNING_2, settle((cpu(succeeded=3, failed=1, failed_condition="BackoffLimitExceeded: too many"),), start=RUNNING_2), False),
}


@pytest.mark.parametrize("name", CASES)
def test_only_changes_of_running_counts_are_progress(name):
    old, new, expected = CASES[name]
    assert progress_only(status_wire_of(old), status_wire_of(new)) is expected


def status_wire_of(status: PipelineStatus) -> dict[str, Any]:
    return status.model_dump(mode="json", by_alias=True, exclude_none=True)


class Writes:
    def __init__(self) -> None:
        self.puts: list[str] = []

    def replace(self, resource_path: str, body: dict[str, Any]) -> dict[str, Any]:
        self.puts.append(resource_path)
        return body


@pytest.mark.parametrize(("name", "hold", "written"), [
    ("two pods finished, the stage runs on", True, False),
    ("two pods finished, the stage runs on", False, True),  # the hold is over: the counts go out
    ("the stage finished: the next one starts", True, True),  # never held: the next stage's status goes at once
    ("a pod cannot be scheduled", True, True),
])
def test_act_holds_back_only_progress_and_only_while_asked(name, hold, written):
    old, new, _ = CASES[name]
    assert old.stage == "cpu" and status_wire_of(old) != status_wire_of(new)
    obj = {"metadata": {"name": "demo", "namespace": "ns", "resourceVersion": "1"}, "status": status_wire_of(old)}
    kube, metrics = Writes(), Metrics()
    held = act(kube, obj, view(old), Decision(status=new), metrics, hold_progress=hold)  # type: ignore[arg-type]
    assert kube.puts == (["/apis/trainpipe.io/v1alpha1/namespaces/ns/trainingpipelines/demo/status"] if written else [])
    assert held is (not written)
    # /metrics tells an admin how many of the status writes were only counts (what the hold trims)
    counted = {change: metrics.registry.get_sample_value("trainpipe_status_writes_total", {"change": change}) or 0.0 for change in ("state", "counts")}
    kind = "counts" if CASES[name][2] else "state"
    assert counted == {kind: 1.0 if written else 0.0, ({"state", "counts"} - {kind}).pop(): 0.0}
