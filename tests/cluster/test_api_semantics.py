"""API-server semantics the operator relies on and kmock lacks: CRD pruning, CEL validation, GC."""

from __future__ import annotations

import uuid

import pytest

from trainpipe_localcluster import BATCH, CORE, ApiError, Cluster, Kube, wait_for

GROUP = "cluster-tier.trainpipe.io"


@pytest.fixture
def crd(kube: Kube) -> str:
    """A namespaced CRD with a structural schema and a CEL rule; removed after the test."""
    plural = f"retrains{uuid.uuid4().hex[:6]}"  # unique: CRDs are cluster-scoped, namespaces are per test
    body = {
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{GROUP}"},
        "spec": {
            "group": GROUP, "scope": "Namespaced",
            "names": {"plural": plural, "singular": plural[:-1], "kind": "Retrain" + plural[-6:].upper()},
            "versions": [{
                "name": "v1", "served": True, "storage": True,
                "schema": {"openAPIV3Schema": {
                    "type": "object",
                    "properties": {"spec": {
                        "type": "object",
                        "properties": {"epochs": {"type": "integer", "minimum": 1},
                                       "minEpochs": {"type": "integer", "minimum": 1}},
                        "x-kubernetes-validations": [{
                            "rule": "!has(self.minEpochs) || self.minEpochs <= self.epochs",
                            "message": "minEpochs must not exceed epochs"}],
                    }},
                }},
            }],
        },
    }
    kube.create("/apis/apiextensions.k8s.io/v1/customresourcedefinitions", body)

    def established() -> bool:
        crd = kube.get(f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{plural}.{GROUP}")
        conditions = (crd.get("status") or {}).get("conditions") or []
        return any(c["type"] == "Established" and c["status"] == "True" for c in conditions)

    wait_for(f"CRD {plural}.{GROUP} to be established", established, timeout=30)
    # Discovery of a new CRD takes a moment even after Established: wait until its path serves.
    wait_for(f"/apis/{GROUP}/v1 to serve {plural}",
             lambda: any(r["name"] == plural for r in _resources(kube)), timeout=30)
    yield plural
    kube.delete(f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{plural}.{GROUP}")


def _resources(kube: Kube) -> list[dict]:
    try:
        return kube.get(f"/apis/{GROUP}/v1")["resources"]
    except ApiError:
        return []


def test_structural_schema_prunes_unknown_fields(kube: Kube, namespace: str, crd: str) -> None:
    kind = "Retrain" + crd[-6:].upper()
    created = kube.create(f"/apis/{GROUP}/v1/namespaces/{namespace}/{crd}", {
        "apiVersion": f"{GROUP}/v1", "kind": kind, "metadata": {"name": "daily"},
        "spec": {"epochs": 5, "learningRateTypo": 0.1}})
    assert created["spec"] == {"epochs": 5}
    stored = kube.get(f"/apis/{GROUP}/v1/namespaces/{namespace}/{crd}/daily")
    assert stored["spec"] == {"epochs": 5}


def test_cel_rule_rejects_a_bad_object_with_its_message(kube: Kube, namespace: str, crd: str) -> None:
    kind = "Retrain" + crd[-6:].upper()
    with pytest.raises(ApiError) as rejected:
        kube.create(f"/apis/{GROUP}/v1/namespaces/{namespace}/{crd}", {
            "apiVersion": f"{GROUP}/v1", "kind": kind, "metadata": {"name": "bad"},
            "spec": {"epochs": 2, "minEpochs": 3}})
    assert rejected.value.status == 422
    assert rejected.value.reason == "Invalid"
    assert "minEpochs must not exceed epochs" in rejected.value.message
    assert not kube.exists(f"/apis/{GROUP}/v1/namespaces/{namespace}/{crd}/bad")
    with pytest.raises(ApiError) as too_small:
        kube.create(f"/apis/{GROUP}/v1/namespaces/{namespace}/{crd}", {
            "apiVersion": f"{GROUP}/v1", "kind": kind, "metadata": {"name": "zero"}, "spec": {"epochs": 0}})
    assert "should be greater than or equal to 1" in too_small.value.message


def test_deleting_the_owner_garbage_collects_owned_objects(cluster: Cluster, kube: Kube, namespace: str) -> None:
    ns_path = f"{CORE}/namespaces/{namespace}"
    owner = kube.create(f"{ns_path}/configmaps", {"apiVersion": "v1", "kind": "ConfigMap",
                                                   "metadata": {"name": "pipeline"}, "data": {"run": "1"}})
    ref = {"apiVersion": "v1", "kind": "ConfigMap", "name": "pipeline", "uid": owner["metadata"]["uid"],
           "controller": True, "blockOwnerDeletion": True}
    kube.create(f"{ns_path}/configmaps", {"apiVersion": "v1", "kind": "ConfigMap",
                                          "metadata": {"name": "plan", "ownerReferences": [ref]}, "data": {}})
    kube.create(f"{BATCH}/namespaces/{namespace}/jobs", {
        "apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "stage", "ownerReferences": [ref]},
        "spec": {"template": {"metadata": {"labels": {"executor.trainpipe.io/skip": "true"}},
                              "spec": {"restartPolicy": "Never", "containers": [
                                  {"name": "main", "image": "busybox", "command": ["true"]}]}}}})
    kube.create(f"{ns_path}/secrets", {"apiVersion": "v1", "kind": "Secret",
                                       "metadata": {"name": "unrelated"}, "stringData": {"k": "v"}})

    kube.delete(f"{ns_path}/configmaps/pipeline")

    wait_for("the garbage collector to delete the owned ConfigMap and Job",
             lambda: not kube.exists(f"{ns_path}/configmaps/plan")
             and not kube.exists(f"{BATCH}/namespaces/{namespace}/jobs/stage"),
             timeout=60, describe=lambda: cluster.dump(namespace))
    assert kube.exists(f"{ns_path}/secrets/unrelated")
