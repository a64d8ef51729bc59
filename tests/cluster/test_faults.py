"""Faults on the real control plane: the operator, the API server, a Job, the plan ConfigMap or a pod dies.

Cost matters here (two cores, shared with the rest of `make test`), so most tests use skipped pods:
the executor completes pods labelled `executor.trainpipe.io/skip` without running them and gives them
the termination messages rank and plan would write, so fan-out still comes from a real-shaped plan.
Where a test must hold a run at a stage, the pipeline names a Kueue queue: the operator then creates
its Jobs suspended and the test admits them, as Kueue would. Two tests run real stage commands on the
example data, because what they check lives in a real process: a deleted Job whose rank process is
running, and a training unit killed mid-way. Each test's docstring says which kind it is.

The module ends with a least-privilege check over every fault test that ran before it: the API
server's audit log must show that, while pods and the API server died around it, the operator (and
any ServiceAccount of a fault test's namespace) asked for nothing the chart's RBAC does not grant,
was never denied, and never touched Secrets. Faults drive the operator down paths a clean run never
takes (restarts, relists, re-creations), which is where a stray verb would hide.
"""

from __future__ import annotations

import json
import os
import random
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import urllib3

from pod_mutations import pod_mutation
from test_operator import SKIP, SKIP_MESSAGE, JobRecorder, apply, artifacts_dir, get, jobs, pods, stage_of
from trainpipe.contract.names import LABEL_ATTEMPT, LABEL_FAMILY, LABEL_RUN, LABEL_STAGE
from trainpipe.contract.stages import STAGES
from trainpipe.families.registry import load_model
from trainpipe.io.atomic import FAULT_ACTION_ENV, FAULT_ENV, FaultAction, FaultPoint, stale_temps
from trainpipe.io.layout import Layout
from trainpipe.io.requests import read_worker_request
from trainpipe.training.metrics_file import METRICS_FILE
from trainpipe_localcluster import (
    BATCH,
    CORE,
    OPERATOR_NAMESPACE,
    OPERATOR_SERVICE_ACCOUNT,
    ApiError,
    Cluster,
    Kube,
    OperatorProcess,
    auditlog,
    condition,
    pipeline_manifest,
    pipelines_path,
    wait_condition,
    wait_for,
)
from trainpipe_localcluster.controlplane import crash_and_restart_apiserver, pid_of, wait_no_running_pods
from trainpipe_operator.manifests import CONTAINER

SEED = int(os.environ.get("TRAINPIPE_FAULT_SEED", "11"))  # the kill moments; a failure message names it
QUEUE = "faults"  # any name: there is no Kueue here, the test admits the Jobs itself
DIGEST = "d1" * 32
UNITS = {"lightgbm": 2, "xgboost": 2, "mlp": 2}  # 2 CPU Jobs and 1 GPU Job of 2 units each
JOBS_PER_RUN = 1 + 1 + 1 + 2 + 1 + 1  # rank, select (one Indexed Job), plan, a Job per family, report
REAL_RUN_TIMEOUT = 420
# Shorter than one pass of the operator (read, list, write): nearly every status write meets an edit.
EDIT_INTERVAL = 0.01
API_RESTARTED: list[str] = []  # namespaces of tests that restarted the API server (see the RBAC check below)
COMPLETION_INDEX = "batch.kubernetes.io/job-completion-index"
REPO = Path(__file__).resolve().parents[2]
HOLD_GATE = "faults.trainpipe.io/hold"  # the scheduling gate the API-restart test holds its pods with
RUNNING = {s.value for s in STAGES.order}  # status.stage while a run is between its first and last stage
# The identity of the `operator` fixture's process (operator_kubeconfig acts as this ServiceAccount).
OPERATOR_USER = auditlog.service_account(OPERATOR_NAMESPACE, OPERATOR_SERVICE_ACCOUNT)


