"""The locally built toolchain: real versions everywhere, and helm installs a chart into the cluster."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from trainpipe_localcluster import CORE, Cluster, Kube

REPO = Path(__file__).resolve().parents[2]


def _versions() -> dict[str, str]:
    pairs = (line.split("=", 1) for line in (REPO / "hack/versions.env").read_text().splitlines()
             if "=" in line and not line.startswith("#"))
    return {k.strip(): v.strip() for k, v in pairs}


def test_components_report_their_pinned_versions(cluster: Cluster, kube: Kube) -> None:
    want = _versions()
    assert kube.get("/version")["gitVersion"] == want["KUBERNETES_VERSION"]
    client = json.loads(cluster.kubectl("version", "--client", "-o", "json").stdout)
    assert client["clientVersion"]["gitVersion"] == want["KUBERNETES_VERSION"]
    etcd = subprocess.run([str(cluster.binary("etcd")), "--version"], capture_output=True, text=True, check=True)
    assert f"etcd Version: {want['ETCD_VERSION'].lstrip('v')}" in etcd.stdout
    kwok = subprocess.run([str(cluster.binary("kwok")), "--version"], capture_output=True, text=True, check=True)
    assert f"kwok version {want['KWOK_VERSION']}" in kwok.stdout
    helm = subprocess.run([str(cluster.binary("helm")), "version", "--template", "{{.Version}}"],
                          capture_output=True, text=True, check=True)
    assert helm.stdout.strip() == want["HELM_VERSION"]


def test_the_simulated_pool_is_two_cpu_and_two_tainted_gpu_nodes(kube: Kube) -> None:
    nodes = {n["metadata"]["name"]: n for n in kube.get(f"{CORE}/nodes")["items"]
             if (n["metadata"].get("annotations") or {}).get("kwok.x-k8s.io/node") == "fake"}  # the real node is tested apart
    pools = sorted((n["metadata"]["labels"].get("trainpipe.io/pool"), name) for name, n in nodes.items())
    assert pools == [("cpu", "cpu-0"), ("cpu", "cpu-1"), ("gpu", "gpu-0"), ("gpu", "gpu-1")]
    for node in nodes.values():
        ready = [c for c in node["status"]["conditions"] if c["type"] == "Ready"]
        assert ready and ready[0]["status"] == "True"
        gpu = node["metadata"]["labels"]["trainpipe.io/pool"] == "gpu"
        assert node["status"]["allocatable"].get("nvidia.com/gpu") == ("1" if gpu else None)
        taints = [(t["key"], t.get("value"), t["effect"]) for t in node["spec"].get("taints", [])]
        assert (("nvidia.com/gpu", "present", "NoSchedule") in taints) == gpu


def test_helm_installs_a_chart_into_the_cluster(cluster: Cluster, kube: Kube, namespace: str, tmp_path: Path) -> None:
    chart = tmp_path / "hello"
    (chart / "templates").mkdir(parents=True)
    (chart / "Chart.yaml").write_text("apiVersion: v2\nname: hello\nversion: 0.1.0\n")
    (chart / "values.yaml").write_text("greeting: hi\n")
    (chart / "templates/cm.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}-greeting\n"
        "data:\n  greeting: {{ .Values.greeting | quote }}\n")
    helm = [str(cluster.binary("helm")), "--kubeconfig", str(cluster.kubeconfig), "-n", namespace]
    subprocess.run([*helm, "install", "demo", str(chart), "--set", "greeting=hello", "--wait", "--timeout", "60s"],
                   capture_output=True, text=True, check=True, timeout=90,
                   env={"HOME": str(tmp_path), "PATH": "/usr/bin:/bin"})
    cm = kube.get(f"{CORE}/namespaces/{namespace}/configmaps/demo-greeting")
    assert cm["data"] == {"greeting": "hello"}
    releases = json.loads(subprocess.run([*helm, "list", "-o", "json"], capture_output=True, text=True, check=True,
                                         env={"HOME": str(tmp_path), "PATH": "/usr/bin:/bin"}).stdout)
    assert [(r["name"], r["status"]) for r in releases] == [("demo", "deployed")]
