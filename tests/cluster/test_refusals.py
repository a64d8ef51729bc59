"""Every refusal is a status, on the real control plane: pipelines the CRD accepts whose Jobs or pods Kubernetes refuses.

Thirteen pipelines, each valid as a TrainingPipeline and each invalid as a Job or pod in its own way,
applied at once to four namespaces (three of them carry a ResourceQuota or a LimitRange, and an
admission policy covers the first), with one operator serving all four. Each must be Stalled within
30 s of the moment its stage was to start, with the cause and the spec field (or the namespace object)
named; no training Job may exist; and the operator must neither fail its passes nor retry the refused
creates on every pass. Every pod is skipped (the executor completes it without running it), so the
test costs about the start timeout of its slowest case.
"""

from __future__ import annotations

import copy
import json
import re
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from test_faults import skipped_spec
from test_operator import apply, get
from trainpipe.contract.names import LABEL_STAGE
from trainpipe.contract.stages import STAGES
from trainpipe.contract.timestamps import parse_stamp
from trainpipe_localcluster import BATCH, CORE, ApiError, Cluster, Kube, OperatorProcess, condition, pipeline_manifest, wait_for

ADMISSION = "/apis/admissionregistration.k8s.io/v1"
POLICY_LABEL = "forbidden-by-policy"
START_TIMEOUT = 30  # the start-timeout case's stages.rank.startTimeoutSeconds
STALLED_WITHIN = 30.0


@dataclass(frozen=True)
class Case:
    name: str
    spec: dict[str, Any]  # deep-merged into a skipped pipeline's spec
    reason: str  # the Stalled condition's reason
    says: tuple[str, ...]  # what its message must hold: the API server's words and the field to fix
    namespace: str = ""  # "" = the test's namespace; else the suffix of a namespace with a policy object
    after: str | None = None  # the stage whose end starts the clock (None: the pipeline's creation)
    delay: float = 0.0  # the clock starts this much later (the start timeout)


def rank(**settings: Any) -> dict[str, Any]:
    return {"stages": {"rank": settings}}


CASES = (
    Case("label-space", rank(podMetadata={"labels": {"team": "quant research"}}), "CreateRefused",
         ("422 Invalid", "quant research", "spec.stages.rank.podMetadata.labels")),
    Case("annotation-key", rank(podMetadata={"annotations": {"bad key!": "x"}}), "CreateRefused",
         ("422 Invalid", "bad key!", "spec.stages.rank.podMetadata.annotations")),
    Case("requests-over-limits", rank(resources={"requests": {"cpu": "2"}, "limits": {"cpu": "1"}}), "CreateRefused",
         ("must be less than or equal to cpu limit", "spec.stages.rank.resources")),
    Case("affinity", rank(affinity={"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": []}}}),
         "CreateRefused", ("must have at least one node selector term", "spec.stages.rank.affinity")),
    Case("toleration", rank(tolerations=[{"key": "dedicated", "operator": "Exists", "value": "ml"}]), "CreateRefused",
         ("value must be empty when `operator` is 'Exists'", "spec.stages.rank.tolerations")),
    Case("policy", rank(podMetadata={"labels": {POLICY_LABEL: "yes"}}), "CreateRefused",
         ("ValidatingAdmissionPolicy", "pods labelled forbidden-by-policy are not allowed here")),
    Case("family-dry-run", {"stages": {"cpu": {"families": {"xgboost": {"requests": {"cpu": "2"}, "limits": {"cpu": "1"}}}}}}, "CreateRefused",
         ("refused (dry run) Job", "family xgboost", "spec.stages.cpu.families.xgboost"), after="plan"),
    Case("service-account", {"serviceAccountName": "nobody-here"}, "FailedCreate",
         ("the unit of stage rank cannot be created", 'serviceaccount "nobody-here" not found', "spec.serviceAccountName")),
    Case("priority-class", {"priorityClassName": "no-such-class"}, "FailedCreate",
         ("no PriorityClass with name no-such-class", "spec.priorityClassName")),
    Case("start-timeout", rank(nodeSelector={"trainpipe.io/no-such-pool": "x"}, startTimeoutSeconds=START_TIMEOUT), "StartTimeout",
         (f"stages.rank.startTimeoutSeconds={START_TIMEOUT}", "cannot be scheduled"), delay=START_TIMEOUT),
    Case("jobs-quota", {}, "CreateRefused", ("403 Forbidden", "exceeded quota", "count/jobs.batch"), namespace="jobs"),
    Case("pods-quota", {}, "FailedCreate", ("exceeded quota", "ResourceQuota"), namespace="pods"),
    Case("limit-range", rank(resources={"requests": {"cpu": "500m"}, "limits": {"cpu": "1"}}), "FailedCreate",
         ("maximum cpu usage per Container is 100m", "spec.stages.rank.resources"), namespace="limits"),
)

