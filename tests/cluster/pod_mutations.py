"""Test-only changes to the pods of one namespace as the API server admits them (a MutatingAdmissionPolicy).

The fault tests use it to reach into pods the Job controller creates from the operator's Jobs, without a
field in the pipeline spec or the operator for it: a fault point's environment on one unit's first pod,
or a scheduling gate that holds every pod until the test lets it go. A policy plus its binding are
cluster-scoped objects: the binding matches only the test's namespace, and both are deleted on exit.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from trainpipe_localcluster import CORE, ApiError, Kube

ADMISSION = "/apis/admissionregistration.k8s.io/v1"
# The API server loads a new policy through an informer: how long a test waits for it to act on pods.
ACTIVE_TIMEOUT = 30.0


@dataclass
class PodMutation:
    kube: Kube
    name: str

    @property
    def binding_path(self) -> str:
        return f"{ADMISSION}/mutatingadmissionpolicybindings/{self.name}"

    def unbind(self) -> None:
        """Stop mutating pods from now on (pods already admitted keep what they got)."""
        try:
            self.kube.delete(self.binding_path)
        except ApiError as err:
            if err.status != 404:
                raise

    def wait_active(self, namespace: str, sample: dict[str, Any], applied: Any) -> None:
        """Wait until a dry-run create of `sample` in `namespace` comes back mutated (`applied(pod)` true)."""
        deadline = time.monotonic() + ACTIVE_TIMEOUT
        while True:
            pod = self.kube.request("POST", f"{CORE}/namespaces/{namespace}/pods", sample, query={"dryRun": "All"})
            if applied(pod):
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"MutatingAdmissionPolicy {self.name} does not act on pods of {namespace} "
                                   f"{ACTIVE_TIMEOUT:.0f}s after its creation: {pod['spec']}")
            time.sleep(0.2)


@contextmanager
def pod_mutation(kube: Kube, namespace: str, name: str, condition: str, apply: str = "", json_patch: str = "") -> Iterator[PodMutation]:
    """Pods created in `namespace` for which CEL `condition` holds get CEL `apply` (an ApplyConfiguration
    expression over `object`: it merges into lists keyed by name, such as env) or `json_patch` (a JSONPatch
    list expression: it can replace what an apply cannot, such as a container's command), until `unbind()`
    or the end of the block."""
    if bool(apply) == bool(json_patch):
        raise ValueError("pod_mutation: give either apply or json_patch")
    mutation_spec = ({"patchType": "ApplyConfiguration", "applyConfiguration": {"expression": apply}} if apply
                     else {"patchType": "JSONPatch", "jsonPatch": {"expression": json_patch}})
    policy = {
        "apiVersion": "admissionregistration.k8s.io/v1", "kind": "MutatingAdmissionPolicy", "metadata": {"name": name},
        "spec": {
            "matchConstraints": {"resourceRules": [{"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE"],
                                                    "resources": ["pods"]}]},
            "matchConditions": [{"name": "chosen", "expression": condition}],
            # A pod the policy cannot mutate is refused rather than let through unchanged: a test must not
            # pass because its fault was never injected.
            "failurePolicy": "Fail",
            "reinvocationPolicy": "Never",
            "mutations": [mutation_spec],
        },
    }
    binding = {
        "apiVersion": "admissionregistration.k8s.io/v1", "kind": "MutatingAdmissionPolicyBinding", "metadata": {"name": name},
        "spec": {"policyName": name,
                 "matchResources": {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}}}},
    }
    kube.create(f"{ADMISSION}/mutatingadmissionpolicies", policy)
    mutation = PodMutation(kube, name)
    try:
        kube.create(f"{ADMISSION}/mutatingadmissionpolicybindings", binding)
        yield mutation
    finally:
        mutation.unbind()
        kube.delete(f"{ADMISSION}/mutatingadmissionpolicies/{name}")