@dataclass
class FaultAudit:
    """The fault tests' share of the API server's audit log: where it stood when the module began, and
    each fault test's namespace with whether that test passed."""

    log: Path
    mark: auditlog.AuditMark
    namespaces: dict[str, bool] = field(default_factory=dict)

    def requests(self) -> list[auditlog.Request]:
        """The operator's requests in the fault tests' namespaces, its cluster-scoped ones, and every request of
        a ServiceAccount of those namespaces (the Jobs' pods), since the module began.

        Cluster-scoped requests cannot be told apart by namespace: an operator of another test module running
        at the same time, under the same ServiceAccount, would add its own (the same code, the same RBAC).
        """
        mine = tuple(f"{auditlog.SERVICE_ACCOUNT_PREFIX}{ns}:" for ns in self.namespaces)
        return [r for r in self.mark.read(self.log, user=lambda u: u == OPERATOR_USER or u.startswith(mine))
                if r.user != OPERATOR_USER or r.namespace in self.namespaces or not r.namespace]


@pytest.fixture(scope="module")
def fault_audit(cluster: Cluster) -> FaultAudit:
    log = auditlog.log_path(cluster.state)
    assert log.exists(), f"{log} is missing: the local control plane runs without its audit policy (localcluster/up.sh)"
    return FaultAudit(log, auditlog.AuditMark.now(log))


@pytest.fixture(autouse=True)
def _audited(request: pytest.FixtureRequest, fault_audit: FaultAudit) -> Iterator[None]:
    """Records the namespace of each test that runs the operator, for the module's last test to check."""
    if "operator" not in request.fixturenames:
        yield
        return
    namespace = request.getfixturevalue("namespace")
    yield
    call = getattr(request.node, "report_call", None)  # kept by conftest's pytest_runtest_makereport
    fault_audit.namespaces[namespace] = bool(call and call.passed)


def skipped_spec(units: dict[str, int] = UNITS, **spec: Any) -> dict[str, Any]:
    """Every stage's pods skipped; rank reports 2 targets and plan reports `units`, as real ones would."""
    plan = {"planDigest": DIGEST, "units": units, "path": "globals/training_plan/master_training_plan.json"}
    messages = {"rank": {"selected": 2}, "plan": plan}
    stages: dict[str, Any] = {}
    for stage in STAGES.order:
        meta: dict[str, Any] = {"labels": {SKIP: "true"}}
        if stage.value in messages:
            meta["annotations"] = {SKIP_MESSAGE: json.dumps(messages[stage.value])}
        stages[stage.value] = {"podMetadata": meta}
    return {"training": {"families": list(units)}, "stages": stages, "data": {"volume": None}, **spec}


def admit(kube: Kube, namespace: str, stages: set[str]) -> int:
    """Unsuspend the held Jobs of `stages`, as Kueue admits queued work; how many were admitted."""
    admitted = 0
    for job in kube.get(f"{BATCH}/namespaces/{namespace}/jobs")["items"]:
        if job["spec"].get("suspend") and stage_of(job) in stages:
            kube.patch(f"{BATCH}/namespaces/{namespace}/jobs/{job['metadata']['name']}", {"spec": {"suspend": False}})
            admitted += 1
    return admitted


def admit_until_ready(kube: Kube, namespace: str, name: str, timeout: float = 120) -> None:
    def ready() -> bool:
        admit(kube, namespace, {s.value for s in STAGES.order})
        cond = condition(get(kube, namespace, name), "Ready")
        return bool(cond and cond["status"] == "True")

    wait_for(f"{namespace}/{name} Ready while admitting its Jobs", ready, timeout=timeout, interval=0.5)


def held_at(kube: Kube, namespace: str, name: str, stage: str) -> list[dict[str, Any]]:
    """Admit every Job before `stage`; return `stage`'s Jobs once they all exist, still held."""
    before = {s.value for s in STAGES.order[: [s.value for s in STAGES.order].index(stage)]}

    def probe() -> list[dict[str, Any]]:
        admit(kube, namespace, before)
        mine = [j for j in jobs(kube, namespace, name) if stage_of(j) == stage]
        return mine if mine and all(j["spec"].get("suspend") for j in mine) else []

    return wait_for(f"{namespace}/{name} held at stage {stage}", probe, timeout=240, interval=0.5)