# What each extra namespace holds, the objects that make its pipeline's Jobs or pods invalid.
NAMESPACE_OBJECTS: dict[str, list[dict[str, Any]]] = {
    "jobs": [{"apiVersion": "v1", "kind": "ResourceQuota", "metadata": {"name": "no-jobs"}, "spec": {"hard": {"count/jobs.batch": "0"}}}],
    "pods": [{"apiVersion": "v1", "kind": "ResourceQuota", "metadata": {"name": "no-pods"}, "spec": {"hard": {"pods": "0"}}}],
    "limits": [{"apiVersion": "v1", "kind": "LimitRange", "metadata": {"name": "small"},
                "spec": {"limits": [{"type": "Container", "max": {"cpu": "100m"}}]}}],
}
COLLECTIONS = {"ResourceQuota": "resourcequotas", "LimitRange": "limitranges"}


def merged(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in extra.items():
        out[key] = merged(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else copy.deepcopy(value)
    return out


def create_namespace(kube: Kube, name: str) -> None:
    kube.create(f"{CORE}/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": {"trainpipe.io/test": "cluster"}}})
    wait_for(f"ServiceAccount default in {name}", lambda: kube.exists(f"{CORE}/namespaces/{name}/serviceaccounts/default"), timeout=30)


@pytest.fixture
def policy_namespaces(kube: Kube, namespace: str) -> Iterator[dict[str, str]]:
    """The extra namespaces (a quota of no Jobs, a quota of no pods, a LimitRange), and an admission policy on the
    test's namespace that denies Jobs whose pods carry POLICY_LABEL; all removed afterwards."""
    suffix = secrets.token_hex(3)
    names = {key: f"refusals-{key}-{suffix}" for key in NAMESPACE_OBJECTS}
    policy = f"trainpipe-test-{suffix}"
    try:
        for key, ns in names.items():
            create_namespace(kube, ns)
            for obj in NAMESPACE_OBJECTS[key]:
                kube.create(f"{CORE}/namespaces/{ns}/{COLLECTIONS[obj['kind']]}", obj)
        kube.create(f"{ADMISSION}/validatingadmissionpolicies", {
            "apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingAdmissionPolicy", "metadata": {"name": policy},
            "spec": {"failurePolicy": "Fail",
                     "matchConstraints": {"resourceRules": [{"apiGroups": ["batch"], "apiVersions": ["v1"], "operations": ["CREATE"], "resources": ["jobs"]}]},
                     "validations": [{"expression": f"!has(object.spec.template.metadata.labels) || !('{POLICY_LABEL}' in object.spec.template.metadata.labels)",
                                      "message": f"pods labelled {POLICY_LABEL} are not allowed here"}]}})
        kube.create(f"{ADMISSION}/validatingadmissionpolicybindings", {
            "apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingAdmissionPolicyBinding", "metadata": {"name": policy},
            "spec": {"policyName": policy, "validationActions": ["Deny"],
                     "matchResources": {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}}}}})
        wait_for("the admission policy in force", lambda: _policy_denies(kube, namespace), timeout=60)
        yield names
    finally:
        for kind in ("validatingadmissionpolicybindings", "validatingadmissionpolicies"):
            try:
                kube.delete(f"{ADMISSION}/{kind}/{policy}")
            except ApiError:
                pass
        for ns in names.values():
            try:
                kube.delete(f"{CORE}/namespaces/{ns}")
            except ApiError:
                pass


