"""The Helm chart on the real control plane: the operator runs as the chart's Deployment, with only the chart's RBAC.

One release per test, reused across its steps because a real pipeline run costs about a minute:
install → a pipeline runs to Ready → `helm upgrade` with changed values while a pipeline runs (the new
values reach the new pod and its Jobs; the run still ends Ready) → a CRD with a new field upgraded by
`helm upgrade` → `helm uninstall` leaves the CRD, the pipelines and their outputs. The operator's pod
is a host process of the executor, authenticating with the projected ServiceAccount token the
executor mounts; its HTTP port is a free one, so it never meets another test's operator.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from trainpipe.contract.names import LABEL_PIPELINE, LABEL_STAGE
from trainpipe_localcluster import (
    BATCH,
    CORE,
    Cluster,
    Kube,
    free_port,
    http_get,
    pipeline_manifest,
    pipelines_path,
    wait_condition,
    wait_for,
)

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "helm" / "trainpipe"
CRD_NAME = "trainingpipelines.trainpipe.io"
CRD_PATH = f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{CRD_NAME}"
RUN_TIMEOUT = 420


class Release:
    """One Helm release of the chart, installed into the test's namespace and watching only it."""

    def __init__(self, cluster: Cluster, namespace: str, name: str, port: int) -> None:
        self.cluster, self.namespace, self.name, self.port = cluster, namespace, name, port

    def helm(self, *args: str) -> str:
        argv = [str(self.cluster.binary("helm")), "--kubeconfig", str(self.cluster.kubeconfig), "-n", self.namespace, *args]
        out = subprocess.run(argv, capture_output=True, text=True, timeout=300, check=False)
        if out.returncode != 0:
            raise AssertionError(f"{' '.join(argv[:1] + argv[4:])} failed:\n{out.stdout}\n{out.stderr}")
        return out.stdout

    def values(self, **extra: str) -> list[str]:
        sets = {"watchNamespaces": f"{{{self.namespace}}}", "port": str(self.port), **extra}
        return [arg for key, value in sets.items() for arg in ("--set-string" if key.endswith("tag") else "--set", f"{key}={value}")]

    def install(self, chart: Path = CHART, **extra: str) -> None:
        # --take-ownership: the CRD is cluster-wide and usually there already (applied by hack/ or
        # the operator fixture); the release adopts it, as a first install on a live cluster would.
        self.helm("install", self.name, str(chart), "--take-ownership", *self.values(**extra))

    def upgrade(self, chart: Path = CHART, **extra: str) -> None:
        self.helm("upgrade", self.name, str(chart), "--take-ownership", *self.values(**extra))

    def pods(self) -> list[dict[str, Any]]:
        return self.cluster.kube.get(f"{CORE}/namespaces/{self.namespace}/pods",
                                     labelSelector=f"app.kubernetes.io/name=trainpipe-operator,app.kubernetes.io/instance={self.name}")["items"]

    def wait_ready(self, args_with: str = "--port=", timeout: float = 120) -> dict[str, Any]:
        """The one live operator pod (with an arg starting `args_with`), once its /readyz answers 200."""
        def probe() -> dict[str, Any] | None:
            live = [p for p in self.pods() if not p["metadata"].get("deletionTimestamp")
                    and p.get("status", {}).get("phase") == "Running"]
            if len(live) == 1 and any(a.startswith(args_with) for a in live[0]["spec"]["containers"][0]["args"]) \
                    and http_get(f"http://127.0.0.1:{self.port}/readyz")[0] == 200:
                return live[0]
            return None
        return wait_for(f"the operator pod of release {self.name} to be ready", probe, timeout=timeout, interval=0.5,
                        describe=lambda: self.cluster.dump(self.namespace))

    def log(self, pod: dict[str, Any]) -> str:
        return self.cluster.pod_log(self.namespace, pod["metadata"]["name"], "operator")


@pytest.fixture
def release(cluster: Cluster, namespace: str) -> Release:
    shared = cluster.state / "operator.pid"  # `make operator-up` serves every namespace: it would race this test
    if shared.exists() and Path(f"/proc/{shared.read_text().strip()}").exists():
        pytest.fail("an operator started by `make operator-up` serves every namespace and would race the chart's "
                    "operator: run `make operator-down` first", pytrace=False)
    return Release(cluster, namespace, f"tp-{namespace[-6:]}", free_port())


def upgraded_chart(tmp: Path) -> Path:
    """A copy of the chart whose CRD has one more optional field, spec.chartTestNote, as a new release would."""
    chart = tmp / "trainpipe"
    shutil.copytree(CHART, chart)
    crd_file = chart / "files" / "crds" / "trainpipe.io_trainingpipelines.yaml"
    crd = yaml.safe_load(crd_file.read_text())
    spec = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    spec["properties"]["chartTestNote"] = {"type": "string", "description": "A field only the upgrade test adds."}
    crd_file.write_text(yaml.safe_dump(crd, sort_keys=False))
    return chart


def kept_on_create(kube: Kube, namespace: str) -> bool:
    """Whether the API server keeps spec.chartTestNote of a new pipeline (a server-side dry run: nothing is stored)."""
    body = pipeline_manifest("crd-probe")
    body["spec"]["chartTestNote"] = "kept"
    created = kube.request("POST", pipelines_path(namespace), body, query={"dryRun": "All"})
    return created["spec"].get("chartTestNote") == "kept"


def stage_jobs(kube: Kube, namespace: str, pipeline: str) -> list[dict[str, Any]]:
    return kube.get(f"{BATCH}/namespaces/{namespace}/jobs", labelSelector=f"{LABEL_PIPELINE}={pipeline}")["items"]


