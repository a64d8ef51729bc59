"""What GitOps tools and people read from pipelines the real operator runs: kstatus, Argo CD's health, /metrics, the CLI.

One operator run writes every status a reader must tell apart, in seconds: the pods before the stage
under test are skipped by the executor (label executor.trainpipe.io/skip, with the termination message
rank or plan would write), as in test_operator.py's Pending-GPU test. The status objects are kept for
the session, so the kstatus checker (hack/tools/kstatus, sigs.k8s.io/cli-utils' kstatus) and the Argo
CD health check (operator/deploy/argocd-health.lua in Lua 5.1) read exactly the same objects.

`trainpipe status` and `trainpipe logs` run as subprocesses against the cluster's API server with the
official client, as a user would run them. Last, a GitOps retrain for real: Flux's source-controller and
kustomize-controller (hack/tools/flux) sync a local Git repository served over smart HTTP (gitserver.py);
a commit changes the pipeline's spec, the operator starts a new run, and the Kustomization turns Ready
only after the pipeline does.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from trainpipe.contract.names import LABEL_PIPELINE, LABEL_STAGE
from trainpipe_localcluster import (
    CORE,
    ApiError,
    Cluster,
    Kube,
    OperatorProcess,
    pipeline_manifest,
    pipelines_path,
    wait_condition,
    wait_for,
)
from trainpipe_localcluster.executor import SKIP_LABEL as SKIP
from trainpipe_localcluster.executor import SKIP_MESSAGE_ANNOTATION as SKIP_MESSAGE

REPO = Path(__file__).resolve().parents[2]
HEALTH_LUA = REPO / "operator" / "deploy" / "argocd-health.lua"
DASHBOARD = REPO / "operator" / "deploy" / "grafana-dashboard.json"
PLAN_PATH = "globals/training_plan/master_training_plan.json"
TIMEOUT = 120


def skipped(message: dict[str, Any] | str | None = None) -> dict[str, Any]:
    """stages.<stage> whose pods the executor completes without running them, leaving `message` as termination message."""
    meta: dict[str, Any] = {"labels": {SKIP: "true"}}
    if message is not None:
        meta["annotations"] = {SKIP_MESSAGE: message if isinstance(message, str) else json.dumps(message)}
    return {"podMetadata": meta}


def plan_message(units: dict[str, int]) -> dict[str, Any]:
    return {"planDigest": "0" * 64, "units": units, "path": PLAN_PATH}


# rank keeps one target, select runs it, plan reports one lightgbm unit: all without running a pod.
BEFORE_CPU = {"rank": skipped({"selected": 1}), "select": skipped(), "plan": skipped(plan_message({"lightgbm": 2}))}


def get(kube: Kube, namespace: str, name: str) -> dict[str, Any]:
    return kube.get(pipelines_path(namespace, name))


# ---- the statuses the operator writes, collected once per session ----------------------------------------


class Samples:
    """TrainingPipeline objects as the operator left them, by what they show; plus the operator's /metrics text."""

    def __init__(self) -> None:
        self.objects: dict[str, dict[str, Any]] = {}
        self.metrics = ""

    def collect(self, kube: Kube, namespace: str, operator: OperatorProcess) -> Samples:
        if self.objects:
            return self
        create = {
            # Every stage skipped: the run completes, Ready.
            "ready": pipeline_manifest("ready", stages={**BEFORE_CPU, "cpu": skipped(), "report": skipped()}),
            # The CPU pods ask for a pool no node has: Reconciling, waiting on the scheduler.
            "running": pipeline_manifest("running", stages={**BEFORE_CPU, "cpu": {"nodeSelector": {"trainpipe.io/pool": "nowhere"}}}),
            # rank "succeeds" without the report the operator needs: the run stalls (StageFailed).
            "failed": pipeline_manifest("failed", stages={"rank": skipped("not a rank report")}),
            "suspended": pipeline_manifest("suspended", suspend=True),
        }
        for manifest in create.values():
            kube.create(pipelines_path(namespace), manifest)
        wait_condition(kube, namespace, "ready", "Ready", timeout=TIMEOUT)
        wait_condition(kube, namespace, "failed", "Stalled", timeout=TIMEOUT)
        wait_condition(kube, namespace, "suspended", "Suspended", timeout=TIMEOUT)
        wait_for("the running pipeline to wait on the scheduler",
                 lambda: "cannot be scheduled" in ((get(kube, namespace, "running").get("status") or {}).get("message") or ""), timeout=TIMEOUT)
        self.objects = {key: get(kube, namespace, key) for key in create}
        code, self.metrics = operator.get("/metrics")
        assert code == 200
        # A spec edit the operator has not seen yet: with the operator stopped, the status still describes generation 1.
        operator.stop()
        self.objects["unobserved"] = kube.patch(pipelines_path(namespace, "ready"),
                                                {"spec": {"stages": {"cpu": {"resources": {"limits": {"cpu": 2}}}}}})
        return self


