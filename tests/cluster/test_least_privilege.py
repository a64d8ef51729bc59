"""Least privilege, measured: the verbs and resources the operator and the Jobs really used, against the chart's RBAC;
and the security settings of the pods the cluster holds (the local executor enforces none of them).

The operator is the chart's Deployment, in the test's namespace with the chart's Role there, and the
Jobs run as the chart's Jobs ServiceAccount, so every request by a ServiceAccount of that namespace
in the API server's audit log (localcluster/config/audit-policy.yaml) belongs to this scenario. Every stage
pod is skipped (the executor completes it without running it; rank and plan hand over the reports
they would write), so the scenario costs seconds yet walks the operator's paths: a full run with a
CPU and a GPU family; a rerun that supersedes it (old Jobs deleted, the plan ConfigMap rewritten);
a GPU stage that cannot be scheduled (pods read for the reason); pods the Job controller cannot create
(their FailedCreate Events read); the plan ConfigMap deleted and
restored; suspend and resume (Jobs patched); the artifacts claim created; Events posted.

The namespace enforces the restricted Pod Security Standard, so the API server itself refuses a
pod that runs as root, may escalate privileges, keeps capabilities or has no seccomp profile; the
test then reads every live pod for what that standard leaves out: a read-only root filesystem with
an emptyDir /tmp, and an API token mounted only into the operator.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import yaml

from trainpipe.contract.names import ANNOTATION_RERUN, LABEL_MANAGED_BY, LABEL_PIPELINE, LABEL_RUN, LABEL_STAGE, MANAGER
from trainpipe_localcluster import (
    BATCH,
    CORE,
    Cluster,
    Kube,
    auditlog,
    claim_manifest,
    free_port,
    http_get,
    pipeline_manifest,
    pipelines_path,
    wait_condition,
    wait_for,
)
from trainpipe_localcluster.executor import SKIP_LABEL as SKIP
from trainpipe_localcluster.executor import SKIP_MESSAGE_ANNOTATION as SKIP_MESSAGE

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "helm" / "trainpipe"
RULES_FILE = CHART / "files" / "operator-rules.yaml"
# A skipped stage takes about a second; waits allow for a machine shared with other test runs.
WAIT = 240
PLAN = {"planDigest": "1" * 64, "path": "globals/training_plan/master_training_plan.json"}


def skipped_stages(units: dict[str, int], **overrides: Any) -> dict[str, Any]:
    """Every stage's pods completed by the executor without running; rank and plan hand over their reports."""
    skip = {"labels": {SKIP: "true"}}
    stages: dict[str, Any] = {stage: {"podMetadata": skip} for stage in ("select", "cpu", "gpu", "report")}
    stages["rank"] = {"podMetadata": {**skip, "annotations": {SKIP_MESSAGE: json.dumps({"selected": 1})}}}
    stages["plan"] = {"podMetadata": {**skip, "annotations": {SKIP_MESSAGE: json.dumps({**PLAN, "units": units})}}}
    for stage, extra in overrides.items():
        stages[stage] = {**stages[stage], **extra}
    return stages


def effective(pod_spec: dict[str, Any], container: dict[str, Any], key: str) -> Any:
    """A security setting as the kubelet applies it: the container's value, else the pod's."""
    own = container.get("securityContext") or {}
    return own[key] if key in own else (pod_spec.get("securityContext") or {}).get(key)


def hardening_problems(pod: dict[str, Any], *, needs_token: bool) -> list[str]:
    """What a pod lacks of: non-root, no privilege escalation, no capabilities, seccomp RuntimeDefault,
    a read-only root filesystem with an emptyDir /tmp, and an API token only when it talks to the API."""
    name, spec = pod["metadata"]["name"], pod["spec"]
    problems: list[str] = []
    empty_dirs = {v["name"] for v in spec.get("volumes") or [] if "emptyDir" in v}
    for c in spec["containers"] + spec.get("initContainers", []):
        where = f"pod {name} container {c['name']}"
        if effective(spec, c, "runAsNonRoot") is not True:
            problems.append(f"{where}: runAsNonRoot is not true")
        if (effective(spec, c, "seccompProfile") or {}).get("type") != "RuntimeDefault":
            problems.append(f"{where}: seccompProfile is not RuntimeDefault")
        own = c.get("securityContext") or {}
        if own.get("allowPrivilegeEscalation") is not False:
            problems.append(f"{where}: allowPrivilegeEscalation is not false")
        if own.get("privileged"):
            problems.append(f"{where}: privileged")
        if "ALL" not in ((own.get("capabilities") or {}).get("drop") or []) or (own.get("capabilities") or {}).get("add"):
            problems.append(f"{where}: capabilities are not drop [ALL] with nothing added")
        if own.get("readOnlyRootFilesystem") is not True:
            problems.append(f"{where}: readOnlyRootFilesystem is not true")
        if not any(m["mountPath"] == "/tmp" and m["name"] in empty_dirs for m in c.get("volumeMounts") or []):
            problems.append(f"{where}: no emptyDir at /tmp (its root filesystem is read-only)")
    token = any("serviceAccountToken" in source for v in spec.get("volumes") or []
                for source in (v.get("projected") or {}).get("sources") or [])
    if token != needs_token:
        problems.append(f"pod {name}: " + ("has an API token it never uses" if token else "has no API token"))
    if spec.get("hostNetwork") or spec.get("hostPID") or spec.get("hostIPC"):
        problems.append(f"pod {name}: shares a host namespace")
    return problems


