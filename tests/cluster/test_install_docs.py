"""docs/install.md, every command as written, on the local cluster: the pipeline in real containers.

The images and the chart are built and pushed to the cluster's registry by the doc's own `make` commands,
and the operator is installed from that registry (`helm upgrade --install oci://…`), as a cluster without a
checkout installs it; the chart's operator runs in a real container on the real node (host network: the local cluster has no Service
network); the chart's example-data Job and the pipeline's rank, select, plan, CPU-training and report
pods run on the real node from the real jobs-cpu image, as uid 10001 on a read-only root filesystem with
/tmp an emptyDir with a sizeLimit, their claims bound to host volumes on that node. The GPU stage lands
on the simulated GPU nodes as before.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from trainpipe_localcluster import CORE, Cluster, Kube, wait_for
from trainpipe_localcluster.node import RealNode
from trainpipe_localcluster.repo import REPO
from trainpipe_localcluster.values import image_registry, local_values

DOC = REPO / "docs" / "install.md"
# What the doc names: keep these in step with it.
NAMESPACE, PIPELINE, RELEASE, RELEASE_NAMESPACE = "ml", "demo", "trainpipe", "trainpipe-system"
VALUES_FILE = REPO / "my-values.yaml"  # the doc writes it in the working directory (git-ignored)
CPU_SIDE = {"rank", "select", "plan", "cpu", "report"}
APP_UID = 10001


def doc_blocks(path: Path = DOC) -> list[str]:
    """The ```sh blocks of a Markdown file from its first numbered section (`## 1. `) on, in order.

    The blocks before it ("Without a checkout": pip and the wheel) are tests/e2e/test_wheel.py's.
    """
    text = path.read_text()
    return re.findall(r"^```sh\n(.*?)^```$", text[text.index("\n## 1. "):], flags=re.M | re.S)


def run_block(block: str, env: dict[str, str], timeout: float) -> str:
    """One block as a bash script from the repository's root, stopping at the first failing command."""
    out = subprocess.run(["bash", "-euo", "pipefail", "-c", block], cwd=REPO, env=env, capture_output=True, text=True,
                         timeout=timeout, check=False)
    assert out.returncode == 0, f"docs/install.md block failed (rc {out.returncode}):\n{block}\n--- stdout\n{out.stdout[-3000:]}\n--- stderr\n{out.stderr[-5000:]}"
    return out.stdout


def test_the_doc_has_the_blocks_this_test_runs() -> None:
    blocks = doc_blocks()
    assert len(blocks) == 4, "build, install, run, remove: update this test with the doc"
    assert "make images-push REGISTRY=$REGISTRY" in blocks[0] and "make chart-push REGISTRY=$REGISTRY" in blocks[0]
    assert "helm upgrade --install" in blocks[1] and f"watchNamespaces: [{NAMESPACE}]" in blocks[1]
    assert "oci://$REGISTRY/charts/trainpipe --version" in blocks[1], "the operator is installed from the chart pushed to the registry"
    assert f"trainingpipeline/{PIPELINE}" in blocks[2] and "helm uninstall" in blocks[3]


def _doc_env(cluster: Cluster, extra_values: Path) -> dict[str, str]:
    tools = os.pathsep.join(str(cluster.binary(b).parent) for b in ("kubectl", "helm"))
    return os.environ | {
        "KUBECONFIG": str(cluster.kubeconfig), "PATH": f"{tools}{os.pathsep}{os.environ['PATH']}",
        "REGISTRY": image_registry(cluster.state), "EXTRA_VALUES": str(extra_values),
        # The cluster's registry serves plain HTTP on loopback: helm must be told so to pull the chart from it.
        "PLAIN_HTTP": "1",
        # The GPU image (several GB) is built by its own target; this pipeline's GPU stage runs on the simulated nodes.
        "IMAGES": "operator jobs-cpu", "TRAINPIPE_CLUSTER_DIR": str(cluster.state),
    }


def _clean(cluster: Cluster, kube: Kube, env: dict[str, str]) -> None:
    subprocess.run([str(cluster.binary("helm")), "uninstall", RELEASE, "-n", RELEASE_NAMESPACE, "--wait"], env=env,
                   capture_output=True, check=False, timeout=120)
    if kube.exists(f"{CORE}/namespaces/{NAMESPACE}"):
        kube.delete(f"{CORE}/namespaces/{NAMESPACE}")
        wait_for(f"namespace {NAMESPACE} to go", lambda: not kube.exists(f"{CORE}/namespaces/{NAMESPACE}"), timeout=180)
    VALUES_FILE.unlink(missing_ok=True)


def _pods(kube: Kube) -> list[dict[str, Any]]:
    return kube.get(f"{CORE}/namespaces/{NAMESPACE}/pods")["items"]