def test_the_chart_installs_runs_a_pipeline_upgrades_under_load_and_uninstalls_keeping_crd_and_outputs(
        cluster: Cluster, kube: Kube, namespace: str, release: Release, example_data: Any, tmp_path: Path) -> None:
    # 1. Install: the operator is the chart's Deployment, authenticated as the chart's ServiceAccount.
    release.install(logLevel="INFO")
    pod = release.wait_ready()
    account = f"{release.name}-trainpipe-operator"
    assert pod["spec"]["serviceAccountName"] == account
    token_volume = next(v for v in pod["spec"]["volumes"] if v["name"].startswith("kube-api-access-"))
    assert any("serviceAccountToken" in s for s in token_volume["projected"]["sources"])
    assert f"--namespace={namespace}" in pod["spec"]["containers"][0]["args"]
    deploy = kube.get(f"/apis/apps/v1/namespaces/{namespace}/deployments/{account}")
    assert deploy["spec"]["strategy"]["type"] == "Recreate" and deploy["spec"]["replicas"] == 1
    # Its only RBAC is the chart's Role here (no ClusterRole: it watches one namespace).
    assert kube.exists(f"/apis/rbac.authorization.k8s.io/v1/namespaces/{namespace}/roles/{account}")
    assert not kube.exists(f"/apis/rbac.authorization.k8s.io/v1/clusterrolebindings/{account}")
    review = kube.create("/apis/authorization.k8s.io/v1/subjectaccessreviews", {
        "apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview", "spec": {
            "user": f"system:serviceaccount:{namespace}:{account}",
            "resourceAttributes": {"verb": "list", "resource": "trainingpipelines", "group": "trainpipe.io", "namespace": "default"}}})
    assert review["status"]["allowed"] is False, "the chart's operator may read pipelines outside its namespace"

    # 2. A pipeline runs to Ready with only that RBAC.
    kube.create(pipelines_path(namespace), pipeline_manifest("first"))
    first = wait_condition(kube, namespace, "first", "Ready", timeout=RUN_TIMEOUT)
    assert first["status"] == "True"

    # 3. helm upgrade while a pipeline runs: the new log level and default job image reach the new pod
    #    (Recreate: the old one is gone first) and the Jobs created after it; the run still ends Ready.
    kube.create(pipelines_path(namespace), pipeline_manifest("second", images={"cpu": None}))
    wait_for("pipeline second's first Job", lambda: stage_jobs(kube, namespace, "second"), timeout=60)
    release.upgrade(logLevel="DEBUG", **{"jobs.images.cpu.tag": "upgraded"})
    new_pod = release.wait_ready(args_with="--log-level=DEBUG")
    assert new_pod["metadata"]["uid"] != pod["metadata"]["uid"]
    assert "--cpu-image=ghcr.io/trainpipe/jobs-cpu:upgraded" in new_pod["spec"]["containers"][0]["args"]
    wait_condition(kube, namespace, "second", "Ready", timeout=RUN_TIMEOUT)
    upgraded_at = new_pod["metadata"]["creationTimestamp"]
    # Strictly after: timestamps have one-second resolution, and the old operator may create a Job in the
    # second its replacement's pod is created (Recreate deletes the old pod first, not its last writes).
    later = [j for j in stage_jobs(kube, namespace, "second") if j["metadata"]["creationTimestamp"] > upgraded_at]
    assert later, "no Job of pipeline second was created after the upgrade"
    assert {j["spec"]["template"]["spec"]["containers"][0]["image"] for j in later} == {"ghcr.io/trainpipe/jobs-cpu:upgraded"}
    assert " DEBUG " in release.log(new_pod)
    stages = {j["metadata"]["labels"][LABEL_STAGE] for j in stage_jobs(kube, namespace, "second")}
    assert {"rank", "select", "plan", "cpu", "report"} <= stages

    # 4. A CRD with a new field: `helm upgrade` applies it (a crds/ file would have been skipped), and
    #    the real chart's upgrade takes it away again.
    assert not kept_on_create(kube, namespace)
    release.upgrade(upgraded_chart(tmp_path), logLevel="DEBUG")
    wait_for("the upgraded CRD to serve spec.chartTestNote", lambda: kept_on_create(kube, namespace), timeout=30)
    crd = kube.get(CRD_PATH)
    assert crd["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    assert crd["metadata"]["annotations"]["meta.helm.sh/release-name"] == release.name
    release.upgrade(logLevel="DEBUG")
    wait_for("the CRD to lose spec.chartTestNote again", lambda: not kept_on_create(kube, namespace), timeout=30)

    # 5. helm uninstall: the operator and its RBAC go; the CRD, the pipelines and their outputs stay.
    outputs = {name: kube.get(pipelines_path(namespace, name))["status"]["outputPath"] for name in ("first", "second")}
    release.helm("uninstall", release.name, "--wait", "--timeout", "120s")
    wait_for("the operator pod to go", lambda: not release.pods(), timeout=60)
    assert not kube.exists(f"/apis/apps/v1/namespaces/{namespace}/deployments/{account}")
    assert not kube.exists(f"/apis/rbac.authorization.k8s.io/v1/namespaces/{namespace}/roles/{account}")
    assert not kube.exists(f"{CORE}/namespaces/{namespace}/serviceaccounts/{account}")
    assert kube.exists(CRD_PATH)
    for name, output in outputs.items():
        obj = kube.get(pipelines_path(namespace, name))
        assert obj["status"]["outputPath"] == output
        claim = f"{name}-artifacts"
        report = cluster.claim_dir(namespace, claim) / Path(output).relative_to("/artifacts") / "report.html"
        assert report.stat().st_size > 1000, f"{report} is gone"