def helm(cluster: Cluster, namespace: str, *args: str) -> str:
    argv = [str(cluster.binary("helm")), "--kubeconfig", str(cluster.kubeconfig), "-n", namespace, *args]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=300, check=False)
    assert out.returncode == 0, f"helm {' '.join(args)} failed:\n{out.stdout}\n{out.stderr}"
    return out.stdout


def pods_of(kube: Kube, namespace: str, selector: str) -> list[dict[str, Any]]:
    return kube.get(f"{CORE}/namespaces/{namespace}/pods", labelSelector=selector)["items"]


def jobs_of(kube: Kube, namespace: str, pipeline: str) -> list[dict[str, Any]]:
    return kube.get(f"{BATCH}/namespaces/{namespace}/jobs", labelSelector=f"{LABEL_PIPELINE}={pipeline}")["items"]


def status_of(kube: Kube, namespace: str, name: str) -> dict[str, Any]:
    return kube.get(pipelines_path(namespace, name)).get("status") or {}


def test_the_operator_and_jobs_use_every_verb_the_chart_grants_and_nothing_else_from_hardened_pods(
        cluster: Cluster, kube: Kube, namespace: str) -> None:
    log = auditlog.log_path(cluster.state)
    assert log.exists(), f"{log} is missing: the local control plane runs without its audit policy (localcluster/up.sh)"
    start = auditlog.end_offset(log)

    # The API server's own Pod Security admission refuses, in this namespace, any pod that the
    # restricted standard forbids (root, privilege escalation, capabilities, no seccomp profile).
    kube.patch(f"{CORE}/namespaces/{namespace}", {"metadata": {"labels": {
        "pod-security.kubernetes.io/enforce": "restricted", "pod-security.kubernetes.io/enforce-version": "latest"}}})
    # The chart, serving only this namespace; its Jobs run as the chart's Jobs ServiceAccount.
    release, port = f"lp-{namespace[-6:]}", free_port()
    operator_user = auditlog.service_account(namespace, f"{release}-trainpipe-operator")
    jobs_account = f"{release}-trainpipe-jobs"
    kube.create(f"{CORE}/namespaces/{namespace}/persistentvolumeclaims", claim_manifest("trainpipe-example-data"))
    helm(cluster, namespace, "install", release, str(CHART), "--take-ownership", "--set", f"watchNamespaces={{{namespace}}}",
         "--set", f"port={port}", "--set", "jobs.serviceAccount.useByDefault=true")
    operator_selector = f"app.kubernetes.io/name=trainpipe-operator,app.kubernetes.io/instance={release}"
    wait_for("the chart's operator to be ready", lambda: http_get(f"http://127.0.0.1:{port}/readyz")[0] == 200,
             timeout=WAIT, interval=0.5, describe=lambda: cluster.dump(namespace))

    # "full": a CPU and a GPU family to Ready; a rerun supersedes its first run once the plan exists.
    kube.create(pipelines_path(namespace), pipeline_manifest(
        "full", training={"families": ["lightgbm", "mlp"]}, stages=skipped_stages({"lightgbm": 1, "mlp": 1})))
    # "held": its GPU stage asks for more GPUs than a node has, so it waits with the scheduler's reason.
    kube.create(pipelines_path(namespace), pipeline_manifest(
        "held", training={"families": ["mlp"]}, stages=skipped_stages({"mlp": 1}, gpu={"gpusPerPod": 4})))

    # "refused": its pods name a PriorityClass that does not exist, so the Job controller cannot create them
    # and the operator reads why from the Job's FailedCreate Events.
    kube.create(pipelines_path(namespace), pipeline_manifest(
        "refused", priorityClassName="no-such-class", training={"families": ["lightgbm"]}, stages=skipped_stages({"lightgbm": 1})))

    first_run = wait_for("pipeline full's plan", lambda: (s := status_of(kube, namespace, "full")).get("plan") and s["runId"], timeout=WAIT)
    kube.patch(pipelines_path(namespace, "full"), {"metadata": {"annotations": {ANNOTATION_RERUN: "again"}}})

    wait_for("pipeline held's Unschedulable reason", lambda: "Insufficient nvidia.com/gpu" in (status_of(kube, namespace, "held").get("message") or ""),
             timeout=WAIT, describe=lambda: yaml.safe_dump(status_of(kube, namespace, "held")))
    plan_path = f"{CORE}/namespaces/{namespace}/configmaps/held-plan"
    digest = kube.get(plan_path)["data"]["digest"]
    kube.delete(plan_path)
    wait_for("the plan ConfigMap restored", lambda: kube.exists(plan_path), timeout=WAIT)
    assert kube.get(plan_path)["data"]["digest"] == digest

    [gpu_job] = [j for j in jobs_of(kube, namespace, "held") if j["metadata"]["labels"][LABEL_STAGE] == "gpu"]
    job_path = f"{BATCH}/namespaces/{namespace}/jobs/{gpu_job['metadata']['name']}"
    kube.patch(pipelines_path(namespace, "held"), {"spec": {"suspend": True}})
    wait_for("the GPU Job suspended", lambda: kube.get(job_path)["spec"].get("suspend") is True, timeout=WAIT)
    kube.patch(pipelines_path(namespace, "held"), {"spec": {"suspend": False}})
    wait_for("the GPU Job resumed", lambda: kube.get(job_path)["spec"].get("suspend") is False, timeout=WAIT)

    wait_condition(kube, namespace, "full", "Ready", timeout=WAIT)
    stalled = wait_condition(kube, namespace, "refused", "Stalled", timeout=WAIT)
    assert stalled["reason"] == "FailedCreate" and "no PriorityClass with name no-such-class" in stalled["message"], stalled
    full = status_of(kube, namespace, "full")
    assert full["runId"] != first_run
    assert not [j for j in jobs_of(kube, namespace, "full") if j["metadata"]["labels"][LABEL_RUN] == first_run]
    assert kube.get(f"{CORE}/namespaces/{namespace}/configmaps/full-plan")["data"]["run"] == full["runId"]

    # Pod security, on the pods the cluster holds.
    [operator_pod] = [p for p in pods_of(kube, namespace, operator_selector) if not p["metadata"].get("deletionTimestamp")]
    stage_pods = pods_of(kube, namespace, f"{LABEL_MANAGED_BY}={MANAGER}")
    assert {p["metadata"]["labels"][LABEL_STAGE] for p in stage_pods} == {"rank", "select", "plan", "cpu", "gpu", "report"}
    problems = hardening_problems(operator_pod, needs_token=True)
    for pod in stage_pods:
        problems += hardening_problems(pod, needs_token=False)
        if pod["spec"].get("serviceAccountName") != jobs_account:
            problems.append(f"pod {pod['metadata']['name']} runs as {pod['spec'].get('serviceAccountName')}, not {jobs_account}")
    assert not problems, "\n".join(problems)

    # What the namespace's ServiceAccounts asked the API server for, against what the chart grants.
    requests = list(auditlog.read(log, start, auditlog.in_namespace(namespace)))
    print("\n" + auditlog.format_summary(auditlog.summarise(requests)))
    assert not [r for r in requests if r.code == 403], "denied requests:\n" + "\n".join(
        f"{r.user} {r.verb} {r.uri}" for r in requests if r.code == 403)
    assert not [r for r in requests if r.resource == "secrets"], "a ServiceAccount of the release touched Secrets"
    others = sorted({r.user for r in requests} - {operator_user})
    assert not others, f"only the operator talks to the API server; the Jobs' pods have no token, yet {others} did"
    rules = yaml.safe_load(RULES_FILE.read_text())
    rbac = "/apis/rbac.authorization.k8s.io/v1"
    role = kube.get(f"{rbac}/namespaces/{namespace}/roles/{release}-trainpipe-operator")
    assert auditlog.granted(role["rules"]) == auditlog.granted(rules), f"the chart's Role is not {RULES_FILE.name}"
    bindings = kube.get(f"{rbac}/namespaces/{namespace}/rolebindings")["items"] + kube.get(f"{rbac}/clusterrolebindings")["items"]
    assert not [b["metadata"]["name"] for b in bindings for s in b.get("subjects") or []
                if s.get("kind") == "ServiceAccount" and s.get("name") == jobs_account and s.get("namespace", namespace) == namespace], \
        "the Jobs' ServiceAccount is bound to a role"
    used = {r.rule for r in requests if r.user == operator_user and r.resource}
    assert used, f"no request of {operator_user} in {log}: is the audit policy recording ServiceAccounts?"
    unused = sorted(auditlog.granted(rules) - used)
    assert not unused, f"{RULES_FILE.name} grants what the operator never used: {unused}; used: {sorted(used)}"