def _policy_denies(kube: Kube, namespace: str) -> bool:
    probe = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "policy-probe"},
             "spec": {"template": {"metadata": {"labels": {POLICY_LABEL: "yes"}},
                                   "spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "x"}]}}}}
    try:
        kube.request("POST", f"{BATCH}/namespaces/{namespace}/jobs", probe, query={"dryRun": "All"})
    except ApiError as err:
        return POLICY_LABEL in str(err)
    return False


def metric(operator: OperatorProcess, name: str) -> float:
    code, text = operator.get("/metrics")
    assert code == 200
    return sum(float(m.group(1)) for m in re.finditer(rf"^{name}(?:{{[^}}]*}})? ([0-9.e+-]+)$", text, re.MULTILINE))


def test_specs_valid_as_pipelines_but_invalid_as_jobs_are_each_stalled_within_30s_naming_the_cause_and_no_training_job_is_made(
        cluster: Cluster, kube: Kube, namespace: str, operator_kubeconfig: Path, policy_namespaces: dict[str, str]) -> None:
    where = {case.name: policy_namespaces.get(case.namespace, namespace) for case in CASES}
    operator = OperatorProcess(operator_kubeconfig, cluster.operator_log(namespace), namespaces=[namespace, *policy_namespaces.values()])
    operator.start()
    try:
        for case in CASES:
            apply(kube, where[case.name], pipeline_manifest(case.name, **merged(skipped_spec(), case.spec)))

        stalled_at: dict[str, dict[str, Any]] = {}

        def all_stalled() -> bool:
            for case in CASES:
                if case.name not in stalled_at:
                    obj = get(kube, where[case.name], case.name)
                    c = condition(obj, "Stalled") or {}
                    if c.get("status") == "True":
                        stalled_at[case.name] = obj
            return len(stalled_at) == len(CASES)

        wait_for("every pipeline Stalled", all_stalled, timeout=START_TIMEOUT + 90, interval=0.5,
                 describe=lambda: json.dumps({c.name: (get(kube, where[c.name], c.name).get("status") or {}).get("message") for c in CASES
                                              if c.name not in stalled_at}, indent=1))
        late: list[str] = []
        wrong: list[str] = []
        for case in CASES:
            obj = stalled_at[case.name]
            c = condition(obj, "Stalled") or {}
            message = c.get("message", "")
            missing = [s for s in case.says if s not in message]
            if c.get("reason") != case.reason or missing:
                wrong.append(f"{case.name}: Stalled for {c.get('reason')} (expected {case.reason}), not saying {missing}: {message}")
            start = (parse_stamp(obj["status"]["stages"][case.after]["finishedAt"]) if case.after
                     else parse_stamp(obj["metadata"]["creationTimestamp"]))
            stalled = parse_stamp(c["lastTransitionTime"])
            assert start is not None and stalled is not None
            took = (stalled - start).total_seconds() - case.delay
            if took > STALLED_WITHIN:
                late.append(f"{case.name}: {took:.0f}s")
        assert not wrong, "\n".join(wrong)
        assert not late, f"Stalled later than {STALLED_WITHIN:.0f}s after the stage was to start: {late}"

        training = {STAGES[s].stage for s in STAGES.training}
        for ns in {*where.values()}:
            made = kube.get(f"{BATCH}/namespaces/{ns}/jobs")["items"]
            trained = [j["metadata"]["name"] for j in made if j["metadata"].get("labels", {}).get(LABEL_STAGE) in training]
            assert not trained, f"training Jobs were created in {ns}: {trained}"
        assert get(kube, namespace, "family-dry-run")["status"]["stages"]["plan"]["outcome"] == "Succeeded"

        # Refusals are not errors retried on every pass: the operator's passes keep succeeding, and a refused
        # create is tried again only after its back-off (30 s at first), not at each pass or resync.
        errors, refusals = metric(operator, "trainpipe_reconcile_errors_total"), metric(operator, "trainpipe_create_refusals_total")
        time.sleep(15)
        refused = sum(1 for case in CASES if case.reason == "CreateRefused")
        assert metric(operator, "trainpipe_reconcile_errors_total") == errors <= len(CASES), "reconcile errors keep coming"
        assert metric(operator, "trainpipe_create_refusals_total") - refusals <= refused, "refused creates are retried without a back-off"
        assert operator.running, operator.log_tail()
    finally:
        operator.stop()
