"""Our generated TrainingPipeline CRD against the real API server: accepted, defaulted, pruned, CEL-validated."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from trainpipe.contract.crd import render
from trainpipe.contract.names import API_GROUP, API_VERSION, PLURAL
from trainpipe.contract.pipeline import TrainingPipeline
from trainpipe_localcluster import ApiError, Kube, wait_for

ROOT = Path(__file__).resolve().parents[2]
CRD_NAME = f"{PLURAL}.{API_GROUP}"


@pytest.fixture(scope="module")
def installed_crd(cluster) -> str:
    """Install (or update to) exactly the CRD `make manifests` generates."""
    kube: Kube = cluster.kube
    body = yaml.safe_load(render())
    path = f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{CRD_NAME}"
    try:
        kube.create("/apis/apiextensions.k8s.io/v1/customresourcedefinitions", body)
    except ApiError as err:
        if err.status != 409:
            raise
        body["metadata"]["resourceVersion"] = kube.get(path)["metadata"]["resourceVersion"]
        kube.request("PUT", path, body)

    def served() -> bool:
        try:
            return any(r["name"] == PLURAL for r in kube.get(f"/apis/{API_GROUP}/{API_VERSION}")["resources"])
        except ApiError:
            return False

    wait_for(f"{CRD_NAME} to be served", served, timeout=30)
    return f"/apis/{API_GROUP}/{API_VERSION}"


def _example() -> dict:
    return yaml.safe_load((ROOT / "examples" / "demo-pipeline.yaml").read_text())


def test_example_pipeline_is_accepted_defaulted_and_reads_back_into_the_typed_model(kube: Kube, namespace: str, installed_crd: str) -> None:
    manifest = _example()
    del manifest["spec"]["targets"]["topN"]
    created = kube.create(f"{installed_crd}/namespaces/{namespace}/{PLURAL}", manifest)
    assert created["spec"]["targets"]["topN"] == 5  # the API server applied the model's default
    typed = TrainingPipeline.model_validate({k: v for k, v in created.items() if k in ("apiVersion", "kind", "spec")} | {"metadata": {"name": created["metadata"]["name"]}})
    assert typed.spec.training.families == ["lightgbm", "xgboost", "catboost"]


def test_unknown_fields_are_pruned(kube: Kube, namespace: str, installed_crd: str) -> None:
    manifest = _example()
    manifest["metadata"]["name"] = "typo"
    manifest["spec"]["features"]["topMFeatures"] = 10  # a typo of topM
    created = kube.create(f"{installed_crd}/namespaces/{namespace}/{PLURAL}", manifest)
    assert "topMFeatures" not in created["spec"]["features"]


@pytest.mark.parametrize(
    "section,change,message",
    [
        ("targets", {"auto": False, "include": []}, "targets.include must name targets when targets.auto is false"),
        ("features", {"auto": False}, "features.include must list features when features.auto is false"),
        ("targets", {"topN": 0}, "spec.targets.topN"),
        ("training", {"modelTypes": "everything"}, "spec.training.modelTypes"),
    ],
)
def test_invalid_pipelines_are_rejected_with_the_field(kube: Kube, namespace: str, installed_crd: str, section, change, message) -> None:
    manifest = _example()
    manifest["metadata"]["name"] = "bad"
    manifest["spec"][section].update(change)
    with pytest.raises(ApiError) as rejected:
        kube.create(f"{installed_crd}/namespaces/{namespace}/{PLURAL}", manifest)
    assert rejected.value.status == 422
    assert message in rejected.value.message


def test_a_pipeline_at_every_bound_is_admitted_and_one_past_a_bound_is_refused_naming_the_field(kube: Kube, namespace: str,
                                                                                               installed_crd: str) -> None:
    """The API server's side of contract.sizes: the largest spec fits (CEL rules included), one more item is a 422."""
    import sys

    sys.path.insert(0, str(Path(__file__).parents[1] / "unit"))
    from test_spec_size import largest_spec

    manifest = _example()
    manifest["metadata"]["name"] = "largest"
    manifest["spec"] = largest_spec()
    collection = f"{installed_crd}/namespaces/{namespace}/{PLURAL}"
    kube.create(collection, manifest)
    manifest["metadata"]["name"] = "too-large"
    manifest["spec"]["features"]["include"].append("f_one_more")
    with pytest.raises(ApiError) as rejected:
        kube.create(collection, manifest)
    assert rejected.value.status == 422 and "spec.features.include: Too many: 2001: must have at most 2000 items" in rejected.value.message