_SAMPLES = Samples()


@pytest.fixture
def samples(kube: Kube, namespace: str, operator: OperatorProcess, example_data: Any) -> Samples:
    """The session's status samples, collected by the first test that asks (a fresh namespace and operator)."""
    return _SAMPLES.collect(kube, namespace, operator)


@pytest.fixture(scope="session")
def kstatus_bin(cluster: Cluster) -> Path:
    versions = dict(line.split("=", 1) for line in (REPO / "hack" / "versions.env").read_text().splitlines() if "=" in line and not line.startswith("#"))
    binary = cluster.tools["kubernetes"].parent / f"kstatus-{versions['KSTATUS_VERSION'].strip()}" / "bin" / "kstatus"
    if not binary.exists():
        pytest.fail(f"{binary} is not built: run `hack/build-tools.sh kstatus` (or `make cluster-build`)", pytrace=False)
    return binary


def kstatus(binary: Path, objects: list[dict[str, Any]]) -> list[dict[str, str]]:
    done = subprocess.run([str(binary)], input=json.dumps(objects), capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def argo_health(obj: dict[str, Any]) -> tuple[str, str]:
    lua51 = pytest.importorskip("lupa.lua51", reason="lupa is a dev dependency: pip install -e .[dev]")
    lua = lua51.LuaRuntime(unpack_returned_tuples=True)
    lua.globals().obj = lua.table_from(obj, recursive=True)
    result = lua.execute(HEALTH_LUA.read_text())
    return result["status"], result["message"]


# kstatus and Argo CD verdicts for each sample, and a word each message must hold.
EXPECTED = {
    "ready": ("Current", "Healthy", "succeeded"),
    "running": ("InProgress", "Progressing", "cannot be scheduled"),
    "failed": ("Failed", "Degraded", "termination message"),
    # kstatus reads Ready=False as "not yet": a held run is InProgress to Flux; Argo CD has a word for it.
    "suspended": ("InProgress", "Suspended", "spec.suspend"),
    "unobserved": ("InProgress", "Progressing", "generation 2"),
}


def test_kstatus_reads_the_statuses_the_operator_writes(samples: Samples, kstatus_bin: Path) -> None:
    keys = list(EXPECTED)
    got = dict(zip(keys, kstatus(kstatus_bin, [samples.objects[k] for k in keys])))
    assert {k: v["status"] for k, v in got.items()} == {k: e[0] for k, e in EXPECTED.items()}, got
    assert "cannot be scheduled" in got["running"]["message"]
    assert "termination message" in got["failed"]["message"]
    unobserved = samples.objects["unobserved"]
    assert unobserved["metadata"]["generation"] == 2 and unobserved["status"]["observedGeneration"] == 1
    assert got["unobserved"]["message"] == "TrainingPipeline generation is 2, but latest observed generation is 1"


@pytest.mark.parametrize("key", list(EXPECTED))
def test_the_argo_cd_health_check_reads_the_same_statuses(samples: Samples, key: str) -> None:
    status, message = argo_health(samples.objects[key])
    assert status == EXPECTED[key][1] and EXPECTED[key][2] in message, (status, message)


def test_the_operators_metrics_parse_and_the_dashboard_queries_only_series_it_exports(samples: Samples) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    families = {f.name: f for f in text_string_to_metric_families(samples.metrics)}
    series = {s.name: s for f in families.values() for s in f.samples}
    values = {(s.name, tuple(sorted(s.labels.items()))): s.value for f in families.values() for s in f.samples}
    assert values[("trainpipe_pipelines", (("condition", "Ready"),))] == 1.0
    assert values[("trainpipe_pipelines", (("condition", "Stalled"),))] == 1.0
    assert values[("trainpipe_pipelines", (("condition", "Suspended"),))] == 1.0
    assert values[("trainpipe_pipelines", (("condition", "Reconciling"),))] == 1.0
    assert values[("trainpipe_stage_duration_seconds_count", (("outcome", "Succeeded"), ("stage", "report")))] == 1.0
    assert values[("trainpipe_watch_stalled", ())] == 0.0
    exprs = [t["expr"] for p in json.loads(DASHBOARD.read_text())["panels"] for t in p["targets"]]
    unknown = sorted({m for e in exprs for m in re.findall(r"\btrainpipe_[a-zA-Z0-9_]+\b", e)} - set(series))
    assert not unknown, f"the dashboard queries series a running operator does not export: {unknown}"


# ---- trainpipe status / logs -------------------------------------------------------------------------------


def trainpipe(cluster: Cluster, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(Path(sys.executable).parent / "trainpipe"), *args, "--kubeconfig", str(cluster.kubeconfig)],
                          capture_output=True, text=True, timeout=60, check=False)


