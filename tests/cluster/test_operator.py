"""The operator on the real control plane, with exactly its RBAC, running the real stage commands.

Real runs (the executor runs `trainpipe rank|select|plan|train|report` on the example data): the
end-to-end run, failure then retry, suspend then resume, SIGKILL then restart. The Pending-GPU test
skips the pods before the GPU stage (executor skip label, with the termination messages rank and
plan would write) so that it reaches the GPU stage in seconds; the invalid-spec test creates no pod.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import urllib3

from trainpipe.contract.names import GPU_RESOURCE, LABEL_ATTEMPT, LABEL_FAMILY, LABEL_PIPELINE, LABEL_RUN, LABEL_STAGE
from trainpipe_localcluster import (
    BATCH,
    CORE,
    ApiError,
    Cluster,
    Kube,
    OperatorProcess,
    condition,
    pipeline_manifest,
    pipelines_path,
    wait_condition,
    wait_for,
)
from trainpipe_localcluster.executor import SKIP_LABEL as SKIP
from trainpipe_localcluster.executor import SKIP_MESSAGE_ANNOTATION as SKIP_MESSAGE

RUN_TIMEOUT = 420  # a real run of the small test spec takes one to two minutes on two cores


class JobRecorder:
    """Every Job ADDED in a namespace while the test runs: duplicates would show here even if deleted later."""

    def __init__(self, kube: Kube, namespace: str) -> None:
        self.kube, self.namespace = kube, namespace
        self.added: list[dict[str, Any]] = []
        self._stop = threading.Event()
        listing = kube.get(f"{BATCH}/namespaces/{namespace}/jobs")
        self._rv = listing["metadata"]["resourceVersion"]
        self.added += listing["items"]
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                for event in self.kube.watch(f"{BATCH}/namespaces/{self.namespace}/jobs", self._rv, timeout_seconds=5):
                    obj = event["object"]
                    if event["type"] == "ERROR":  # resourceVersion too old (a restarted API server): list again
                        self._relist()
                        break
                    self._rv = obj["metadata"].get("resourceVersion", self._rv)
                    if event["type"] == "ADDED":
                        self.added.append(obj)
            except ApiError as err:
                if err.status == 410:  # the same, answered before the stream began
                    self._relist()
                time.sleep(0.2)
            except (OSError, ValueError, urllib3.exceptions.HTTPError):  # a refused or cut connection (the API server restarting)
                time.sleep(0.2)

    def _relist(self) -> None:
        """Jobs the watch missed, by uid: a Job created and deleted while it was cut would still be missed."""
        listing = self.kube.get(f"{BATCH}/namespaces/{self.namespace}/jobs")
        seen = {j["metadata"]["uid"] for j in self.added}
        self.added += [j for j in listing["items"] if j["metadata"]["uid"] not in seen]
        self._rv = listing["metadata"]["resourceVersion"]

    def stop(self) -> list[dict[str, Any]]:
        self._stop.set()
        self._thread.join(15)
        return self.added

    @staticmethod
    def duplicates(jobs: list[dict[str, Any]]) -> dict[tuple[str, ...], int]:
        keys = Counter(tuple(j["metadata"]["labels"].get(k, "") for k in (LABEL_PIPELINE, LABEL_RUN, LABEL_STAGE, LABEL_FAMILY, LABEL_ATTEMPT))
                       for j in jobs)
        names = Counter(j["metadata"]["uid"] for j in jobs)
        assert all(n == 1 for n in names.values())
        return {k: n for k, n in keys.items() if n > 1}


def apply(kube: Kube, namespace: str, manifest: dict[str, Any]) -> dict[str, Any]:
    return kube.create(pipelines_path(namespace), manifest)


def get(kube: Kube, namespace: str, name: str) -> dict[str, Any]:
    return kube.get(pipelines_path(namespace, name))


def jobs(kube: Kube, namespace: str, name: str) -> list[dict[str, Any]]:
    return kube.get(f"{BATCH}/namespaces/{namespace}/jobs", labelSelector=f"{LABEL_PIPELINE}={name}")["items"]


def pods(kube: Kube, namespace: str, name: str) -> list[dict[str, Any]]:
    return kube.get(f"{CORE}/namespaces/{namespace}/pods", labelSelector=f"{LABEL_PIPELINE}={name}")["items"]


def stage_of(obj: dict[str, Any]) -> str:
    return obj["metadata"]["labels"][LABEL_STAGE]


def times(pod: dict[str, Any]) -> tuple[str, str]:
    term = pod["status"]["containerStatuses"][0]["state"]["terminated"]
    return term["startedAt"], term["finishedAt"]


def artifacts_dir(cluster: Cluster, namespace: str, status: dict[str, Any], claim: str) -> Path:
    """The run's folder (status.outputPath, as pods see it under /artifacts) on this machine."""
    relative = Path(status["outputPath"]).relative_to("/artifacts")
    return cluster.claim_dir(namespace, claim) / relative