def wait_ready(kube: Kube, namespace: str, name: str, timeout: float) -> None:
    """Wait for Ready, failing at once (with the reason) if the run stalls instead."""
    def settled() -> dict[str, Any] | None:
        obj = get(kube, namespace, name)
        return obj if any((condition(obj, c) or {}).get("status") == "True" for c in ("Ready", "Stalled")) else None

    obj = wait_for(f"{namespace}/{name} Ready or Stalled", settled, timeout=timeout, interval=0.5)
    assert (condition(obj, "Ready") or {}).get("status") == "True", f"the run stalled: {obj['status'].get('message')}"


def added_counts(recorded: list[dict[str, Any]]) -> Counter[str]:
    return Counter(j["metadata"]["name"] for j in recorded)


def counters_match_jobs(kube: Kube, namespace: str, name: str) -> list[str]:
    """Each stage's status counters against its Jobs' own counts; the mismatches, in words."""
    obj = get(kube, namespace, name)
    status = obj["status"]
    finished: Counter[str] = Counter()
    for job in jobs(kube, namespace, name):
        assert job["metadata"]["labels"][LABEL_RUN] == status["runId"]
        finished[stage_of(job)] += min(job["status"].get("succeeded", 0), job["spec"]["completions"])
    wrong = []
    for stage in STAGES.order:
        recorded = status["stages"].get(stage.value, {})
        if recorded.get("outcome") != "Succeeded" or recorded.get("succeeded", 0) != finished[stage.value]:
            wrong.append(f"{name} stage {stage.value}: status {recorded} but Jobs report {finished[stage.value]} succeeded")
    done, total = status["progress"].split("/")
    if done != total:
        wrong.append(f"{name}: progress {status['progress']}")
    return wrong


def test_sigkill_at_random_moments_during_twenty_pipelines_loses_nothing_and_duplicates_no_job(
        kube: Kube, namespace: str, operator: OperatorProcess) -> None:
    """Skipped pods. The operator is SIGKILLed 10 times at seeded random moments while 20 pipelines
    run (two more are created before each kill, so every kill meets pipelines at different stages)."""
    rng = random.Random(SEED)
    recorder = JobRecorder(kube, namespace)
    names = [f"p{i:02d}" for i in range(20)]
    kills = []
    for cycle in range(10):
        for name in names[2 * cycle: 2 * cycle + 2]:
            apply(kube, namespace, pipeline_manifest(name, validate=False, **skipped_spec()))
        up = rng.uniform(0.2, 3.0)
        time.sleep(up)
        stages = Counter((get(kube, namespace, n).get("status") or {}).get("stage") or "new" for n in names[: 2 * cycle + 2])
        operator.kill()  # SIGKILL: no cleanup, whatever pass was half done stays half done
        down = rng.uniform(0.0, 1.0)
        kills.append((f"kill {cycle} after {up:.2f}s up, {down:.2f}s down, stages {dict(stages)}", bool(set(stages) & RUNNING)))
        time.sleep(down)
        operator.start()
    story = f"seed {SEED}:\n" + "\n".join(line for line, _ in kills)
    for name in names:
        wait_condition(kube, namespace, name, "Ready", timeout=180)
    recorded = recorder.stop()
    assert not JobRecorder.duplicates(recorded), story
    assert sorted(added_counts(recorded).values()) == [1] * len(names) * JOBS_PER_RUN, story
    wrong = [w for name in names for w in counters_match_jobs(kube, namespace, name)]
    assert not wrong, story
    assert sum(mid for _, mid in kills) >= len(kills) // 2, f"too few kills met a pipeline mid-run: {story}"