def wait_for_pod_logs(kube: Kube, namespace: str, pod: str) -> None:
    """Wait until `kubectl logs` can serve a finished pod: the executor publishes its CRI-format log in a kwok `Logs`
    object named after the pod (the resource is enabled by localcluster/config/kwokctl.yaml.in)."""
    path = f"/apis/kwok.x-k8s.io/v1alpha1/namespaces/{namespace}/logs/{pod}"

    def published() -> bool:
        try:
            return bool(kube.get(path))
        except ApiError as err:
            if err.status == 404 and "the server could not find the requested resource" in err.message:
                pytest.fail("the cluster has no kwok Logs resource: it was started before localcluster/config/kwokctl.yaml.in enabled it; "
                            "restart it (make cluster-down && make cluster-up)", pytrace=False)
            return False

    wait_for(f"the executor to publish the log of {pod}", published, timeout=30)


def test_trainpipe_status_and_logs_explain_a_failed_unit_and_a_waiting_stage(cluster: Cluster, kube: Kube, namespace: str,
                                                                             operator: OperatorProcess, example_data: Any) -> None:
    # cpu really runs: `trainpipe train` for unit 0 and 1 fails at once (the skipped plan stage wrote no plan file).
    kube.create(pipelines_path(namespace), pipeline_manifest("broken", stages={**BEFORE_CPU, "cpu": {"backoffLimitPerIndex": 0}}))
    kube.create(pipelines_path(namespace), pipeline_manifest("waiting", stages={**BEFORE_CPU, "cpu": {"nodeSelector": {"trainpipe.io/pool": "nowhere"}}}))
    wait_condition(kube, namespace, "broken", "Stalled", timeout=TIMEOUT)
    wait_for("waiting to report the scheduler", lambda: "cannot be scheduled" in (get(kube, namespace, "waiting").get("status") or {}).get("message", ""),
             timeout=TIMEOUT)

    shown = trainpipe(cluster, "status", "broken", "-n", namespace)
    assert shown.returncode == 0, shown.stderr
    text = shown.stdout
    assert f"TrainingPipeline {namespace}/broken" in text and "Stalled=True (StageFailed)" in text
    table = {line.split()[0]: line.split() for line in text.splitlines() if line.split() and line.split()[0] in ("rank", "select", "plan", "cpu", "gpu")}
    assert table["rank"][6] == "Succeeded" and table["cpu"][6] == "Failed" and table["gpu"][6] == "not" and int(table["cpu"][5]) >= 1
    assert "Last failure:" in text and "stage cpu (StageFailed)" in text
    assert re.search(r"pod broken-\S+ \(cpu lightgbm unit \d\) exit \d", text), text
    assert "trainpipe logs broken --stage cpu --family lightgbm --unit" in text

    waiting = trainpipe(cluster, "status", "waiting", "-n", namespace)
    assert waiting.returncode == 0 and "Waiting on:" in waiting.stdout and "Reconciling=True (Unschedulable)" in waiting.stdout
    assert re.search(r"pod waiting-\S+ \(cpu lightgbm unit \d\) and 1 more Pending: .*node", waiting.stdout), waiting.stdout

    failed_pods = [p for p in kube.get(f"{CORE}/namespaces/{namespace}/pods", labelSelector=f"{LABEL_PIPELINE}=broken,{LABEL_STAGE}=cpu")["items"]
                   if p["status"].get("phase") == "Failed"]
    assert failed_pods
    for pod in failed_pods:
        wait_for_pod_logs(kube, namespace, pod["metadata"]["name"])
    pod = failed_pods[0]
    index = pod["metadata"]["annotations"]["batch.kubernetes.io/job-completion-index"]
    got = trainpipe(cluster, "logs", "broken", "-n", namespace, "--stage", "cpu", "--family", "lightgbm", "--unit", index, "--tail", "5")
    assert got.returncode == 0, got.stdout + got.stderr
    head, *body = got.stdout.splitlines()
    assert head.startswith(f"==> pod {pod['metadata']['name']} (cpu lightgbm unit {index}; Failed, exit ")
    expected = cluster.pod_log(namespace, pod["metadata"]["name"], pod["spec"]["containers"][0]["name"]).splitlines()[-5:]
    assert [line for line in body if not line.startswith("    termination message:")] == expected
    # kubectl logs reads the same through the API server and kwok.
    direct = cluster.kubectl("logs", "-n", namespace, pod["metadata"]["name"], "--tail", "5")
    assert direct.stdout.splitlines() == expected

    nothing = trainpipe(cluster, "logs", "broken", "-n", namespace, "--stage", "cpu", "--target", "no_such_target")
    assert nothing.returncode == 1 and "no pod of the current run" in nothing.stderr
    missing = trainpipe(cluster, "status", "nope", "-n", namespace)
    assert missing.returncode == 1 and "not found in namespace" in missing.stderr


