"""Table-driven tests of the operator's pure `decide`: every transition of a run, with no cluster.

Each test builds the pipeline and what the cluster holds from small builders, calls `decide`, and
reads the Decision as a user would notice it: which Jobs appear or go, and what `kubectl get tp` says.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from operator_builders import observed_job, pipeline_view, succeeded_stages
from trainpipe.contract.names import ANNOTATION_PLAN_DIGEST, GPU_RESOURCE, KUEUE_QUEUE_LABEL, LABEL_STAGE, Stage
from trainpipe.contract.pipeline import PipelineSpec
from trainpipe.contract.runs import run_id
from trainpipe.contract.status import PipelineStatus, PlanRef, Reason, StageStatus
from trainpipe.kube.pods import ObservedPod
from trainpipe_operator.config import OperatorConfig
from trainpipe_operator.decide import Decision, decide
from trainpipe_operator.naming import MAX_JOB_NAME, job_name
from trainpipe_operator.observed import Observed, ObservedJob, ObservedPlan, PipelineView, parse_pipeline

NOW = datetime(2026, 12, 1, 12, 0, 0, tzinfo=UTC)
CONFIG = OperatorConfig(cpu_image="jobs-cpu:1", gpu_image="jobs-gpu:1")
BASE = {"data": {"dir": "example", "volume": {"claimName": "bars"}}, "training": {"families": ["lightgbm", "xgboost", "mlp"]}}
UNITS = {"lightgbm": 4, "xgboost": 4, "mlp": 4}
DIGEST = "d" * 64


def spec(**overrides: Any) -> PipelineSpec:
    raw = json.loads(json.dumps(BASE))
    for dotted, value in overrides.items():
        node = raw
        *parents, leaf = dotted.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return PipelineSpec.model_validate(raw)


SPEC = spec()
RUN = run_id(SPEC)


def view(s: PipelineSpec = SPEC, status: PipelineStatus | None = None, generation: int = 1, rerun: str | None = None,
         retry: str | None = None) -> PipelineView:
    return pipeline_view(s, status, generation=generation, rerun=rerun, retry=retry)


def job(stage: Stage, family: str | None = None, *, attempt: int = 0, run: str = RUN, completions: int = 1, succeeded: int = 0,
        active: int = 0, complete: bool = False, failed: str | None = None, failed_indexes: tuple[int, ...] = (), suspended: bool = False,
        by_operator: bool = False) -> ObservedJob:
    return observed_job(stage, family, run=run, attempt=attempt, completions=completions, succeeded=succeeded, active=active,
                        failed_indexes=failed_indexes, complete=complete, failed_condition=failed, suspended=suspended,
                        suspended_by_operator=by_operator)


def done(stage: Stage, family: str | None = None, n: int = 1, **kw: Any) -> ObservedJob:
    return job(stage, family, completions=n, succeeded=n, complete=True, **kw)


def pod(of: ObservedJob, phase: str = "Succeeded", message: str = "", index: int | None = None, exit_code: int | None = None,
        unschedulable: str | None = None) -> ObservedPod:
    return ObservedPod(name=f"{of.name}-{index or 0}-abcde", job=of.name, index=index, phase=phase, exit_code=exit_code, message=message,
                       unschedulable=unschedulable)


def status_after(*finished: Stage, selected: int | None = 3, plan: bool = True, **extra: Any) -> PipelineStatus:
    """A status in which `finished` stages succeeded, as the operator would have written it."""
    stages = succeeded_stages(*finished)
    ref = PlanRef(digest=DIGEST, path=f"/artifacts/demo/{RUN}/globals/training_plan/master_training_plan.json", units=UNITS) if plan else None
    return PipelineStatus(run_id=RUN, run_generation=1, started_at="2026-12-01T11:00:00Z", selected_targets=selected, plan=ref,
                          output_path=f"/artifacts/demo/{RUN}", stages=stages, **extra)


def plan_cm() -> ObservedPlan:
    return ObservedPlan(run=RUN, digest=DIGEST, path=f"/artifacts/demo/{RUN}/globals/training_plan/master_training_plan.json", units=UNITS)


def run(v: PipelineView, *jobs: ObservedJob, pods: tuple[ObservedPod, ...] = (), plan: ObservedPlan | None = None, now: datetime = NOW,
        config: OperatorConfig = CONFIG, **observed: Any) -> Decision:
    return decide(v, Observed(jobs=tuple(jobs), pods=pods, plan=plan, **observed), config, now)


def created_jobs(d: Decision) -> dict[str, dict[str, Any]]:
    return {m["metadata"]["name"]: m for m in d.create if m["kind"] == "Job"}


def condition(d: Decision, ctype: str) -> tuple[str, str]:
    c = next(c for c in d.status.conditions if c.type == ctype)
    return c.status, c.reason


def stages_created(d: Decision) -> list[tuple[str, str]]:
    return sorted((m["metadata"]["labels"][LABEL_STAGE], m["metadata"]["labels"]["trainpipe.io/family"]) for m in created_jobs(d).values())


# ---- the stage gates, in order --------------------------------------------------------------------


def test_a_new_pipeline_creates_its_artifacts_claim_and_the_rank_job_and_says_it_is_reconciling():
    d = run(view(), artifacts_claim_exists=False)
    assert stages_created(d) == [("rank", "all")]
    claim = next(m for m in d.create if m["kind"] == "PersistentVolumeClaim")
    assert claim["metadata"]["name"] == "demo-artifacts" and claim["spec"]["accessModes"] == ["ReadWriteMany"]
    assert "ownerReferences" not in claim["metadata"], "deleting a pipeline must not delete its trained models by default"
    assert condition(d, "Ready") == ("False", "StageRunning")
    assert condition(d, "Reconciling")[0] == "True"
    assert d.status.observed_generation == 1 and d.status.run_id == RUN and d.status.stage == "rank"
    assert d.status.progress == "0/3"
    assert any(e.reason == "RunStarted" for e in d.events)


def test_operator_created_claim_is_owned_only_with_retain_policy_delete():
    d = run(view(spec(**{"artifacts.retainPolicy": "Delete", "artifacts.size": "5Gi"})), artifacts_claim_exists=False)
    claim = next(m for m in d.create if m["kind"] == "PersistentVolumeClaim")
    assert claim["metadata"]["ownerReferences"][0]["name"] == "demo"
    assert claim["spec"]["resources"]["requests"]["storage"] == "5Gi"


@pytest.mark.parametrize(("finished", "observed_jobs", "pods_for", "expected"), [
    ("rank", [Stage.RANK], {Stage.RANK: '{"selected": 3}'}, [("select", "all")]),
    ("select", [Stage.RANK, Stage.SELECT], {Stage.RANK: '{"selected": 3}'}, [("plan", "all")]),
    ("plan", [Stage.RANK, Stage.SELECT, Stage.PLAN],
     {Stage.PLAN: json.dumps({"planDigest": DIGEST, "runId": RUN, "units": UNITS, "path": "globals/training_plan/master_training_plan.json"})},
     [("cpu", "lightgbm"), ("cpu", "xgboost")]),
])
def test_a_finished_stage_hands_off_to_the_next_in_the_same_pass(finished, observed_jobs, pods_for, expected):
    already = [s for s in observed_jobs if s.value != finished]
    st = status_after(*already, selected=None if finished == "rank" else 3, plan=False)
    jobs = [done(s, n=3 if s is Stage.SELECT else 1) for s in observed_jobs]
    pods = tuple(pod(j, message=pods_for[j.stage]) for j in jobs if j.stage in pods_for)
    d = run(view(status=st), *jobs, pods=pods)
    assert stages_created(d) == expected
    assert d.status.stages[finished].outcome == "Succeeded"
    assert any(e.reason == "StageSucceeded" and finished in e.message for e in d.events)


def test_select_is_one_indexed_job_with_one_index_per_kept_target():
    rank = done(Stage.RANK)
    d = run(view(status=status_after(selected=None, plan=False)), rank, pods=(pod(rank, message='{"selected": 4, "targets": ["a","b","c","d"]}'),))
    [select] = created_jobs(d).values()
    assert select["spec"]["completionMode"] == "Indexed" and select["spec"]["completions"] == 4
    assert "--unit-index" in select["spec"]["template"]["spec"]["containers"][0]["args"]
    assert d.status.selected_targets == 4


def test_a_rank_pod_without_a_readable_report_stalls_the_run_instead_of_guessing():
    rank = done(Stage.RANK)
    d = run(view(status=status_after(selected=None, plan=False)), rank, pods=(pod(rank, message="oops"),))
    assert not created_jobs(d)
    assert condition(d, "Stalled") == ("True", "StageFailed")
    assert "termination message" in d.status.message


def test_a_report_lost_with_its_pod_reruns_the_stage_once_then_stalls():
    rank = done(Stage.RANK)
    first = run(view(status=status_after(selected=None, plan=False)), rank)  # complete, but its pod is gone
    assert first.delete_jobs == (rank.name,) and not created_jobs(first)
    assert first.status.stages["rank"].attempt == 1 and first.status.stages["rank"].reason == "ReportLost"
    assert condition(first, "Stalled")[0] == "False" and "reuses its outputs" in first.status.message
    assert any(e.reason == "ReportLost" for e in first.events)
    again = run(view(status=first.status))  # the old Job is gone: the stage's next attempt is created
    [rerun] = created_jobs(again)
    assert rerun == job_name("demo", RUN, Stage.RANK, None, 1)
    report = pod(done(Stage.RANK, attempt=1), message='{"selected": 3}')
    read = run(view(status=again.status), done(Stage.RANK, attempt=1), pods=(report,))
    assert read.status.selected_targets == 3 and read.status.stages["rank"].outcome == "Succeeded"
    lost_twice = run(view(status=again.status), done(Stage.RANK, attempt=1))
    assert condition(lost_twice, "Stalled") == ("True", "StageFailed") and not lost_twice.delete_jobs


def test_plan_completion_writes_the_plan_config_map_and_fans_out_per_cpu_family():
    jobs = [done(Stage.RANK), done(Stage.SELECT, n=3), done(Stage.PLAN)]
    report = {"planDigest": DIGEST, "runId": RUN, "units": UNITS, "path": "globals/training_plan/master_training_plan.json"}
    d = run(view(status=status_after(Stage.RANK, Stage.SELECT, plan=False)), *jobs, pods=(pod(jobs[2], message=json.dumps(report)),))
    [cm] = d.upsert
    assert cm["metadata"]["name"] == "demo-plan" and cm["data"]["digest"] == DIGEST and json.loads(cm["data"]["units"]) == UNITS
    cpu = created_jobs(d)
    assert sorted(m["metadata"]["labels"]["trainpipe.io/family"] for m in cpu.values()) == ["lightgbm", "xgboost"]
    for m in cpu.values():
        assert m["spec"]["completions"] == 4 and m["metadata"]["annotations"][ANNOTATION_PLAN_DIGEST] == DIGEST
        assert "backoffLimitPerIndex" in m["spec"], "a bad unit must fail only its own index"
        assert GPU_RESOURCE not in m["spec"]["template"]["spec"]["containers"][0].get("resources", {}).get("limits", {})
    assert d.status.progress == "5/18"  # rank 1 + select 3 + plan 1 of 1+3+1+8+4+1 units


@pytest.mark.parametrize("cpu_jobs", [
    [done(Stage.CPU, "lightgbm", n=4), job(Stage.CPU, "xgboost", completions=4, succeeded=3, active=1)],
    [done(Stage.CPU, "lightgbm", n=4)],  # xgboost's Job not even created yet
    [done(Stage.CPU, "lightgbm", n=4), job(Stage.CPU, "xgboost", completions=4, succeeded=4)],  # counts done, condition not yet Complete
])
def test_no_gpu_job_exists_until_every_cpu_job_of_the_run_is_complete(cpu_jobs):
    st = status_after(Stage.RANK, Stage.SELECT, Stage.PLAN)
    d = run(view(status=st), *cpu_jobs, plan=plan_cm())
    assert all(stage != "gpu" for stage, _ in stages_created(d))
    assert d.status.stage == "cpu"


def test_when_the_last_cpu_job_completes_the_gpu_jobs_are_created_on_gpu_nodes():
    st = status_after(Stage.RANK, Stage.SELECT, Stage.PLAN)
    d = run(view(status=st), done(Stage.CPU, "lightgbm", n=4), done(Stage.CPU, "xgboost", n=4), plan=plan_cm())
    [gpu] = created_jobs(d).values()
    pod_spec = gpu["spec"]["template"]["spec"]
    assert gpu["metadata"]["labels"]["trainpipe.io/family"] == "mlp" and gpu["spec"]["completions"] == 4
    assert pod_spec["containers"][0]["resources"]["limits"][GPU_RESOURCE] == "1"
    assert {"key": GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"} in pod_spec["tolerations"]
    assert pod_spec["containers"][0]["image"] == "jobs-gpu:1"
    args = pod_spec["containers"][0]["args"]
    assert args[:3] == ["train", "--stage", "gpu"] and args[args.index("--plan-digest") + 1] == DIGEST
    assert d.status.stages["cpu"].outcome == "Succeeded"


def test_a_plan_without_gpu_families_goes_from_cpu_straight_to_the_report():
    st = status_after(Stage.RANK, Stage.SELECT, Stage.PLAN).model_copy(update={"plan": PlanRef(digest=DIGEST, path="p", units={"lightgbm": 2})})
    d = run(view(status=st), done(Stage.CPU, "lightgbm", n=2))
    assert stages_created(d) == [("report", "all")]
    assert d.status.stages["gpu"].outcome == "Succeeded"


def test_gpu_work_without_any_gpu_image_stalls_naming_the_setting():
    st = status_after(Stage.RANK, Stage.SELECT, Stage.PLAN, Stage.CPU)
    d = run(view(status=st), plan=plan_cm(), config=OperatorConfig(cpu_image="jobs-cpu:1"))
    assert not created_jobs(d)
    assert condition(d, "Stalled") == ("True", "InvalidSpec")
    assert "spec.images.gpu" in d.status.message


def test_the_cpu_image_may_run_gpu_families_when_the_spec_says_so_explicitly():
    st = status_after(Stage.RANK, Stage.SELECT, Stage.PLAN, Stage.CPU)
    d = run(view(spec(**{"images.cpu": "jobs-cpu:2", "images.gpu": "jobs-cpu:2"}), status=st), plan=plan_cm(), config=OperatorConfig())
    [gpu] = created_jobs(d).values()
    assert gpu["spec"]["template"]["spec"]["containers"][0]["image"] == "jobs-cpu:2"


def test_every_stage_done_makes_the_pipeline_ready_and_records_the_models_for_promotion():
    st = status_after(Stage.RANK, Stage.SELECT, Stage.PLAN, Stage.CPU, Stage.GPU)
    d = run(view(status=st), done(Stage.REPORT), plan=plan_cm())
    assert condition(d, "Ready") == ("True", "Succeeded")
    assert condition(d, "Reconciling")[0] == "False" and condition(d, "Stalled")[0] == "False"
    assert d.status.stage == "Done" and d.status.finished_at == "2026-12-01T12:00:00Z"
    assert d.status.last_succeeded_run.run_id == RUN and d.status.last_succeeded_run.models_path == f"/artifacts/ns/demo/{RUN}/models"
    assert d.status.progress == "18/18"
    assert not d.create and not d.delete_jobs
    # The report pod was gone before it was read: the page is in the run folder all the same, nothing is rerun.
    assert d.status.report.path == f"/artifacts/ns/demo/{RUN}/report.html" and d.status.report.models is None


@pytest.mark.parametrize(("tracking", "ends_with", "warned"), [
    (None, "/models", False),
    ({"state": "tracked", "mlflowRunId": "abc", "registered": ["demo-fwd_ret_5d:3"]}, "; tracked in MLflow", False),
    ({"state": "not tracked", "reason": "http://mlflow:5000 refused the connection (3 tries)"},
     "; not tracked in MLflow: http://mlflow:5000 refused the connection (3 tries)", True),
])
def test_the_report_job_says_whether_mlflow_has_the_run_and_training_succeeds_either_way(tracking, ends_with, warned):
    st = status_after(Stage.RANK, Stage.SELECT, Stage.PLAN, Stage.CPU, Stage.GPU)
    report = done(Stage.REPORT)
    said = {"path": "report.html", "models": 18, **({"tracking": tracking} if tracking else {})}
    d = run(view(status=st), report, pods=(pod(report, message=json.dumps(said)),), plan=plan_cm())
    assert condition(d, "Ready") == ("True", "Succeeded") and d.status.last_succeeded_run.run_id == RUN
    assert d.status.report.models == 18 and d.status.message.endswith(ends_with)
    assert (d.status.report.tracking is None) is (tracking is None)
    assert any(e.reason == "NotTracked" and "refused" in e.message for e in d.events) is warned


# ---- failure and retry ----------------------------------------------------------------------------


def test_a_unit_that_exhausts_its_retries_stalls_the_pipeline_naming_stage_family_index_and_reason():
    st = status_after(Stage.RANK, Stage.SELECT, Stage.PLAN)
    bad = job(Stage.CPU, "xgboost", completions=4, succeeded=3, failed="FailedIndexes: Job has failed indexes", failed_indexes=(2,))
    pods = (pod(bad, "Failed", "unit cs_fwd_ret_5d/xgboost (target fwd_ret_5d) failed: ValueError: bad param", index=2, exit_code=1),)
    d = run(view(status=st), done(Stage.CPU, "lightgbm", n=4), bad, pods=pods, plan=plan_cm())
    assert not created_jobs(d), "no GPU Job after a failed CPU stage"
    assert condition(d, "Stalled") == ("True", "StageFailed") and condition(d, "Ready")[0] == "False"
    message = d.status.message
    for part in ("stage cpu", "family xgboost", "index 2", "fwd_ret_5d", "ValueError: bad param", "trainpipe.io/retry"):
        assert part in message
    assert d.status.stages["cpu"].outcome == "Failed" and d.status.stages["cpu"].failed == 1
    assert any(e.type == "Warning" and e.reason == "StageFailed" for e in d.events)


def test_a_stalled_run_stays_stalled_without_a_retry_token():
    st = status_after(Stage.RANK, Stage.SELECT, Stage.PLAN)
    st = st.model_copy(update={"stages": {**st.stages, "cpu": StageStatus(outcome="Failed", reason="StageFailed", message="boom")}})
    d = run(view(status=st), plan=plan_cm())
    assert not d.create and not d.delete_jobs and condition(d, "Stalled")[0] == "True"


def test_a_retry_token_reruns_the_failed_stage_as_the_next_attempt_and_only_once():
    st = status_after(Stage.RANK, Stage.SELECT, Stage.PLAN, retry_token="t0")
    st = st.model_copy(update={"stages": {**st.stages, "cpu": StageStatus(outcome="Failed", reason="StageFailed", message="boom", attempt=0)}})
    old = [done(Stage.CPU, "lightgbm", n=4), job(Stage.CPU, "xgboost", completions=4, failed="x", failed_indexes=(2,))]
    d = run(view(status=st, retry="t1"), *old, plan=plan_cm())
    assert sorted(created_jobs(d)) == sorted(job_name("demo", RUN, Stage.CPU, f, 1) for f in ("lightgbm", "xgboost"))
    assert set(d.delete_jobs) == {j.name for j in old}
    assert d.status.retry_token == "t1" and d.status.stages["cpu"].attempt == 1
    assert condition(d, "Reconciling")[0] == "True" and condition(d, "Stalled")[0] == "False"
    # The next pass sees the same token: nothing more is deleted and the same names are ensured.
    again = run(view(status=d.status, retry="t1"), plan=plan_cm())
    assert not again.delete_jobs and sorted(created_jobs(again)) == sorted(created_jobs(d))


def test_a_retry_token_on_a_healthy_run_is_recorded_and_changes_nothing():
    st = status_after(Stage.RANK, Stage.SELECT, Stage.PLAN)
    d = run(view(status=st, retry="t9"), done(Stage.CPU, "lightgbm", n=4), job(Stage.CPU, "xgboost", completions=4, active=4), plan=plan_cm())
    assert d.status.retry_token == "t9" and not d.delete_jobs and not created_jobs(d)


# ---- run identity ---------------------------------------------------------------------------------


def test_a_rerun_token_starts_a_new_run_and_removes_the_old_runs_jobs():
    st = status_after(Stage.RANK, Stage.SELECT, Stage.PLAN, Stage.CPU, Stage.GPU, Stage.REPORT, finished_at="2026-12-01T11:30:00Z")
    old = [done(Stage.REPORT)]
    d = run(view(status=st, rerun="again", generation=1), *old)
    new = run_id(SPEC, "again")
    assert new != RUN and d.status.run_id == new and d.status.rerun_token == "again"
    assert d.delete_jobs == (old[0].name,)
    assert stages_created(d) == [("rank", "all")] and condition(d, "Ready") == ("False", "StageRunning")


def test_an_identity_change_mid_run_supersedes_it():
    st = status_after(Stage.RANK, Stage.SELECT, Stage.PLAN)
    running = [job(Stage.CPU, "lightgbm", completions=4, active=2)]
    changed = spec(**{"targets.topN": 2})
    d = run(view(changed, status=st, generation=2), *running, plan=plan_cm())
    assert d.status.run_id == run_id(changed) != RUN
    assert d.delete_jobs == (running[0].name,)
    assert any(e.reason == "Superseded" for e in d.events)
    assert d.status.observed_generation == 2 and condition(d, "Ready")[0] == "False" and condition(d, "Reconciling")[0] == "True"
    assert d.status.plan is None and d.status.stages == {"rank": d.status.stages["rank"]}


@pytest.mark.parametrize("field", ["stages.cpu.resources", "stages.cpu.parallelism", "suspend_false", "ttlSecondsAfterFinished", "queue"])
def test_scheduling_only_changes_never_start_a_new_run(field):
    changes = {
        "stages.cpu.resources": {"stages.cpu.resources": {"limits": {"cpu": 3}}},
        "stages.cpu.parallelism": {"stages.cpu.parallelism": 2},
        "suspend_false": {"suspend": False},
        "ttlSecondsAfterFinished": {"ttlSecondsAfterFinished": 600},
        "queue": {"queueName": "team-a"},
    }[field]
    assert run_id(spec(**changes)) == RUN


def test_a_scheduling_change_applies_to_jobs_created_from_then_on():
    st = status_after(Stage.RANK, Stage.SELECT, Stage.PLAN)
    edited = spec(**{"stages.cpu.resources": {"limits": {"cpu": 3, "memory": "2Gi"}}, "stages.cpu.parallelism": 2,
                     "stages.cpu.families": {"xgboost": {"limits": {"cpu": 6}}}})
    d = run(view(edited, status=st, generation=3), done(Stage.CPU, "lightgbm", n=4), plan=plan_cm())
    [xgb] = created_jobs(d).values()
    assert xgb["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"] == {"cpu": "6"}
    assert xgb["spec"]["parallelism"] == 2
    assert not d.delete_jobs and d.status.run_id == RUN and d.status.observed_generation == 3


# ---- suspend, TTL, deadline, deleted Jobs ---------------------------------------------------------


def test_suspend_stops_creating_jobs_and_suspends_running_ones_then_resume_continues_the_same_run():
    st = status_after(Stage.RANK, Stage.SELECT, Stage.PLAN)
    running = job(Stage.CPU, "lightgbm", completions=4, active=2)
    d = run(view(spec(suspend=True), status=st), running, plan=plan_cm())
    assert d.suspend_jobs == (running.name,) and not created_jobs(d)
    assert condition(d, "Suspended") == ("True", "Suspended") and condition(d, "Reconciling")[0] == "False"
    assert d.status.stage == "Suspended" and d.status.run_id == RUN
    held = replace(running, suspended=True, suspended_by_operator=True, active=0)
    r = run(view(status=d.status), held, plan=plan_cm())
    assert r.resume_jobs == (running.name,) and r.status.run_id == RUN
    assert condition(r, "Suspended")[0] == "False" and condition(r, "Reconciling")[0] == "True"
    assert created_jobs(r) and running.name not in created_jobs(r)  # xgboost's Job now created; lightgbm's kept


def test_resume_never_unsuspends_a_job_that_kueue_holds():
    st = status_after(Stage.RANK, Stage.SELECT, Stage.PLAN)
    queued = job(Stage.CPU, "lightgbm", completions=4, suspended=True, by_operator=False)
    d = run(view(spec(queueName="team-a"), status=st), queued, plan=plan_cm())
    assert not d.resume_jobs
    [xgb] = created_jobs(d).values()
    assert xgb["spec"]["suspend"] is True and xgb["metadata"]["labels"][KUEUE_QUEUE_LABEL] == "team-a"


def test_ttl_deletes_a_finished_runs_jobs_only_after_it_expires_and_never_recreates_them():
    finished = status_after(*[s for s in Stage], finished_at="2026-12-01T11:59:00Z")
    jobs = [done(Stage.RANK), done(Stage.REPORT)]
    early = run(view(spec(ttlSecondsAfterFinished=120), status=finished), *jobs)
    assert not early.delete_jobs and early.requeue_after == pytest.approx(60)
    late = run(view(spec(ttlSecondsAfterFinished=120), status=finished), *jobs, now=NOW + timedelta(minutes=5))
    assert set(late.delete_jobs) == {j.name for j in jobs}
    gone = run(view(spec(ttlSecondsAfterFinished=120), status=late.status), now=NOW + timedelta(minutes=6))
    assert not gone.create and condition(gone, "Ready")[0] == "True"


def test_a_job_deleted_after_its_stage_finished_is_not_recreated():
    st = status_after(Stage.RANK, Stage.SELECT, Stage.PLAN)
    d = run(view(status=st), job(Stage.CPU, "lightgbm", completions=4, active=4), job(Stage.CPU, "xgboost", completions=4, active=4), plan=plan_cm())
    assert not any(s in ("rank", "select", "plan") for s, _ in stages_created(d))


def test_a_running_job_deleted_by_hand_is_recreated_under_the_same_name_once_it_is_gone():
    st = status_after(Stage.RANK, Stage.SELECT, Stage.PLAN)
    going = replace(job(Stage.CPU, "lightgbm", completions=4, active=4), deleting=True)
    d = run(view(status=st), going, job(Stage.CPU, "xgboost", completions=4, active=4), plan=plan_cm())
    assert going.name not in created_jobs(d) and d.requeue_after is not None
    gone = run(view(status=st), job(Stage.CPU, "xgboost", completions=4, active=4), plan=plan_cm())
    assert list(created_jobs(gone)) == [going.name]


def test_past_the_run_deadline_the_run_is_stopped_and_stalled_with_that_reason():
    st = status_after(Stage.RANK, Stage.SELECT, Stage.PLAN)
    running = replace(job(Stage.CPU, "lightgbm", completions=4, active=4), ready=4)  # its pods run (no start timeout to wait for)
    d = run(view(spec(activeDeadlineSeconds=600), status=st), running, done(Stage.CPU, "xgboost", n=4), plan=plan_cm())
    assert d.delete_jobs == (running.name,) and not created_jobs(d)
    assert condition(d, "Stalled") == ("True", "DeadlineExceeded")
    assert "activeDeadlineSeconds=600" in d.status.message
    before = run(view(spec(activeDeadlineSeconds=7200), status=st), running, plan=plan_cm())
    assert not before.delete_jobs and before.requeue_after == pytest.approx(3600)


def test_a_deleted_plan_config_map_is_restored_with_the_same_digest():
    st = status_after(Stage.RANK, Stage.SELECT, Stage.PLAN)
    d = run(view(status=st), job(Stage.CPU, "lightgbm", completions=4, active=4), plan=None)
    [cm] = d.upsert
    assert cm["data"]["digest"] == DIGEST and cm["data"]["run"] == RUN
    assert not run(view(status=st), plan=plan_cm()).upsert


def test_pending_pods_report_the_schedulers_reason():
    st = status_after(Stage.RANK, Stage.SELECT, Stage.PLAN, Stage.CPU)
    gpu = job(Stage.GPU, "mlp", completions=4)
    why = "0/4 nodes are available: 2 Insufficient nvidia.com/gpu, 2 node(s) had untolerated taint."
    d = run(view(status=st), gpu, pods=(pod(gpu, "Pending", index=0, unschedulable=why),), plan=plan_cm())
    assert why in d.status.message and condition(d, "Reconciling") == ("True", "Unschedulable")
    assert "unit 0 of stage gpu, family mlp cannot be scheduled" in d.status.message, "the unit is named"


def _gpu_stage_started(minutes_ago: int) -> PipelineStatus:
    st = status_after(Stage.RANK, Stage.SELECT, Stage.PLAN, Stage.CPU)
    started = (NOW - timedelta(minutes=minutes_ago)).strftime("%Y-%m-%dT%H:%M:%SZ")
    return st.model_copy(update={"stages": {**st.stages, "gpu": StageStatus(pending=4, started_at=started)}})


def test_a_stage_none_of_whose_pods_starts_within_its_timeout_stalls_naming_why_and_stops_its_jobs():
    gpu = job(Stage.GPU, "mlp", completions=4, active=4)
    stuck = ObservedPod(name=f"{gpu.name}-0-abcde", job=gpu.name, index=0, phase="Pending",
                        waiting="ErrImagePull: pull access denied for jobs-gpu, repository does not exist")
    waiting = run(view(status=_gpu_stage_started(5)), gpu, pods=(stuck,), plan=plan_cm())
    assert condition(waiting, "Stalled")[0] == "False" and "ErrImagePull" in waiting.status.message
    assert waiting.requeue_after is not None and waiting.requeue_after <= 300, "looks again when the 10 minutes are up"
    late = run(view(status=_gpu_stage_started(11)), gpu, pods=(stuck,), plan=plan_cm())
    assert condition(late, "Stalled") == ("True", "StartTimeout")
    assert "startTimeoutSeconds=600" in late.status.message and "pull access denied" in late.status.message
    assert late.delete_jobs == (gpu.name,) and late.status.stages["gpu"].outcome == "Failed"
    shorter = run(view(spec(**{"stages.gpu.startTimeoutSeconds": 30}), status=_gpu_stage_started(1)), gpu, pods=(stuck,), plan=plan_cm())
    assert condition(shorter, "Stalled") == ("True", "StartTimeout")
    started = run(view(status=_gpu_stage_started(11)), replace(gpu, ready=1), plan=plan_cm())
    assert condition(started, "Stalled")[0] == "False", "a stage one of whose pods runs is not stuck"
    queued = run(view(status=_gpu_stage_started(60)), replace(gpu, suspended=True), plan=plan_cm())
    assert condition(queued, "Stalled")[0] == "False", "a Job a queue holds suspended waits its turn"


def test_a_missing_data_claim_stalls_before_any_job_is_created():
    d = run(view(), missing_claims=("bars",))
    assert not created_jobs(d)
    assert condition(d, "Stalled") == ("True", "InvalidSpec") and "bars" in d.status.message


def test_an_unusable_spec_stalls_with_the_field_named():
    bad = PipelineView(namespace="ns", name="demo", uid="u", generation=4, spec=None, spec_error="field 'spec.targets.topN': must be >= 1",
                       status=PipelineStatus())
    d = decide(bad, Observed(), CONFIG, NOW)
    assert not d.create and condition(d, "Stalled") == ("True", "InvalidSpec") and "spec.targets.topN" in d.status.message
    assert d.status.observed_generation == 4


def test_last_transition_time_moves_only_when_a_condition_changes_status():
    first = run(view())
    later = run(view(status=first.status), job(Stage.RANK, active=1), now=NOW + timedelta(minutes=3))
    assert [c.last_transition_time for c in later.status.conditions] == [c.last_transition_time for c in first.status.conditions]


def test_decide_is_deterministic():
    st = status_after(Stage.RANK, Stage.SELECT, Stage.PLAN)
    a = run(view(status=st), done(Stage.CPU, "lightgbm", n=4), plan=plan_cm())
    b = run(view(status=st), done(Stage.CPU, "lightgbm", n=4), plan=plan_cm())
    assert a == b


# ---- names and Job shape --------------------------------------------------------------------------


def test_job_names_are_deterministic_dns_safe_and_hashed_when_long():
    short = job_name("demo", "r0123456789", Stage.CPU, "quantile_lightgbm", 0)
    assert short == "demo-r0123456789-cpu-quantile-lightgbm-0"
    long = job_name("a-very-long-pipeline-name-that-goes-on-and-on", "r0123456789", Stage.CPU, "tab_transformer", 12)
    assert len(long) <= MAX_JOB_NAME and long == job_name("a-very-long-pipeline-name-that-goes-on-and-on", "r0123456789", Stage.CPU, "tab_transformer", 12)
    assert long != job_name("a-very-long-pipeline-name-that-goes-on-and-on", "r0123456789", Stage.CPU, "tab_transformer", 13)


def test_stage_jobs_carry_labels_owner_no_api_token_and_fail_fast_on_bad_input():
    d = run(view(spec(**{"stages.rank.podMetadata": {"labels": {"cost-center": "ml"}, "annotations": {"sidecar": "no"}},
                         "serviceAccountName": "jobs", "priorityClassName": "batch-low"})))
    [rank] = created_jobs(d).values()
    labels = rank["metadata"]["labels"]
    assert {k: labels[k] for k in ("trainpipe.io/pipeline", "trainpipe.io/run", "trainpipe.io/stage", "trainpipe.io/family", "trainpipe.io/attempt")} == {
        "trainpipe.io/pipeline": "demo", "trainpipe.io/run": RUN, "trainpipe.io/stage": "rank", "trainpipe.io/family": "all", "trainpipe.io/attempt": "0"}
    template = rank["spec"]["template"]
    assert template["metadata"]["labels"]["cost-center"] == "ml" and template["metadata"]["labels"]["trainpipe.io/run"] == RUN
    assert template["metadata"]["annotations"] == {"sidecar": "no"}
    assert rank["metadata"]["ownerReferences"][0]["uid"] == "uid-1"
    pod_spec = template["spec"]
    assert pod_spec["automountServiceAccountToken"] is False and pod_spec["serviceAccountName"] == "jobs" and pod_spec["priorityClassName"] == "batch-low"
    rules = rank["spec"]["podFailurePolicy"]["rules"]
    assert rules[0]["action"] == "FailJob" and 2 in rules[0]["onExitCodes"]["values"] and 1 not in rules[0]["onExitCodes"]["values"]
    container = pod_spec["containers"][0]
    env = {e["name"]: e for e in container["env"]}
    assert env["TRAINPIPE_CPUS"]["valueFrom"]["resourceFieldRef"]["resource"] == "limits.cpu"
    # The spec travels as a file from the run's immutable ConfigMap, created before the Job in the same pass.
    [spec_map] = [m for m in d.create if m["kind"] == "ConfigMap"]
    assert d.create.index(spec_map) < d.create.index(rank) and spec_map["immutable"] is True
    assert spec_map["metadata"]["name"] == f"demo-{RUN}-spec" and spec_map["metadata"]["ownerReferences"][0]["uid"] == "uid-1"
    spec_json = json.loads(spec_map["data"]["spec.json"])
    assert spec_json["data"]["dir"] == "/data/example" and "volume" not in spec_json["data"]
    assert d.status.spec_digest == hashlib.sha256(spec_map["data"]["spec.json"].encode()).hexdigest()
    assert container["args"][container["args"].index("--spec-file") + 1] == "/etc/trainpipe/spec/spec.json" and "--spec-json" not in container["args"]
    assert container["args"][container["args"].index("--output-dir") + 1] == f"/artifacts/ns/demo/{RUN}"
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    assert mounts["data"]["readOnly"] is True and mounts["data"]["mountPath"] == "/data"
    assert mounts["spec"] == {"name": "spec", "mountPath": "/etc/trainpipe/spec", "readOnly": True}
    volumes = {v["name"]: v for v in pod_spec["volumes"]}
    assert volumes["spec"]["configMap"]["name"] == f"demo-{RUN}-spec"
    seen = run(view(status=d.status), spec_map_exists=True, artifacts_claim_exists=False)
    assert [m["kind"] for m in seen.create] == ["PersistentVolumeClaim", "Job"], "a spec ConfigMap seen is not created again"


# ---- schedules and kept runs ----------------------------------------------------------------------

NIGHTLY = {"schedule": {"cron": "0 2 * * *", "timeZone": "UTC"}}


def _finished(d: Decision) -> PipelineStatus:
    """The status after the run of `d` completed (every stage recorded as succeeded)."""
    stages = {s.value: StageStatus(succeeded=1, outcome="Succeeded", started_at="2026-12-01T12:00:00Z", finished_at="2026-12-01T12:30:00Z") for s in Stage}
    return d.status.model_copy(update={"stages": stages, "finished_at": "2026-12-01T12:30:00Z"})


def test_a_schedule_starts_a_new_run_at_each_fire_time_even_with_an_unchanged_spec():
    s = spec(**NIGHTLY)
    created = run(view(s))
    assert created.status.run_id == run_id(s), "creating a scheduled pipeline runs it once now, as any pipeline"
    assert created.status.schedule.next_run_at == "2026-12-02T02:00:00Z"
    assert created.requeue_after == pytest.approx(600), "first the rank Job's start timeout"
    ranking = run(view(s, status=created.status), replace(job(Stage.RANK, run=run_id(s), active=1), ready=1))
    assert ranking.requeue_after == pytest.approx(14 * 3600), "its pod runs: next, the fire time"
    quiet = run(view(s, status=_finished(created)), now=NOW + timedelta(hours=13))
    assert quiet.status.run_id == created.status.run_id and not quiet.create
    fired = run(view(s, status=_finished(created)), now=datetime(2026, 12, 2, 2, 0, 30, tzinfo=UTC))
    assert fired.status.run_id == run_id(s, None, "2026-12-02T02:00:00Z") != created.status.run_id
    assert stages_created(fired) == [("rank", "all")]
    assert any(e.reason == "RunStarted" and "schedule fired" in e.message for e in fired.events)
    assert fired.status.schedule.slot == "2026-12-02T02:00:00Z" and fired.status.schedule.next_run_at == "2026-12-03T02:00:00Z"


def test_fire_times_missed_while_the_operator_was_down_start_one_run():
    s = spec(**NIGHTLY)
    created = run(view(s))
    back = run(view(s, status=_finished(created)), now=datetime(2026, 12, 5, 9, 0, tzinfo=UTC))
    assert back.status.schedule.slot == "2026-12-05T02:00:00Z"
    again = run(view(s, status=back.status), now=datetime(2026, 12, 5, 9, 5, tzinfo=UTC))
    assert again.status.run_id == back.status.run_id


@pytest.mark.parametrize("edit", [{"schedule": {"cron": "30 3 * * 1-5", "timeZone": "UTC"}}, {"schedule": None}])
def test_adding_editing_or_removing_a_schedule_never_starts_a_run_by_itself(edit):
    s = spec(**NIGHTLY)
    fired = run(view(s, status=_finished(run(view(s)))), now=datetime(2026, 12, 2, 2, 0, 30, tzinfo=UTC))
    edited = spec(**{**NIGHTLY, **edit}) if edit["schedule"] else spec()
    later = run(view(edited, status=fired.status, generation=2), now=datetime(2026, 12, 2, 9, 0, tzinfo=UTC))
    assert later.status.run_id == fired.status.run_id and not later.delete_jobs


def test_a_schedule_is_read_in_its_time_zone():
    s = spec(schedule={"cron": "0 2 * * *", "timeZone": "Europe/London"})
    summer = datetime(2026, 7, 1, 12, 0, tzinfo=UTC)
    created = run(view(s), now=summer)
    assert created.status.schedule.next_run_at == "2026-07-02T01:00:00Z"  # 02:00 BST


@pytest.mark.parametrize(("schedule", "field"), [({"cron": "every night"}, "schedule.cron"), ({"cron": "0 2 * * *", "timeZone": "Mars/Olympus"}, "schedule.timeZone")])
def test_a_bad_schedule_is_refused_naming_the_field(schedule, field):
    from pydantic import ValidationError

    from trainpipe.contract.pipeline import format_validation_error

    with pytest.raises(ValidationError) as err:
        PipelineSpec.model_validate({"schedule": schedule})
    assert field.replace("timeZone", "time_zone") in format_validation_error(err.value).replace("timeZone", "time_zone")


def test_run_records_are_kept_newest_first_and_bounded_by_keep_runs():
    s = spec(keepRuns=2)
    status = status_after(*[st for st in Stage if st is not Stage.REPORT])
    finished = run(view(s, status=status), done(Stage.REPORT), plan=plan_cm())
    assert [(r.run_id, r.outcome) for r in finished.status.history] == [(RUN, "Succeeded")]
    second = run(view(s, status=finished.status, rerun="b"))
    third = run(view(s, status=second.status, rerun="c"))
    fourth = run(view(s, status=third.status, rerun="d"))
    assert [r.outcome for r in fourth.status.history] == ["Superseded", "Superseded"]
    assert [r.run_id for r in fourth.status.history] == [run_id(s, "c"), run_id(s, "b")]


def test_the_report_job_prunes_run_folders_beyond_keep_runs():
    st = status_after(*[s for s in Stage if s is not Stage.REPORT])
    d = run(view(spec(keepRuns=3), status=st), plan=plan_cm())
    [report] = created_jobs(d).values()
    args = report["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[0] == "report" and args[args.index("--keep-runs") + 1] == "3" and args[args.index("--reuse-dir") + 1] == "/artifacts/ns/demo"


def test_the_report_job_never_prunes_the_last_good_run_or_a_pinned_one():
    from trainpipe.contract.status import RunRef

    st = status_after(*[s for s in Stage if s is not Stage.REPORT],
                      last_succeeded_run=RunRef(run_id="r-good", models_path="/artifacts/demo/r-good/models", finished_at="2026-11-30T10:00:00Z"))
    pinned = parse_pipeline({"metadata": {"name": "demo", "namespace": "ns", "annotations": {"trainpipe.io/pin": "r-audit, r-q3,r-audit"}},
                             "spec": BASE})
    d = run(replace(view(status=st), pinned_runs=pinned.pinned_runs), plan=plan_cm())
    [report] = created_jobs(d).values()
    args = report["spec"]["template"]["spec"]["containers"][0]["args"]
    assert [args[i + 1] for i, a in enumerate(args) if a == "--pin"] == ["r-audit", "r-q3", "r-good"]


def _args_of(d: Decision, stage: Stage) -> list[str]:
    [job] = [j for j in created_jobs(d).values() if j["metadata"]["labels"][LABEL_STAGE] == stage.value]
    return job["spec"]["template"]["spec"]["containers"][0]["args"]


@pytest.mark.parametrize(("last", "expected"), [
    ("r-good", ["--previous-run", "/artifacts/ns/demo/r-good"]),  # that run's folder, as the Jobs see the volume
    (None, []),  # the pipeline's first run: select grades its stability on resamples only
    (RUN, []),  # this run itself (its report went through): never compared with itself
])
def test_the_select_job_compares_with_the_last_succeeded_runs_folder(last, expected):
    from trainpipe.contract.status import RunRef

    ref = None if last is None else RunRef(run_id=last, models_path=f"/artifacts/ns/demo/{last}/models", finished_at="2026-11-30T10:00:00Z")
    args = _args_of(run(view(status=status_after(Stage.RANK, last_succeeded_run=ref))), Stage.SELECT)
    at = [i for i, a in enumerate(args) if a == "--previous-run"]
    assert [a for i in at for a in args[i:i + 2]] == expected
    assert args[0] == "select" and "--unit-index" in args
    # Only select reads it: the other stages' commands do not take it.
    assert "--previous-run" not in _args_of(run(view(status=status_after(Stage.RANK, Stage.SELECT, last_succeeded_run=ref))), Stage.PLAN)


def test_environment_defaults_apply_only_where_the_pipeline_says_nothing():
    env = OperatorConfig(cpu_image="jobs-cpu:1", gpu_image="jobs-gpu:1", cpu_node_selector={"trainpipe.io/pool": "cpu"},
                         gpu_node_selector={"trainpipe.io/pool": "gpu"}, job_service_account="trainpipe-jobs",
                         gpu_tolerations=({"key": "gpu-vendor", "operator": "Exists", "effect": "NoSchedule"},))
    st = status_after(Stage.RANK, Stage.SELECT, Stage.PLAN, Stage.CPU)
    [gpu] = created_jobs(run(view(status=st), plan=plan_cm(), config=env)).values()
    pod = gpu["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == {"trainpipe.io/pool": "gpu"} and pod["serviceAccountName"] == "trainpipe-jobs"
    assert {"key": "gpu-vendor", "operator": "Exists", "effect": "NoSchedule"} in pod["tolerations"]
    assert {"key": GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"} in pod["tolerations"]
    [rank] = created_jobs(run(view(), config=env)).values()
    assert rank["spec"]["template"]["spec"]["nodeSelector"] == {"trainpipe.io/pool": "cpu"}
    own = spec(**{"stages.rank.nodeSelector": {"team": "quant"}, "serviceAccountName": "mine"})
    [ranked] = created_jobs(run(view(own), config=env)).values()
    assert ranked["spec"]["template"]["spec"]["nodeSelector"] == {"team": "quant"} and ranked["spec"]["template"]["spec"]["serviceAccountName"] == "mine"


def test_a_hand_off_is_one_event_naming_the_stage_that_ended_and_the_jobs_of_the_next():
    st = status_after(selected=None, plan=False)
    st.stages[Stage.RANK.value] = StageStatus(started_at="2026-12-01T11:00:00Z")  # rank running, as the pass that created it wrote
    rank = done(Stage.RANK)
    d = run(view(status=st), rank, pods=(pod(rank, message='{"selected": 3}'),))
    assert [(e.type, e.reason) for e in d.events] == [("Normal", "StageSucceeded")]
    assert "stage rank of run" in d.events[0].message and "stage select: 1 Job(s), 3 unit(s)" in d.events[0].message


def test_events_fold_only_a_stage_end_into_what_follows_it_in_the_same_pass():
    from trainpipe_operator.policies.passes import EventIntent, Pass

    p = Pass.__new__(Pass)
    p.events = []
    p.event("Normal", Reason.RUN_STARTED, "run r1 started")
    p.event("Normal", Reason.JOBS_CREATED, "stage rank: 1 Job(s)")
    p.event("Normal", Reason.STAGE_SUCCEEDED, "stage rank succeeded")
    p.event("Normal", Reason.JOBS_CREATED, "stage select: 1 Job(s)")
    p.event("Normal", Reason.STAGE_SUCCEEDED, "stage report succeeded")
    p.event("Normal", Reason.SUCCEEDED, "run r1 succeeded")
    p.event("Warning", Reason.STAGE_FAILED, "stage cpu failed")
    assert p.events == [
        EventIntent("Normal", "RunStarted", "run r1 started"),
        EventIntent("Normal", "JobsCreated", "stage rank: 1 Job(s)"),
        EventIntent("Normal", "StageSucceeded", "stage rank succeeded; stage select: 1 Job(s)"),
        EventIntent("Normal", "Succeeded", "stage report succeeded; run r1 succeeded"),
        EventIntent("Warning", "StageFailed", "stage cpu failed"),
    ]


GROUPED = spec(**{"stages.rank.targetGroups": 3})


def test_a_rank_in_target_groups_is_an_indexed_job_of_a_unit_per_group_then_one_job_that_merges_them():
    from trainpipe_operator.naming import AGGREGATE, GROUPS
    from trainpipe_operator.observed import PodRead, pod_read

    started = status_after(selected=None, plan=False)
    first = run(view(GROUPED, status=started))
    units = created_jobs(first)
    assert list(units) == [job_name("demo", run_id(GROUPED), "rank", GROUPS, 0)]
    groups = next(iter(units.values()))
    assert groups["spec"]["completionMode"] == "Indexed" and groups["spec"]["completions"] == 3 and "backoffLimitPerIndex" in groups["spec"]
    args = groups["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[:1] == ["rank"] and args[args.index("--unit-index") + 1] == "$(JOB_COMPLETION_INDEX)" and "--aggregate" not in args
    assert args[args.index("--groups") + 1] == "3", "the spec file leaves stages out: the Job says how many groups"

    grouped_run = run_id(GROUPED)
    scored = replace(observed_job(Stage.RANK, GROUPS, run=grouped_run, completions=3, succeeded=3, complete=True), indexed=True)
    assert pod_read([scored], grouped_run, started) is PodRead.NONE, "the units report nothing the status keeps: no pod read"
    second = run(view(GROUPED, status=started), scored)
    merge = created_jobs(second)
    assert list(merge) == [job_name("demo", grouped_run, "rank", AGGREGATE, 0)], "the merge starts once every group is scored, and nothing else"
    spec_of = next(iter(merge.values()))["spec"]
    merge_args = spec_of["template"]["spec"]["containers"][0]["args"]
    assert spec_of["completionMode"] == "NonIndexed" and spec_of["completions"] == 1 and "--aggregate" in merge_args and "--unit-index" not in merge_args
    assert merge_args[merge_args.index("--groups") + 1] == "3"
    assert second.status.stages["rank"].outcome is None

    merged = observed_job(Stage.RANK, AGGREGATE, run=grouped_run, completions=1, succeeded=1, complete=True)
    third = run(view(GROUPED, status=started), scored, merged, pods=(pod(merged, message='{"selected": 2}'),))
    assert third.status.stages["rank"].outcome == "Succeeded" and third.status.selected_targets == 2, "the report is the merging Job's"
    assert stages_created(third) == [("select", "all")]


def test_one_target_group_is_todays_single_rank_job():
    d = run(view(spec(**{"stages.rank.targetGroups": 1}), status=status_after(selected=None, plan=False)))
    rank = next(iter(created_jobs(d).values()))
    assert rank["metadata"]["name"] == job_name("demo", RUN, "rank", None, 0) and rank["spec"]["completionMode"] == "NonIndexed"
    assert not {"--unit-index", "--groups"} & set(rank["spec"]["template"]["spec"]["containers"][0]["args"])