def test_a_deleted_running_job_is_recreated_once_and_never_in_a_loop(kube: Kube, namespace: str, operator: OperatorProcess,
                                                                   example_data: Any) -> None:
    """Real rank command in the Job that is deleted (its pod is a running process, which the executor
    kills with the pod); the re-created Job and every later stage use skipped pods, by an edit of
    spec.stages.rank.podMetadata before the delete: a scheduling field, so still the same run."""
    recorder = JobRecorder(kube, namespace)
    spec = skipped_spec()
    rank_skipped = spec["stages"]["rank"]
    spec["stages"]["rank"] = {}
    spec.pop("data")  # the example data: rank runs for real
    apply(kube, namespace, pipeline_manifest("del", **spec))

    def running_rank() -> dict[str, Any] | None:
        return next((p for p in pods(kube, namespace, "del") if stage_of(p) == "rank" and p["status"].get("phase") == "Running"), None)

    pod = wait_for("the rank pod Running", running_rank, timeout=120)
    job = pod["metadata"]["labels"]["job-name"]
    run = get(kube, namespace, "del")["status"]["runId"]
    old_uid = kube.get(f"{BATCH}/namespaces/{namespace}/jobs/{job}")["metadata"]["uid"]
    generation = kube.patch(pipelines_path(namespace, "del"), {"spec": {"stages": {"rank": rank_skipped}}})["metadata"]["generation"]
    wait_for("the edit observed", lambda: get(kube, namespace, "del")["status"].get("observedGeneration") == generation, timeout=60)
    kube.delete(f"{BATCH}/namespaces/{namespace}/jobs/{job}", propagationPolicy="Background")
    wait_condition(kube, namespace, "del", "Ready", timeout=180)
    # A loop would show as the Job being created again and again after the run went on: give it time to.
    time.sleep(5)
    recorded = recorder.stop()
    counts = added_counts(recorded)
    assert counts[job] == 2, f"Job {job} ADDED {counts[job]} times (expected: the original and one re-creation)"
    assert all(n == 1 for name, n in counts.items() if name != job), counts
    assert kube.get(f"{BATCH}/namespaces/{namespace}/jobs/{job}")["metadata"]["uid"] != old_uid
    assert get(kube, namespace, "del")["status"]["runId"] == run
    assert not counters_match_jobs(kube, namespace, "del")


def test_a_deleted_plan_configmap_is_restored_with_the_same_digest_and_the_run_goes_on(
        kube: Kube, namespace: str, operator: OperatorProcess) -> None:
    """Skipped pods, held at the GPU stage through a queue while the ConfigMap is deleted."""
    apply(kube, namespace, pipeline_manifest("plan", validate=False, **skipped_spec(queueName=QUEUE)))
    held_at(kube, namespace, "plan", "cpu")
    path = f"{CORE}/namespaces/{namespace}/configmaps/plan-plan"
    before = kube.get(path)
    assert before["data"]["digest"] == DIGEST
    kube.delete(path)
    admit(kube, namespace, {"cpu"})  # the run goes on; the next passes must put the plan back
    held_at(kube, namespace, "plan", "gpu")

    def restored() -> dict[str, Any] | None:
        try:
            return kube.get(path)
        except ApiError as err:
            if err.status == 404:
                return None
            raise

    after = wait_for("the plan ConfigMap restored", restored, timeout=60)
    assert after["metadata"]["uid"] != before["metadata"]["uid"], "the ConfigMap was never deleted"
    assert after["data"] == before["data"], "the restored plan differs from what the plan Job reported"
    assert get(kube, namespace, "plan")["status"]["plan"]["digest"] == DIGEST
    admit_until_ready(kube, namespace, "plan")
    assert kube.get(path)["data"]["digest"] == DIGEST


class GateKeeper:
    """Lets the test's gated pods go (removes HOLD_GATE) in the background, but those `hold(pod)` keeps.

    A pod the gate still holds is not bound, so the executor has nothing of it to report: the test
    decides which pods may run, and so that none is between bound and reported when the API server dies
    (the executor cannot report one then, and it would stay Pending for ever)."""

    def __init__(self, kube: Kube, namespace: str, hold: Callable[[dict[str, Any]], bool]) -> None:
        self.kube, self.namespace, self.hold = kube, namespace, hold
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.1):
            try:
                for pod in self.kube.get(f"{CORE}/namespaces/{self.namespace}/pods")["items"]:
                    if pod["spec"].get("schedulingGates") and not self.hold(pod):
                        path = f"{CORE}/namespaces/{self.namespace}/pods/{pod['metadata']['name']}"
                        self.kube.patch(path, {"spec": {"schedulingGates": []}})
            except (ApiError, OSError, urllib3.exceptions.HTTPError):  # the API server is down: try again
                continue

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)