def test_the_gitops_example_renders_with_kustomize_and_the_api_server_accepts_its_pipelines(cluster: Cluster, namespace: str,
                                                                                          operator_kubeconfig: Path) -> None:
    import yaml

    rendered = cluster.kubectl("kustomize", str(REPO / "examples" / "gitops"))
    docs = list(yaml.safe_load_all(rendered.stdout))
    pipelines = [d for d in docs if d["kind"] == "TrainingPipeline"]
    assert {d["metadata"]["namespace"] for d in docs if d["kind"] != "Namespace"} == {"trainpipe-gitops"} and len(pipelines) == 2
    for doc in pipelines:  # the CRD's schema (CEL included) on the real API server, in the test's namespace
        doc["metadata"]["namespace"] = namespace
        done = subprocess.run([str(cluster.binary("kubectl")), "--kubeconfig", str(cluster.kubeconfig), "apply", "--dry-run=server", "-f", "-"],
                              input=yaml.safe_dump(doc), capture_output=True, text=True, timeout=60, check=False)
        assert done.returncode == 0, done.stderr


# ---- a GitOps retrain through Flux's own controllers -------------------------------------------------------

FLUX_SOURCE = "source.toolkit.fluxcd.io/v1"
FLUX_KUSTOMIZE = "kustomize.toolkit.fluxcd.io/v1"
# As examples/gitops/flux-sync.yaml: plain kstatus reads a pipeline the operator has not written a status
# for yet as Current (no conditions, no observedGeneration), so Flux would pass its health check in the
# moment between apply and the operator's first status write. These CEL rules wait for the Ready condition
# of the current generation instead.
HEALTH_EXPRS = {
    "apiVersion": "trainpipe.io/v1alpha1", "kind": "TrainingPipeline",
    "current": "status.conditions.exists(c, c.type == 'Ready' && c.status == 'True' && c.observedGeneration == metadata.generation)",
    "failed": "status.conditions.exists(c, c.type == 'Stalled' && c.status == 'True' && c.observedGeneration == metadata.generation)",
}