def events(kube: Kube, namespace: str, name: str) -> list[str]:
    items = kube.get(f"{CORE}/namespaces/{namespace}/events", fieldSelector=f"involvedObject.name={name}")["items"]
    return [e["reason"] for e in items]


def test_a_pipeline_runs_every_stage_as_jobs_cpu_before_gpu_and_ends_ready(cluster: Cluster, kube: Kube, namespace: str, operator: OperatorProcess,
                                                                          example_data: Any) -> None:
    recorder = JobRecorder(kube, namespace)
    apply(kube, namespace, pipeline_manifest("e2e", training={"families": ["lightgbm", "mlp"]}))
    wait_condition(kube, namespace, "e2e", "Ready", timeout=RUN_TIMEOUT)
    obj = get(kube, namespace, "e2e")
    status = obj["status"]
    done, total = status["progress"].split("/")
    assert status["stage"] == "Done" and done == total and int(total) >= 6
    assert condition(obj, "Reconciling")["status"] == "False" and condition(obj, "Stalled")["status"] == "False"
    assert status["observedGeneration"] == obj["metadata"]["generation"]
    assert status["lastSucceededRun"]["runId"] == status["runId"]

    all_jobs = jobs(kube, namespace, "e2e")
    by_stage = Counter(stage_of(j) for j in all_jobs)
    assert by_stage["rank"] == by_stage["select"] == by_stage["plan"] == by_stage["report"] == 1
    assert by_stage["cpu"] == 1 and by_stage["gpu"] == 1  # one Indexed Job per family
    assert all(j["spec"]["template"]["spec"]["automountServiceAccountToken"] is False for j in all_jobs)
    assert not [j for j in all_jobs if any(k.startswith("kopf.") for k in (j["metadata"].get("annotations") or {}))]
    assert not (obj["metadata"].get("finalizers") or []), "deleting a pipeline must never wait for the operator"

    all_pods = pods(kube, namespace, "e2e")
    cpu = [p for p in all_pods if stage_of(p) == "cpu" and p["status"]["phase"] == "Succeeded"]
    gpu = [p for p in all_pods if stage_of(p) == "gpu" and p["status"]["phase"] == "Succeeded"]
    assert cpu and gpu
    assert {p["spec"]["nodeName"] for p in gpu} <= {"gpu-0", "gpu-1"}
    assert {p["spec"]["nodeName"] for p in cpu}.isdisjoint({"gpu-0", "gpu-1"})
    assert all(p["spec"]["containers"][0]["resources"]["limits"][GPU_RESOURCE] == "1" for p in gpu)
    last_cpu_end = max(times(p)[1] for p in cpu)
    assert min(times(p)[0] for p in gpu) >= last_cpu_end, "a GPU pod started before the last CPU pod ended"

    plan_cm = kube.get(f"{CORE}/namespaces/{namespace}/configmaps/e2e-plan")["data"]
    assert plan_cm["digest"] == status["plan"]["digest"] and plan_cm["run"] == status["runId"]
    assert json.loads(plan_cm["units"]) == status["plan"]["units"]

    out = artifacts_dir(cluster, namespace, status, "e2e-artifacts")
    assert (out / "report.html").stat().st_size > 1000
    # The plan file keeps the snake_case keys plan readers look up, and the digest the operator carried (camelCase
    # termination message → ConfigMap → `train --plan-digest`) is the one computed from that file.
    from trainpipe.contract.plan import plan_digest
    from trainpipe.io.plan_files import read_training_plan

    plan_file = out / "globals" / "training_plan" / "master_training_plan.json"
    raw = json.loads(plan_file.read_text())
    assert raw["metadata"]["run_id"] == status["runId"] and raw["metadata"]["total_jobs"] == len(raw["jobs"]) > 0
    assert {"job_id", "training_type", "model_families", "estimated_samples"} <= set(raw["jobs"][0]) and "by_route" in raw["summary"]
    assert plan_digest(read_training_plan(plan_file)) == plan_cm["digest"]
    metrics = list((out / "models").glob("*/*/metrics.json"))
    assert {m.parent.name for m in metrics} == {"lightgbm", "mlp"}
    assert sum(json.loads(plan_cm["units"]).values()) == len(metrics)
    assert {"RunStarted", "JobsCreated", "StageSucceeded", "Succeeded"} <= set(events(kube, namespace, "e2e"))
    assert not JobRecorder.duplicates(recorder.stop())
    code, text = operator.get("/metrics")
    assert code == 200 and 'trainpipe_pipelines{condition="Ready"} 1.0' in text and "trainpipe_jobs_created_total" in text
    assert operator.get("/healthz")[0] == 200

    # The next run (here: a spec change) grades each target's selection against the last succeeded run's folder,
    # which the operator hands to select; the run folders are separate, so without it every run would be a "first run".
    # It also ranks in two target groups: a unit per group, then the Job that merges them, to the same ranking.
    first = status
    kube.patch(pipelines_path(namespace, "e2e"), {"spec": {"training": {"families": ["lightgbm"]}, "stages": {"rank": {"targetGroups": 2}}}})
    wait_condition(kube, namespace, "e2e", "Ready", timeout=RUN_TIMEOUT, generation=obj["metadata"]["generation"] + 1)
    second = get(kube, namespace, "e2e")["status"]
    assert second["runId"] != first["runId"] and second["lastSucceededRun"]["runId"] == second["runId"]
    selections = list((artifacts_dir(cluster, namespace, second, "e2e-artifacts") / "selection").glob("*/selected_features.json"))
    assert selections
    for path in selections:
        against = json.loads(path.read_text())["stability"]["against_previous"]
        # The folder as the pod saw it (the executor's pods see the claim's host folder where a container sees /artifacts).
        assert against["previous_run"].endswith(first["outputPath"].removeprefix("/artifacts")), against
        assert against["state"] != "UNKNOWN" and against["previous_features"], against
    rank_jobs = {j["metadata"]["name"]: j for j in jobs(kube, namespace, "e2e") if stage_of(j) == "rank"}
    assert sorted(n.rsplit("-", 2)[-2] for n in rank_jobs) == ["aggregate", "groups"], sorted(rank_jobs)
    assert [j["spec"]["completions"] for n, j in sorted(rank_jobs.items())] == [1, 2]
    rankings = [json.loads((artifacts_dir(cluster, namespace, s, "e2e-artifacts") / "ranking" / "target_rankings.json").read_text())
                for s in (first, second)]
    assert rankings[0]["selected"] == rankings[1]["selected"] and second["selectedTargets"] == first["selectedTargets"]