def test_the_operator_recovers_by_itself_after_the_api_server_restarts_mid_run(
        cluster: Cluster, kube: Kube, namespace: str, operator: OperatorProcess) -> None:
    """Skipped pods, each held by a scheduling gate (a MutatingAdmissionPolicy of this test) until the
    test lets it go. kube-apiserver is SIGKILLed the moment the CPU stage's last pod has run and the
    operator has created the GPU Job: the Job controller is creating its pods, the operator is writing
    the hand-off, finished pods still carry the Job controller's tracking finalizer. After the restart
    the run must end Ready by itself: every unit run once, no Job created twice, no stage rerun, the
    status counters those of the Jobs. Disturbs other tests on a shared cluster for the few seconds of
    the outage: it is the only test here that does."""
    units = {"lightgbm": 6, "xgboost": 6, "mlp": 6}
    gate = ('Object{spec: Object.spec{schedulingGates: '
            f'[Object.spec.schedulingGates{{name: "{HOLD_GATE}"}}]}}}}')
    with pod_mutation(kube, namespace, f"hold-{namespace}", "true", gate) as mutation:
        sample = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "probe"},
                  "spec": {"containers": [{"name": "c", "image": "none"}]}}
        mutation.wait_active(namespace, sample, lambda pod: bool(pod["spec"].get("schedulingGates")))
        recorder = JobRecorder(kube, namespace)
        last_index = str(units["lightgbm"] - 1)

        def trigger(pod: dict[str, Any]) -> bool:  # the CPU stage's last unit: letting it go hands off to the GPU stage
            return (stage_of(pod) == "cpu" and pod["metadata"]["labels"][LABEL_FAMILY] == "lightgbm"
                    and pod["metadata"]["annotations"][COMPLETION_INDEX] == last_index)

        keeper = GateKeeper(kube, namespace, lambda pod: stage_of(pod) in ("gpu", "report") or trigger(pod))
        try:
            apply(kube, namespace, pipeline_manifest("api", validate=False, **skipped_spec(units)))

            def last_cpu_pod() -> dict[str, Any] | None:
                cpu = [p for p in pods(kube, namespace, "api") if stage_of(p) == "cpu"]
                done = [p for p in cpu if p["status"].get("phase") == "Succeeded"]
                held = [p for p in cpu if trigger(p) and p["spec"].get("schedulingGates")]
                return held[0] if len(done) == sum(n for f, n in units.items() if f != "mlp") - 1 and held else None

            last = wait_for("every CPU pod but one run", last_cpu_pod, timeout=120, interval=0.2)
            # Other tests' running pods would be stranded by the outage: wait for a quiet cluster first.
            wait_no_running_pods(cluster, 60)
            keeper.hold = lambda pod: stage_of(pod) in ("gpu", "report")  # the last CPU pod runs; then the GPU Job comes

            def gpu_job() -> dict[str, Any] | None:
                return next((j for j in jobs(kube, namespace, "api") if stage_of(j) == "gpu"), None)

            job = wait_for("the GPU Job created", gpu_job, timeout=60, interval=0.02)
            pid = operator.pid
            API_RESTARTED.append(namespace)
            # The cluster was quiet just before the last CPU pod was let go: its own wait for that is cut short,
            # so the crash still meets the GPU Job's pods being created (a long wait would let them all be).
            outage = crash_and_restart_apiserver(cluster, quiet_timeout=5)
            assert pid_of(cluster, "kube-apiserver") is not None
            kube.request("GET", "/readyz")
            story = (f"the API server was down {outage:.1f}s, from when GPU Job {job['metadata']['name']} was created "
                     f"(CPU pod {last['metadata']['name']} the last one let go)")
            keeper.hold = lambda pod: False
            wait_ready(kube, namespace, "api", timeout=120)
        finally:
            keeper.stop()
    recorded = recorder.stop()
    assert operator.running and operator.pid == pid, f"the operator had to be restarted; {story}"
    assert operator.get("/healthz")[0] == 200, f"{story}: {operator.log_tail()}"
    final = jobs(kube, namespace, "api")
    assert not JobRecorder.duplicates(recorded), story
    assert sorted(added_counts(recorded).values()) == [1] * JOBS_PER_RUN, f"Jobs ADDED {added_counts(recorded)}; {story}"
    assert {j["metadata"]["uid"] for j in recorded} == {j["metadata"]["uid"] for j in final}, f"a Job was replaced; {story}"
    assert all(j["metadata"]["labels"][LABEL_ATTEMPT] == "0" for j in final), f"a stage was rerun; {story}"
    twins = {}
    for j in final:  # every unit ran, none failed
        ran = Counter((p["metadata"].get("annotations") or {}).get(COMPLETION_INDEX, "0") for p in pods(kube, namespace, "api")
                      if p["metadata"]["labels"].get("job-name") == j["metadata"]["name"] and p["status"].get("phase") == "Succeeded")
        assert set(ran) == {str(i) for i in range(j["spec"]["completions"])} and not j["status"].get("failed"), (
            f"Job {j['metadata']['name']}: pods succeeded per index {dict(ran)}, failed {j['status'].get('failed', 0)}; {story}")
        # The Job controller may run an index twice when the API server dies with its pod create in flight (the
        # create was stored, the answer lost, so it creates another): Kubernetes does not promise one pod per
        # index. A twin is the units' concern (their writes are atomic); the status must still count it once.
        twins.update({f"{j['metadata']['name']}[{i}]": n for i, n in ran.items() if n > 1})
    story += f"; indexes the Job controller ran twice: {twins or 'none'}"
    print(story)
    assert not counters_match_jobs(kube, namespace, "api"), story
    status = get(kube, namespace, "api")["status"]
    assert [r["outcome"] for r in status.get("history", [])] in ([], ["Succeeded"]), f"history {status.get('history')}; {story}"
    for component in ("kube-controller-manager", "kube-scheduler", "kwok-controller", "etcd"):
        assert pid_of(cluster, component) is not None, f"{component} died during the API server's outage"


