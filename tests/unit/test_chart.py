"""The Helm chart helm/trainpipe: its generated files, and what `helm template` renders from each values file.

Renders with the pinned helm binary the cluster tier builds (hack/versions.env); without it the tests
fail with the command that builds it, as the cluster fixture does: the tier never skips itself.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "helm" / "trainpipe"
_spec = importlib.util.spec_from_file_location("chart_manifests", ROOT / "helm" / "manifests.py")
assert _spec and _spec.loader
manifests = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(manifests)


def _helm() -> Path:
    versions = dict(line.split("=", 1) for line in (ROOT / "hack" / "versions.env").read_text().splitlines()
                    if "=" in line and not line.startswith("#"))
    tools = Path(os.environ.get("TRAINPIPE_TOOLS", Path.home() / ".cache/trainpipe/tools"))
    helm = tools / f"helm-{versions['HELM_VERSION'].strip()}" / "bin" / "helm"
    if not helm.exists():
        pytest.fail(f"{helm} is missing: run `make cluster-build` (it builds the pinned helm)", pytrace=False)
    return helm


def helm(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    out = subprocess.run([str(_helm()), *args], capture_output=True, text=True, timeout=60, check=False)
    if check and out.returncode != 0:
        raise AssertionError(f"helm {' '.join(args)} failed:\n{out.stderr}")
    return out


def render(*args: str, release: str = "trainpipe", namespace: str = "trainpipe-system") -> list[dict[str, Any]]:
    text = helm("template", release, str(CHART), "--namespace", namespace, *args).stdout
    return [d for d in yaml.safe_load_all(text) if d]


def one(docs: list[dict[str, Any]], kind: str, namespace: str | None = None) -> dict[str, Any]:
    found = [d for d in docs if d["kind"] == kind and (namespace is None or d["metadata"].get("namespace") == namespace)]
    assert len(found) == 1, f"{len(found)} {kind} objects rendered"
    return found[0]


def container(docs: list[dict[str, Any]]) -> dict[str, Any]:
    return one(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]


# -- generated files -------------------------------------------------------------------------------
def test_generated_files_match_their_sources() -> None:
    for path, text in manifests.outputs().items():
        assert path.read_text() == text, f"{path.relative_to(ROOT)} drifted from its source: run `make manifests`"


def test_the_chart_ships_the_crd_of_crds_folder() -> None:
    assert manifests.CHART_CRD.read_text() == (ROOT / "crds" / "trainpipe.io_trainingpipelines.yaml").read_text()


def test_rendered_crd_is_the_generated_one_kept_on_uninstall_and_upgraded_as_a_template() -> None:
    crd = one(render(), "CustomResourceDefinition")
    generated = yaml.safe_load(manifests.CHART_CRD.read_text())
    assert crd["metadata"]["annotations"] == {"helm.sh/resource-policy": "keep"}
    assert crd["spec"] == generated["spec"] and crd["metadata"]["name"] == generated["metadata"]["name"]
    assert not (CHART / "crds").exists(), "Helm never upgrades crds/: the CRD is templates/crd.yaml"
    assert not [d for d in render("--set", "crds.install=false") if d["kind"] == "CustomResourceDefinition"]


# -- RBAC ------------------------------------------------------------------------------------------
def _rbac_yaml_rules() -> list[dict[str, Any]]:
    docs = list(yaml.safe_load_all(manifests.RBAC.read_text()))
    return one(docs, "ClusterRole")["rules"]


def test_cluster_wide_the_operator_gets_the_rules_of_rbac_yaml_bound_to_its_account() -> None:
    docs = render()
    role, binding = one(docs, "ClusterRole"), one(docs, "ClusterRoleBinding")
    assert role["rules"] == _rbac_yaml_rules() == yaml.safe_load(manifests.RULES.read_text()) + yaml.safe_load(manifests.NODE_RULES.read_text())
    account = one(docs, "ServiceAccount", "trainpipe-system")["metadata"]["name"]
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": account, "namespace": "trainpipe-system"}]
    # Release `trainpipe` gets the names of operator/deploy/rbac.yaml.
    rbac = {(d["kind"], d["metadata"]["name"]) for d in yaml.safe_load_all(manifests.RBAC.read_text())}
    assert {("ClusterRole", role["metadata"]["name"]), ("ServiceAccount", account)} <= rbac
    assert not [d for d in docs if d["kind"] in ("Role", "RoleBinding")]


def test_watching_a_list_of_namespaces_grants_a_role_in_each_and_only_the_node_read_cluster_wide() -> None:
    docs = render("--set", "watchNamespaces={team-a,team-b}", release="tp", namespace="ops")
    # Cluster-wide only the node read, which a Role cannot grant.
    role, binding = one(docs, "ClusterRole"), one(docs, "ClusterRoleBinding")
    assert role["rules"] == yaml.safe_load(manifests.NODE_RULES.read_text()) == [{"apiGroups": [""], "resources": ["nodes"], "verbs": ["get"]}]
    assert binding["roleRef"]["name"] == role["metadata"]["name"] and binding["subjects"][0]["namespace"] == "ops"
    for ns in ("team-a", "team-b"):
        role, binding = one(docs, "Role", ns), one(docs, "RoleBinding", ns)
        assert role["rules"] == yaml.safe_load(manifests.RULES.read_text())
        assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": role["metadata"]["name"]}
        assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "tp-trainpipe-operator", "namespace": "ops"}]
    assert [a for a in container(docs)["args"] if a.startswith("--namespace")] == ["--namespace=team-a", "--namespace=team-b"]


def test_the_jobs_account_has_no_token_and_no_role() -> None:
    docs = render("--set", "watchNamespaces={team-a}")
    jobs = [d for d in docs if d["kind"] == "ServiceAccount" and d["metadata"]["name"] == "trainpipe-jobs"]
    assert [d["metadata"]["namespace"] for d in jobs] == ["team-a"]
    assert jobs[0]["automountServiceAccountToken"] is False
    bindings = [d for d in docs if d["kind"] in ("RoleBinding", "ClusterRoleBinding")]
    assert all(s["name"] != "trainpipe-jobs" for b in bindings for s in b["subjects"])
    assert "--job-service-account=trainpipe-jobs" not in container(docs)["args"]
    args = container(render("--set", "watchNamespaces={team-a}", "--set", "jobs.serviceAccount.useByDefault=true"))["args"]
    assert "--job-service-account=trainpipe-jobs" in args


# -- the operator's Deployment ------------------------------------------------------------------------
def test_the_deployment_is_one_hardened_replica_replaced_not_rolled() -> None:
    docs = render()
    deploy = one(docs, "Deployment")
    pod = deploy["spec"]["template"]["spec"]
    c = container(docs)
    assert deploy["spec"]["replicas"] == 1 and deploy["spec"]["strategy"] == {"type": "Recreate"}
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert c["securityContext"] == {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                                    "capabilities": {"drop": ["ALL"]}}
    assert c["resources"]["requests"] and c["resources"]["limits"]["memory"]
    assert "command" not in c, "the image's entrypoint (tini, then trainpipe-operator) forwards SIGTERM"
    assert c["image"] == "ghcr.io/trainpipe/operator:0.1.0" and "hostNetwork" not in pod
    assert pod["serviceAccountName"] == "trainpipe-operator" and pod["automountServiceAccountToken"] is True
    assert {v["name"]: v for v in pod["volumes"]}["tmp"]["emptyDir"]  # the only writable folder
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert c["ports"] == [{"name": "http", "containerPort": 8080, "protocol": "TCP"}]
    selector = deploy["spec"]["selector"]["matchLabels"]
    assert selector.items() <= deploy["spec"]["template"]["metadata"]["labels"].items()


@pytest.mark.parametrize("values", [[], ["-f", str(CHART / "values-dev.yaml")], ["-f", str(CHART / "values-prod.yaml")]])
def test_the_operator_accepts_every_flag_the_chart_passes(values: list[str]) -> None:
    from trainpipe_operator.main import build_parser, config_from

    args = build_parser().parse_args(container(render(*values))["args"])
    assert args.port == 8080 and args.cpu_image and args.gpu_image
    config = config_from(args)  # every value is also usable, not only parsed
    if "values-prod.yaml" in " ".join(values):
        assert dict(config.cpu_node_selector) == {"trainpipe.io/pool": "cpu"} and dict(config.gpu_node_selector) == {"trainpipe.io/pool": "gpu"}
        assert config.gpu_tolerations and args.api_qps == 100 and args.api_burst == 200


def test_values_become_flags_port_and_probes() -> None:
    docs = render("--set", "port=18123", "--set", "logLevel=DEBUG", "--set-string", "jobs.images.cpu.tag=7",
                  "--set", "jobs.images.gpu.repository=", "--set", "workers=2", "--set", "image.digest=sha256:" + "a" * 64)
    c = container(docs)
    assert {"--port=18123", "--log-level=DEBUG", "--cpu-image=ghcr.io/trainpipe/jobs-cpu:7", "--workers=2"} <= set(c["args"])
    assert not [a for a in c["args"] if a.startswith("--gpu-image")]
    assert c["ports"][0]["containerPort"] == 18123
    assert c["image"] == "ghcr.io/trainpipe/operator@sha256:" + "a" * 64
    assert one(docs, "Service")["spec"]["ports"][0]["targetPort"] == "http"


def test_job_defaults_and_rate_limits_are_flags_only_when_set() -> None:
    defaults = container(render())["args"]
    assert not [a for a in defaults if a.split("=")[0] in (
        "--cpu-node-selector", "--gpu-node-selector", "--gpu-toleration", "--api-qps", "--api-burst", "--job-service-account")]
    args = container(render("-f", str(CHART / "values-prod.yaml")))["args"]
    assert "--cpu-node-selector=trainpipe.io/pool=cpu" in args and "--gpu-node-selector=trainpipe.io/pool=gpu" in args
    assert "--api-qps=100" in args and "--api-burst=200" in args
    toleration = json.loads(next(a for a in args if a.startswith("--gpu-toleration=")).split("=", 1)[1])
    assert toleration == {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}


def test_the_service_monitor_renders_only_where_prometheus_operator_is_served() -> None:
    prod = ["-f", str(CHART / "values-prod.yaml")]
    assert not [d for d in render(*prod) if d["kind"] == "ServiceMonitor"]
    monitor = one(render(*prod, "--api-versions", "monitoring.coreos.com/v1/ServiceMonitor"), "ServiceMonitor")
    assert monitor["spec"]["endpoints"][0]["port"] == "http-metrics"
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert not [d for d in render("--api-versions", "monitoring.coreos.com/v1/ServiceMonitor") if d["kind"] == "ServiceMonitor"]


# -- values ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("bad, message", [
    ("logLevel=LOUD", "logLevel"),
    ("replicas=2", "replicas"),  # not a value: one replica is the design
    ("watchNamespaces={Team_A}", "watchNamespaces"),
    ("port=0", "port"),
])
def test_the_schema_rejects_bad_values_by_name(bad: str, message: str) -> None:
    out = helm("template", "x", str(CHART), "--set", bad, check=False)
    assert out.returncode != 0 and message in out.stderr


@pytest.mark.parametrize("values", ["values.yaml", "values-dev.yaml", "values-prod.yaml"])
def test_lint_is_clean(values: str) -> None:
    out = helm("lint", "--strict", str(CHART), "-f", str(CHART / values))
    assert "0 chart(s) failed" in out.stdout


def test_every_value_is_documented() -> None:
    """Each top-level key of values.yaml has a comment right above it (the values file is the reference)."""
    lines = (CHART / "values.yaml").read_text().splitlines()
    for i, line in enumerate(lines):
        if line and not line.startswith((" ", "#")):
            above = next(lines[j] for j in range(i - 1, -1, -1) if not lines[j].startswith(("podAnnotations", "podLabels")))
            assert above.startswith("#"), f"values.yaml: {line!r} has no comment above it"


# -- images, registries, the local-cluster settings and the example data ------------------------------
def test_one_registry_value_moves_every_image_and_a_digest_pins_one() -> None:
    docs = render("--set", "global.imageRegistry=127.0.0.1:5000/team", "--set", "jobs.images.gpu.digest=sha256:" + "b" * 64)
    c = container(docs)
    assert c["image"] == "127.0.0.1:5000/team/operator:0.1.0"
    assert "--cpu-image=127.0.0.1:5000/team/jobs-cpu:0.1.0" in c["args"]
    assert "--gpu-image=127.0.0.1:5000/team/jobs-gpu@sha256:" + "b" * 64 in c["args"]
    # Without the global value each image keeps its own registry; an empty registry keeps the repository as written.
    c = container(render("--set", "image.registry=", "--set", "image.repository=mirror.local/ops/operator", "--set-string", "image.tag=7"))
    assert c["image"] == "mirror.local/ops/operator:7"


def test_cpu_tolerations_and_host_network_reach_the_operator() -> None:
    toleration = {"key": "trainpipe.io/real-node", "operator": "Exists", "effect": "NoSchedule"}
    docs = render("--set-json", f"jobs.cpuTolerations=[{json.dumps(toleration)}]", "--set", "hostNetwork=true",
                  "--set", "command={trainpipe-operator}")
    c = container(docs)
    assert json.loads(next(a for a in c["args"] if a.startswith("--cpu-toleration=")).split("=", 1)[1]) == toleration
    assert c["command"] == ["trainpipe-operator"]
    pod = one(docs, "Deployment")["spec"]["template"]["spec"]
    assert pod["hostNetwork"] is True and pod["dnsPolicy"] == "ClusterFirstWithHostNet"
    from trainpipe_operator.main import build_parser, config_from

    assert [dict(t) for t in config_from(build_parser().parse_args(c["args"])).cpu_tolerations] == [toleration]


def test_the_example_data_is_a_claim_and_a_hardened_job_in_the_pipelines_namespace() -> None:
    assert not [d for d in render() if d.get("metadata", {}).get("name", "").startswith("trainpipe-example-data")]
    docs = render("--set", "exampleData.enabled=true", "--set", "watchNamespaces={ml}")
    claim = one(docs, "PersistentVolumeClaim")
    job = one(docs, "Job")
    assert claim["metadata"] == {**claim["metadata"], "name": "trainpipe-example-data", "namespace": "ml"}
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"] and "storageClassName" not in claim["spec"]
    assert job["metadata"]["namespace"] == "ml" and job["metadata"]["name"].startswith("trainpipe-example-data-")
    pod = job["spec"]["template"]["spec"]
    main = pod["containers"][0]
    assert main["image"] == "ghcr.io/trainpipe/jobs-cpu:0.1.0" and "command" not in main
    assert main["args"] == ["data", "example", "--out", "/data/example"]
    assert main["securityContext"]["readOnlyRootFilesystem"] is True and pod["securityContext"]["runAsNonRoot"] is True
    assert pod["automountServiceAccountToken"] is False
    assert {v["name"]: v for v in pod["volumes"]}["data"]["persistentVolumeClaim"]["claimName"] == "trainpipe-example-data"
    # A new image is a new Job (a Job's pod template is immutable); the same image keeps the name.
    again = one(render("--set", "exampleData.enabled=true", "--set", "watchNamespaces={ml}"), "Job")
    moved = one(render("--set", "exampleData.enabled=true", "--set", "watchNamespaces={ml}", "--set-string", "jobs.images.cpu.tag=2"), "Job")
    assert again["metadata"]["name"] == job["metadata"]["name"] != moved["metadata"]["name"]
    # Without a watched namespace it goes to the release's.
    assert one(render("--set", "exampleData.enabled=true"), "Job")["metadata"]["namespace"] == one(render(), "Deployment")["metadata"]["namespace"]