def test_a_failed_unit_stalls_the_run_and_a_retry_reruns_only_what_has_no_outputs(cluster: Cluster, kube: Kube, namespace: str,
                                                                                  operator: OperatorProcess, example_data: Any) -> None:
    from trainpipe.contract.pipeline import PipelineSpec
    from trainpipe.contract.runs import run_id

    # Two targets that carry evidence of skill on these three symbols, so select has two units (fwd_ret_20d does not).
    targets = ["fwd_ret_5d", "fwd_ret_1d"]
    manifest = pipeline_manifest("retry", targets={"auto": True, "include": targets, "topN": 2}, artifacts={"claimName": "models"},
                                 stages={"select": {"backoffLimitPerIndex": 0}})
    kube.create(f"{CORE}/namespaces/{namespace}/persistentvolumeclaims", {
        "apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "models"},
        "spec": {"accessModes": ["ReadWriteMany"], "resources": {"requests": {"storage": "1Gi"}}}})
    wait_for("claim models Bound", lambda: kube.get(f"{CORE}/namespaces/{namespace}/persistentvolumeclaims/models").get("status", {}).get("phase") == "Bound")
    # A real obstacle for one unit: a file where select must create the folder of fwd_ret_1d.
    run = run_id(PipelineSpec.model_validate(manifest["spec"]))
    blocker = cluster.claim_dir(namespace, "models") / namespace / "retry" / run / "selection" / "fwd_ret_1d"
    blocker.parent.mkdir(parents=True)
    blocker.write_text("not a folder\n")

    apply(kube, namespace, manifest)
    stalled = wait_condition(kube, namespace, "retry", "Stalled", timeout=RUN_TIMEOUT)
    obj = get(kube, namespace, "retry")
    assert obj["status"]["runId"] == run and condition(obj, "Ready")["status"] == "False"
    assert "stage select" in stalled["message"] and "retry" in stalled["message"]
    assert obj["status"]["stages"]["select"]["failed"] == 1 and obj["status"]["stages"]["select"]["succeeded"] == 1
    assert not [j for j in jobs(kube, namespace, "retry") if stage_of(j) in ("plan", "cpu", "gpu")], "nothing after a failed stage"
    good = cluster.claim_dir(namespace, "models") / namespace / "retry" / run / "selection" / "fwd_ret_5d" / "selected_features.json"
    before = good.stat().st_mtime_ns

    blocker.unlink()
    kube.patch(pipelines_path(namespace, "retry"), {"metadata": {"annotations": {"trainpipe.io/retry": "1"}}})
    wait_condition(kube, namespace, "retry", "Ready", timeout=RUN_TIMEOUT)
    obj = get(kube, namespace, "retry")
    assert obj["status"]["stages"]["select"]["attempt"] == 1 and obj["status"]["runId"] == run
    assert good.stat().st_mtime_ns == before, "a unit that had its outputs was run again"
    select_jobs = sorted((j["metadata"]["labels"][LABEL_ATTEMPT], j["metadata"]["name"]) for j in jobs(kube, namespace, "retry") if stage_of(j) == "select")
    assert [a for a, _ in select_jobs] == ["1"], "the failed attempt's Job is replaced, not kept beside the new one"
    assert "Retrying" in events(kube, namespace, "retry")