class FluxControllers:
    """Flux's source-controller and kustomize-controller (built by hack/build-tools.sh flux) as local processes.

    They act with the admin kubeconfig and watch every namespace; source-controller serves the artifacts it
    fetches from Git on a loopback port, which kustomize-controller downloads from.
    """

    def __init__(self, cluster: Cluster, bin_dir: Path, state: Path) -> None:
        from trainpipe_localcluster import free_port

        self.procs: list[subprocess.Popen[bytes]] = []
        self.logs: list[Path] = []
        storage = free_port()
        common = ["--log-level=info", "--enable-leader-election=false"]
        argv = {
            "source-controller": [*common, f"--storage-path={state / 'storage'}", f"--storage-addr=127.0.0.1:{storage}",
                                  f"--storage-adv-addr=127.0.0.1:{storage}"],
            "kustomize-controller": [*common, "--no-remote-bases=true"],
        }
        (state / "storage").mkdir(parents=True, exist_ok=True)
        for name, args in argv.items():
            log = state / f"{name}.log"
            self.logs.append(log)
            with open(log, "ab") as out:
                self.procs.append(subprocess.Popen([str(bin_dir / name), *args, f"--metrics-addr=127.0.0.1:{free_port()}",
                                                    f"--health-addr=127.0.0.1:{free_port()}"],
                                                   stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                                   env={"PATH": "/usr/bin:/bin", "KUBECONFIG": str(cluster.kubeconfig), "RUNTIME_NAMESPACE": "flux-system",
                                                        "HOME": str(state)},
                                                   start_new_session=True))

    def check(self) -> None:
        """Fail at once when a controller exited (a bad flag, no CRD) instead of waiting for a timeout."""
        dead = [log.stem for proc, log in zip(self.procs, self.logs) if proc.poll() is not None]
        if dead:
            pytest.fail(f"Flux controller(s) {', '.join(dead)} exited:\n{self.tail()}", pytrace=False)

    def tail(self, lines: int = 60) -> str:
        return "\n".join(f"--- {log.name}\n" + "\n".join(log.read_text(errors="replace").splitlines()[-lines:]) for log in self.logs if log.exists())

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()


@pytest.fixture(scope="session")
def flux(cluster: Cluster) -> Any:
    versions = dict(line.split("=", 1) for line in (REPO / "hack" / "versions.env").read_text().splitlines() if "=" in line and not line.startswith("#"))
    home = cluster.tools["kubernetes"].parent / f"flux-{versions['FLUX_CONTROLLERS_VERSION'].strip()}"
    if not (home / ".stamp").exists():
        pytest.fail(f"Flux's controllers are not built ({home}): run `hack/build-tools.sh flux` (or `make cluster-build`)", pytrace=False)
    for crd in sorted((home / "crds").glob("*.yaml")):
        cluster.apply(crd)
        cluster.kubectl("wait", "--for=condition=Established", "--timeout=60s", "-f", str(crd))
    controllers = FluxControllers(cluster, home / "bin", cluster.state / "flux")
    try:
        yield controllers
    finally:
        controllers.stop()


def flux_ready(kube: Kube, path: str, revision: str | None = None) -> dict[str, Any] | None:
    obj = kube.get(path)
    ready = next((c for c in (obj.get("status") or {}).get("conditions") or [] if c["type"] == "Ready"), None)
    if ready and ready["status"] == "True" and (revision is None or revision in ((obj.get("status") or {}).get("lastAppliedRevision") or "")):
        return obj
    return None