def test_spec_label_and_annotation_edits_racing_status_writes_are_all_kept(
        kube: Kube, namespace: str, operator: OperatorProcess) -> None:
    """Skipped pods. A client edits the pipeline every EDIT_INTERVAL for the whole run (spec fields
    that do not change the run, labels, annotations), while the operator writes status at every
    hand-off: every edit must survive, and so must the operator's status, written as the run goes."""
    apply(kube, namespace, pipeline_manifest("race", validate=False, **skipped_spec()))
    path = pipelines_path(namespace, "race")
    edits = 0
    stages_seen: set[str] = set()
    start = time.monotonic()
    while True:
        obj = get(kube, namespace, "race")
        stages_seen.add((obj.get("status") or {}).get("stage") or "")
        ready = condition(obj, "Ready")
        if ready and ready["status"] == "True" and edits >= 40:
            break
        assert time.monotonic() - start < 180, f"not Ready after {edits} edits: {obj.get('status')}"
        kube.patch(path, {"metadata": {"labels": {"edit": str(edits)}, "annotations": {f"faults.trainpipe.io/edit-{edits}": "x"}},
                          "spec": {"keepRuns": 2 + edits % 7, "activeDeadlineSeconds": 3600 + edits}})
        edits += 1
        time.sleep(EDIT_INTERVAL)
    assert len(stages_seen - {""}) >= 3, (f"status showed no progress while the edits went on (stages seen: {stages_seen}): "
                                          "the operator's status writes lost every race with the edits")
    final = wait_condition(kube, namespace, "race", "Ready", timeout=60)
    obj = get(kube, namespace, "race")
    meta, spec, status = obj["metadata"], obj["spec"], obj["status"]
    last = edits - 1
    assert meta["labels"]["edit"] == str(last)
    assert not [i for i in range(edits) if f"faults.trainpipe.io/edit-{i}" not in meta["annotations"]], "annotations lost"
    assert (spec["keepRuns"], spec["activeDeadlineSeconds"]) == (2 + last % 7, 3600 + last), "a spec edit was lost"
    assert status["observedGeneration"] == meta["generation"] == final["observedGeneration"]
    assert not [r for r in status.get("history", []) if r["outcome"] != "Succeeded"], "an edit restarted the run"
    assert not counters_match_jobs(kube, namespace, "race")


def _group(pgid: int) -> dict[int, tuple[str, list[str]]]:
    """The processes of process group `pgid` (a pod's container, as the executor starts it): pid -> (state, argv)."""
    out = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            argv = (stat.parent / "cmdline").read_bytes().decode(errors="replace").split("\0")
        except OSError:
            continue
        if int(fields[2]) == pgid:
            out[int(stat.parent.name)] = (fields[0], argv)
    return out