def test_install_docs_run_the_pipeline_in_real_containers(cluster: Cluster, kube: Kube, real_node: RealNode, tmp_path: Path,
                                                          operator_kubeconfig: Path) -> None:
    extra = tmp_path / "values-local.yaml"
    from trainpipe_localcluster.kube import free_port

    extra.write_text(yaml.safe_dump(local_values(cluster.state, free_port())))
    env = _doc_env(cluster, extra)
    _clean(cluster, kube, env)
    build, install, run, remove = doc_blocks()
    try:
        run_block(build, env, timeout=1800)
        _check_chart_pushed(image_registry(cluster.state))
        run_block(install, env, timeout=900)
        out = run_block(run, env, timeout=1900)
        assert re.search(rf"^{PIPELINE}\s+True\s+Done\s", out, flags=re.M), out
        pipeline = kube.get(f"/apis/trainpipe.io/v1alpha1/namespaces/{NAMESPACE}/trainingpipelines/{PIPELINE}")
        registry = image_registry(cluster.state)
        _check_operator(cluster, kube, real_node, registry)
        _check_stage_pods(kube, real_node, registry)
        _check_outputs(cluster, kube, pipeline)
        run_block(remove, env, timeout=300)
        assert not kube.exists(f"/apis/trainpipe.io/v1alpha1/namespaces/{NAMESPACE}/trainingpipelines/{PIPELINE}")
    finally:
        _clean(cluster, kube, env)
        # The doc installs into trainpipe-system with --take-ownership, so it adopts the ServiceAccount and
        # RBAC the other tests' operators act as, and `helm uninstall` deletes them: put them back and
        # write a fresh token (the old one named the deleted account), as a later test expects them.
        cluster.install_operator_access(operator_kubeconfig)


def _check_chart_pushed(registry: str) -> None:
    """`make chart-push` put the chart in the cluster's registry under its version: step 2 installs it from there."""
    import json

    from trainpipe_localcluster.kube import http_get

    chart = yaml.safe_load((REPO / "helm" / "trainpipe" / "Chart.yaml").read_text())
    host, prefix = registry.split("/", 1)
    status, body = http_get(f"http://{host}/v2/{prefix}/charts/{chart['name']}/tags/list", timeout=10)
    assert status == 200 and chart["version"] in json.loads(body)["tags"], f"the chart is not in {registry}/charts ({status}): {body}"


def _check_operator(cluster: Cluster, kube: Kube, node: RealNode, registry: str) -> None:
    pods = kube.get(f"{CORE}/namespaces/{RELEASE_NAMESPACE}/pods", labelSelector=f"app.kubernetes.io/instance={RELEASE}")["items"]
    [pod] = [p for p in pods if p["status"].get("phase") == "Running"]
    assert pod["spec"]["nodeName"] == node.name and pod["spec"]["hostNetwork"] is True
    [status] = pod["status"]["containerStatuses"]
    assert status["ready"] and status["image"] == f"{registry}/operator:0.1.0"
    assert status["imageID"].startswith(f"{registry}/operator@sha256:"), "pulled from the cluster's registry by containerd"
    logs = cluster.kubectl("logs", "-n", RELEASE_NAMESPACE, pod["metadata"]["name"]).stdout
    assert "trainpipe-operator serving" in logs, "kubectl logs reads the container's output through the real kubelet"


def _check_stage_pods(kube: Kube, node: RealNode, registry: str) -> None:
    by_stage: dict[str, list[dict[str, Any]]] = {}
    for pod in _pods(kube):
        stage = pod["metadata"]["labels"].get("trainpipe.io/stage") or pod["metadata"]["labels"].get("app.kubernetes.io/component")
        by_stage.setdefault(stage, []).append(pod)
    assert CPU_SIDE | {"gpu", "example-data"} <= set(by_stage), sorted(by_stage)
    for stage, pods in by_stage.items():
        for pod in pods:
            spec, name = pod["spec"], pod["metadata"]["name"]
            if stage == "gpu":
                assert spec["nodeName"].startswith("gpu-"), f"{name}: the GPU stage runs on the simulated GPU pool"
                continue
            assert spec["nodeName"] == node.name, f"{name} ({stage}) ran on {spec['nodeName']}, not the real node"
            [status] = pod["status"]["containerStatuses"]
            assert status["imageID"].startswith(f"{registry}/jobs-cpu@sha256:"), f"{name}: {status['imageID']}"
            assert status["state"]["terminated"]["exitCode"] == 0
            container = spec["containers"][0]
            assert container["securityContext"]["readOnlyRootFilesystem"] is True and spec["securityContext"]["runAsNonRoot"] is True
            scratch = next(v for v in spec["volumes"] if v["name"] in ("scratch", "tmp"))
            assert scratch["emptyDir"].get("sizeLimit"), f"{name}: /tmp must be bounded"


def _check_outputs(cluster: Cluster, kube: Kube, pipeline: dict[str, Any]) -> None:
    """The run's files were written by the image's user on the claim's volume, and nothing half-written is left."""
    claim = f"{PIPELINE}-artifacts"
    pvc = kube.get(f"{CORE}/namespaces/{NAMESPACE}/persistentvolumeclaims/{claim}")
    assert pvc["status"]["phase"] == "Bound"
    run = pipeline["status"]["runId"]
    folder = cluster.claim_dir(NAMESPACE, claim) / NAMESPACE / PIPELINE / run
    report = folder / "report.html"
    assert report.stat().st_size > 10_000
    written = [p for p in folder.rglob("*") if p.is_file()]
    assert written and {p.stat().st_uid for p in written if "gpu" not in p.parts} >= {APP_UID}
    cpu_models = [p for p in folder.glob("models/*/lightgbm/*") if p.is_file()]
    assert cpu_models and all(p.stat().st_uid == APP_UID for p in cpu_models), "the CPU models were written by the container's user"
    assert not [p for p in written if p.name.endswith(".tmp")], "no temp file of an atomic write is left"
    data = cluster.claim_dir(NAMESPACE, "trainpipe-example-data") / "example"
    assert {p.stat().st_uid for p in data.rglob("*.parquet")} == {APP_UID}, "the chart's example-data Job wrote the data"


@pytest.fixture(autouse=True)
def _no_values_file_left() -> Any:
    yield
    VALUES_FILE.unlink(missing_ok=True)