def test_a_commit_retrains_through_flux_and_its_kustomization_is_ready_only_once_the_pipeline_is(
        cluster: Cluster, kube: Kube, namespace: str, operator: OperatorProcess, example_data: Any, flux: FluxControllers,
        tmp_path: Path) -> None:
    import yaml

    from trainpipe_localcluster.gitserver import GitServer, git

    work, repos = tmp_path / "work", tmp_path / "repos"
    work.mkdir()
    repos.mkdir()
    stages = {**BEFORE_CPU, "cpu": skipped(), "report": skipped()}  # a run of seconds: every pod skipped

    def commit(seed: int) -> str:
        (work / "kustomization.yaml").write_text(yaml.safe_dump({"apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
                                                                "resources": ["pipeline.yaml"]}))
        (work / "pipeline.yaml").write_text(yaml.safe_dump(pipeline_manifest("retrain", stages=stages, seed=seed)))
        git(work, "add", ".")
        git(work, "commit", "-q", "-m", f"retrain with seed {seed}")
        git(work, "push", "-q", str(repos / "models.git"), "main")
        return git(work, "rev-parse", "HEAD").strip()

    git(work, "init", "-q", "-b", "main")
    git(repos, "init", "-q", "--bare", "-b", "main", "models.git")
    first = commit(1)
    server = GitServer(repos)
    source = f"/apis/{FLUX_SOURCE}/namespaces/{namespace}/gitrepositories"
    sync = f"/apis/{FLUX_KUSTOMIZE}/namespaces/{namespace}/kustomizations"
    try:
        kube.create(source, {"apiVersion": FLUX_SOURCE, "kind": "GitRepository", "metadata": {"name": "models"},
                             "spec": {"interval": "1m", "url": f"{server.url}/models.git", "ref": {"branch": "main"}}})
        kube.create(sync, {"apiVersion": FLUX_KUSTOMIZE, "kind": "Kustomization", "metadata": {"name": "models"},
                           "spec": {"interval": "1m", "path": "./", "prune": True, "wait": True, "timeout": "3m", "targetNamespace": namespace,
                                    "sourceRef": {"kind": "GitRepository", "name": "models"}, "healthCheckExprs": [HEALTH_EXPRS]}})
        describe = lambda: yaml.safe_dump(kube.get(f"{sync}/models").get("status")) + flux.tail()  # noqa: E731

        def applied(revision: str) -> dict[str, Any] | None:
            flux.check()
            return flux_ready(kube, f"{sync}/models", revision)

        wait_for("the Kustomization Ready at the first commit", lambda: applied(first), timeout=180, describe=describe)
        pipeline = get(kube, namespace, "retrain")
        assert (pipeline.get("status") or {}).get("stage") == "Done", "Flux reported Ready before the pipeline was"
        first_run, first_generation = pipeline["status"]["runId"], pipeline["metadata"]["generation"]

        second = commit(2)
        stamp = datetime.now(UTC).isoformat()
        for path in (f"{source}/models", f"{sync}/models"):  # as `flux reconcile` does: no waiting for the interval
            kube.patch(path, {"metadata": {"annotations": {"reconcile.fluxcd.io/requestedAt": stamp}}})
        seen: dict[str, float] = {}

        def both_ready() -> bool:
            now = time.monotonic()
            obj = get(kube, namespace, "retrain")
            status = obj.get("status") or {}
            current = obj["metadata"]["generation"] > first_generation and obj["metadata"]["generation"] == status.get("observedGeneration")
            if "pipeline" not in seen and current and status.get("stage") == "Done" and status.get("runId") != first_run:
                seen["pipeline"] = now
            if "flux" not in seen and applied(second):
                seen["flux"] = now
            return len(seen) == 2

        wait_for("the second commit applied, retrained and reported Ready", both_ready, timeout=180, interval=0.2, describe=describe)
        assert seen["pipeline"] <= seen["flux"], "Flux reported the Kustomization Ready before the retrain finished"
        retrained = get(kube, namespace, "retrain")
        assert retrained["spec"]["seed"] == 2 and retrained["status"]["runId"] != first_run
        assert retrained["metadata"]["labels"]["kustomize.toolkit.fluxcd.io/name"] == "models"
    finally:
        server.stop()