def test_a_training_pod_killed_inside_its_model_write_is_retried_and_leaves_no_half_written_model(
        cluster: Cluster, kube: Kube, namespace: str, operator: OperatorProcess, example_data: Any) -> None:
    """Real rank, select, plan and CPU training on the example data (the kill must meet a real process
    writing real files); the report is skipped. One kill only: a real run costs a minute.

    The first pod of lightgbm's unit 0 gets, as the API server admits it (a MutatingAdmissionPolicy of this
    test: no field of the spec or the operator), the atomic writers' fault point with the stop action: its
    training worker stops itself inside the model's folder write (the model saved in the temp folder,
    metrics.json half written, nothing renamed). The test sees it stopped there, then SIGKILLs the whole
    container, as a node or the OOM killer would. The policy is unbound once that pod exists, so the retry
    runs as any pod does. The pods run this checkout's jobs package, whose fault points are under test,
    whichever checkout's venv the executor was started from."""
    index, family = "0", "lightgbm"
    condition = (f"object.metadata.labels['{LABEL_STAGE}'] == 'cpu' && object.metadata.labels['{LABEL_FAMILY}'] == '{family}'"
                 f" && object.metadata.annotations['{COMPLETION_INDEX}'] == '{index}'")
    fault_env = {FAULT_ENV: f"{FaultPoint.TEMP_WRITTEN}:/models/", FAULT_ACTION_ENV: FaultAction.STOP,
                 "PYTHONPATH": str(REPO / "jobs")}
    env = ", ".join(f'Object.spec.containers.env{{name: "{k}", value: "{v}"}}' for k, v in fault_env.items())
    apply_env = f'Object{{spec: Object.spec{{containers: [Object.spec.containers{{name: "{CONTAINER}", env: [{env}]}}]}}}}'
    with pod_mutation(kube, namespace, f"fault-{namespace}", condition, apply_env) as mutation:
        apply(kube, namespace, pipeline_manifest("kill", targets={"topN": 2},
                                                 stages={"report": {"podMetadata": {"labels": {SKIP: "true"}}}}))

        def first_pod() -> dict[str, Any] | None:
            return next((p for p in pods(kube, namespace, "kill") if stage_of(p) == "cpu" and p["metadata"]["labels"][LABEL_FAMILY] == family
                         and p["metadata"]["annotations"][COMPLETION_INDEX] == index), None)

        pod = wait_for(f"the first pod of {family} unit {index}", first_pod, timeout=REAL_RUN_TIMEOUT, interval=0.5)
        mutation.unbind()
    given = {e["name"]: e.get("value") for e in pod["spec"]["containers"][0].get("env", [])}
    assert given.items() >= fault_env.items(), f"the fault point was not injected into {pod['metadata']['name']}: {given}"
    job = pod["metadata"]["labels"]["job-name"]

    def stopped_worker() -> tuple[int, Path] | None:
        statuses = (kube.get(f"{CORE}/namespaces/{namespace}/pods/{pod['metadata']['name']}")["status"].get("containerStatuses") or [])
        pgid = int((statuses[0].get("containerID") or "").removeprefix("executor://") or 0) if statuses else 0
        for state, argv in _group(pgid).values() if pgid else ():
            if state == "T" and "trainpipe.training.worker" in argv:  # stopped by its fault point
                return pgid, Path(argv[argv.index("--request") + 1])
        return None

    pgid, request_path = wait_for(f"{family} unit {index}'s worker stopped inside its model write", stopped_worker,
                                  timeout=REAL_RUN_TIMEOUT, interval=0.2)
    request = read_worker_request(request_path)
    model = Layout(Path(request.layout_root)).model_dir(request.units[0].job_id, family)
    [temp] = stale_temps(model)  # what a reader finds now: no model at its path, the new one only in a temp
    assert not model.exists(), f"{model} is in place already: the worker stopped after its model write"
    assert {p.name for p in temp.iterdir()} - {METRICS_FILE}, f"{temp} holds no model file yet: {sorted(temp.iterdir())}"
    os.killpg(pgid, signal.SIGKILL)  # the whole container, as when a node or the OOM killer takes it
    wait_ready(kube, namespace, "kill", timeout=REAL_RUN_TIMEOUT)

    attempts = [p for p in pods(kube, namespace, "kill") if p["metadata"]["labels"].get("job-name") == job
                and p["metadata"]["annotations"][COMPLETION_INDEX] == index]
    exits = sorted(p["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"] for p in attempts)
    assert exits == [0, 137], f"index {index} of {job}: exit codes {exits} (expected the killed pod, then one retry)"
    retry = next(p for p in attempts if p["metadata"]["uid"] != pod["metadata"]["uid"])
    assert not {e["name"] for e in retry["spec"]["containers"][0].get("env", [])} & set(fault_env), "the retry had the fault point too"
    obj = get(kube, namespace, "kill")
    run = artifacts_dir(cluster, namespace, obj["status"], "kill-artifacts")
    assert model.is_dir() and model.is_relative_to(run)
    leftovers = [str(p) for p in run.rglob("*") if p.name.endswith(".tmp") or ".tmp." in p.name or p.name.endswith(".old")]
    assert not leftovers, f"temporary files left behind: {leftovers}"
    units = sorted(p.parent for p in run.glob("models/*/*/metrics.json"))
    assert len(units) == sum(obj["status"]["plan"]["units"].values()) >= 2
    for unit in units:  # every model reads back whole
        load_model(unit)
    for path in run.rglob("*.json"):  # and every file the stages wrote atomically parses
        json.loads(path.read_text())
    for path in run.rglob("*.parquet"):
        pd.read_parquet(path)
    shapes = {tuple(sorted(p.relative_to(u).as_posix() for p in u.rglob("*"))) for u in units if u.name == family}
    assert len(shapes) == 1, f"the killed unit's files differ from the other {family} units': {shapes}"