def test_suspend_holds_the_run_and_resume_continues_the_same_run(cluster: Cluster, kube: Kube, namespace: str, operator: OperatorProcess,
                                                                 example_data: Any) -> None:
    apply(kube, namespace, pipeline_manifest("hold", suspend=True))
    wait_condition(kube, namespace, "hold", "Suspended", timeout=60)
    time.sleep(2)
    assert not jobs(kube, namespace, "hold"), "a suspended pipeline creates no Job"
    run = get(kube, namespace, "hold")["status"]["runId"]

    kube.patch(pipelines_path(namespace, "hold"), {"spec": {"suspend": False}})
    wait_for("the rank Job", lambda: jobs(kube, namespace, "hold"), timeout=60)
    kube.patch(pipelines_path(namespace, "hold"), {"spec": {"suspend": True}})
    wait_condition(kube, namespace, "hold", "Suspended", timeout=60)

    def held() -> bool:
        current = jobs(kube, namespace, "hold")
        return all(j["spec"].get("suspend") or any(c["type"] in ("Complete", "Failed") and c["status"] == "True"
                                                   for c in j.get("status", {}).get("conditions") or []) for j in current)
    wait_for("every unfinished Job suspended", held, timeout=60)
    obj = get(kube, namespace, "hold")
    assert obj["status"]["stage"] == "Suspended" and condition(obj, "Reconciling")["status"] == "False"

    kube.patch(pipelines_path(namespace, "hold"), {"spec": {"suspend": False}})
    wait_condition(kube, namespace, "hold", "Ready", timeout=RUN_TIMEOUT)
    assert get(kube, namespace, "hold")["status"]["runId"] == run, "resuming continues the run, it does not start another"


def test_sigkill_of_the_operator_mid_run_loses_nothing_and_duplicates_no_job(cluster: Cluster, kube: Kube, namespace: str,
                                                                            operator: OperatorProcess, example_data: Any) -> None:
    recorder = JobRecorder(kube, namespace)
    apply(kube, namespace, pipeline_manifest("crash", targets={"topN": 2}))
    for stage in ("select", "cpu"):
        wait_for(f"stage {stage}", lambda s=stage: (get(kube, namespace, "crash").get("status") or {}).get("stage") == s, timeout=RUN_TIMEOUT)
        operator.kill()  # SIGKILL: no cleanup, no final status write
        time.sleep(3)  # the run goes on without an operator: Jobs finish, nobody hands off
        operator.start()
    wait_condition(kube, namespace, "crash", "Ready", timeout=RUN_TIMEOUT)
    assert not JobRecorder.duplicates(recorder.stop())
    obj = get(kube, namespace, "crash")
    counted = {s: v["succeeded"] for s, v in obj["status"]["stages"].items() if v["succeeded"]}
    finished = Counter()
    for job in jobs(kube, namespace, "crash"):
        finished[stage_of(job)] += job["status"].get("succeeded", 0)
    assert counted == dict(finished), "status counters disagree with the Jobs"