def test_every_request_of_the_fault_runs_was_granted_by_the_chart_and_none_denied_or_touching_secrets(
        fault_audit: FaultAudit) -> None:
    """Runs last: the audit log of every fault test above that ran, against the chart's RBAC rules read now."""
    if not fault_audit.namespaces:
        pytest.skip("no fault test of this module ran in this session (deselected): nothing to check")
    passed = sorted(ns for ns, ok in fault_audit.namespaces.items() if ok)

    def jobs_made(requests: list[auditlog.Request]) -> set[str]:
        return {r.namespace for r in requests if r.user == OPERATOR_USER and r.rule == ("batch", "jobs", "create") and r.code == 201}

    # Every passed test created its pipeline's Jobs: wait (briefly) for the log to show them all, as the
    # audit backend may write behind the responses; the assertion below says which are missing.
    deadline = time.monotonic() + 30
    while not jobs_made(requests := fault_audit.requests()) >= set(passed) and time.monotonic() < deadline:
        time.sleep(0.5)
    made = jobs_made(requests)
    print("\n" + auditlog.format_summary(auditlog.summarise(requests)))
    assert requests, (f"no request of {OPERATOR_USER} or the fault tests' ServiceAccounts in {fault_audit.log} "
                      f"since the module began (namespaces {sorted(fault_audit.namespaces)}): is the audit policy recording them?")
    assert made >= set(passed), (f"the audit log shows no Job created by {OPERATOR_USER} in {sorted(set(passed) - made)}, "
                                 "whose tests passed and so created Jobs: the log or its reading is missing requests")
    rules = auditlog.chart_rules()
    # A restarted API server answers 403 for a moment, until its RBAC authorizer has read the
    # bindings again: in the restart test's namespace a denial of a verb the chart grants is that
    # moment, not a missing grant (a verb it does not grant fails the check as used-not-granted).
    grants = auditlog.Privileges.of([], rules)
    warming = [r for r in requests if r.code == 403 and r.namespace in API_RESTARTED and grants.covers(r.rule)]
    requests = [r for r in requests if r not in warming]
    privileges = auditlog.Privileges.of(requests, rules)
    print(privileges.summary() + (f"; {len(warming)} denial(s) while the restarted API server warmed up" if warming else ""))
    assert not privileges.problems, (f"during the fault runs ({len(requests)} requests in {len(fault_audit.namespaces)} namespaces), "
                                     f"against {auditlog.RULES_FILE.name}:\n" + "\n".join(privileges.problems))