@pytest.mark.parametrize(("change", "field"), [
    ({"targets": {"topN": 0}}, "spec.targets.topN"),
    ({"stages": {"gpu": {"gpusPerPod": -1}}}, "spec.stages.gpu.gpusPerPod"),
    ({"artifacts": {"claimName": "mine", "size": "5Gi"}}, "spec.artifacts"),
    ({"targets": {"auto": False, "include": []}}, "spec.targets"),
    ({"images": {"pullPolicy": "Sometimes"}}, "spec.images.pullPolicy"),
    ({"stages": {"cpu": {"resources": {"limits": {"cpu": "lots"}}}}}, "spec.stages.cpu.resources.limits"),
])
def test_the_api_server_rejects_an_invalid_spec_naming_the_field(kube: Kube, namespace: str, change: dict[str, Any], field: str) -> None:
    with pytest.raises(ApiError) as err:
        apply(kube, namespace, pipeline_manifest("bad", validate=False, **change))
    assert err.value.status == 422 and field in err.value.message


def test_a_gpu_stage_that_cannot_be_scheduled_says_why_in_status(kube: Kube, namespace: str, operator: OperatorProcess, example_data: Any) -> None:
    plan = {"planDigest": "0" * 64, "units": {"mlp": 2}, "path": "globals/training_plan/master_training_plan.json"}
    skipped = {"labels": {SKIP: "true"}}
    stages = {
        "rank": {"podMetadata": {**skipped, "annotations": {SKIP_MESSAGE: json.dumps({"selected": 1})}}},
        "select": {"podMetadata": skipped},
        "plan": {"podMetadata": {**skipped, "annotations": {SKIP_MESSAGE: json.dumps(plan)}}},
        "gpu": {"gpusPerPod": 4},  # no node has four
    }
    apply(kube, namespace, pipeline_manifest("pending", training={"families": ["mlp"]}, stages=stages))

    def waiting() -> str | None:
        status = get(kube, namespace, "pending").get("status") or {}
        return status.get("message") if "Insufficient nvidia.com/gpu" in (status.get("message") or "") else None

    message = wait_for("the scheduler's reason in status.message", waiting, timeout=120)
    obj = get(kube, namespace, "pending")
    assert obj["status"]["stage"] == "gpu" and condition(obj, "Reconciling")["reason"] == "Unschedulable"
    assert "cannot be scheduled" in message
    gpu_jobs = [j for j in jobs(kube, namespace, "pending") if stage_of(j) == "gpu"]
    assert len(gpu_jobs) == 1 and gpu_jobs[0]["spec"]["completions"] == 2


# (verb, resource[/subresource], allowed) as the operator's ServiceAccount.
ACCESS = [
    ("update", "trainingpipelines.trainpipe.io/status", True),
    ("create", "jobs.batch", True),
    ("patch", "jobs.batch", True),
    ("list", "pods", True),  # by label only: it never reads a pod (or a Job) by name
    ("patch", "trainingpipelines.trainpipe.io", False),  # the spec is the user's: the operator writes status only
    ("update", "trainingpipelines.trainpipe.io", False),
    ("delete", "pods", False),
    ("create", "pods", False),
    ("get", "secrets", False),
    ("delete", "configmaps", False),
    ("delete", "persistentvolumeclaims", False),  # trained models are never deleted by the operator itself
    ("create", "customresourcedefinitions.apiextensions.k8s.io", False),
]


def test_the_operator_account_has_only_what_its_code_uses(cluster: Cluster, namespace: str, operator_kubeconfig: Path) -> None:
    wrong = []
    for verb, resource, allowed in ACCESS:
        name, _, sub = resource.partition("/")
        extra = [f"--subresource={sub}"] if sub else []
        answer = cluster.kubectl("auth", "can-i", verb, name, *extra, "-n", namespace, kubeconfig=operator_kubeconfig, check=False)
        if answer.stdout.strip() != ("yes" if allowed else "no"):
            wrong.append(f"can-i {verb} {resource}: {answer.stdout.strip()} {answer.stderr.strip()}")
    assert not wrong
