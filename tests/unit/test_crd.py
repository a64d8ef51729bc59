"""The CRD in crds/ is exactly what the typed model generates, and its schema is structural."""

from __future__ import annotations

from pathlib import Path

import jsonschema
import pytest
import yaml

from trainpipe.contract.crd import CRD_PATH, render, structural

ROOT = Path(__file__).resolve().parents[2]


def test_checked_in_crd_matches_the_models():
    on_disk = (ROOT / CRD_PATH).read_text()
    assert on_disk == render(), "crds/ drifted from trainpipe.contract.pipeline: run `make manifests` and commit the result"


def _walk(node, path="spec"):
    yield path, node
    for name, sub in (node.get("properties") or {}).items():
        yield from _walk(sub, f"{path}.{name}")
    if "items" in node:
        yield from _walk(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), dict):
        yield from _walk(node["additionalProperties"], f"{path}{{}}")


INT_OR_STRING = [{"type": "integer"}, {"type": "string"}]


@pytest.mark.parametrize("part", ["spec", "status"])
def test_schema_is_structural(part):
    schema = yaml.safe_load(render())["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"][part]
    for path, node in _walk(schema, part):
        assert "$ref" not in node and "const" not in node, path
        if node.get("x-kubernetes-int-or-string"):
            # The one union a structural schema allows (resource quantities): no type, exactly this anyOf.
            assert node["anyOf"] == INT_OR_STRING and "type" not in node, path
            continue
        assert "anyOf" not in node, path
        assert "type" in node, f"{path} has no type"
        assert not ("properties" in node and "additionalProperties" in node), path


def test_quantities_take_numbers_and_strings_and_maps_keep_their_value_types():
    stages = yaml.safe_load(render())["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]["stages"]
    limits = stages["properties"]["cpu"]["properties"]["resources"]["properties"]["limits"]
    assert limits["additionalProperties"]["x-kubernetes-int-or-string"] is True
    labels = stages["properties"]["rank"]["properties"]["podMetadata"]["properties"]["labels"]
    assert labels["additionalProperties"]["type"] == "string" and "x-kubernetes-preserve-unknown-fields" not in labels


def _openapi_to_jsonschema(node):
    """Enough of OpenAPI→JSON Schema to validate examples: nullable and boolean exclusive bounds."""
    if isinstance(node, dict):
        out = {k: _openapi_to_jsonschema(v) for k, v in node.items() if not k.startswith("x-kubernetes") and k != "nullable"}
        if node.get("nullable") and "type" in node:
            out["type"] = [node["type"], "null"]
        elif node.get("nullable"):
            out["anyOf"] = [*out["anyOf"], {"type": "null"}]
        if out.get("exclusiveMinimum") is True:
            out["exclusiveMinimum"] = out.pop("minimum")
        if out.get("exclusiveMaximum") is True:
            out["exclusiveMaximum"] = out.pop("maximum")
        return out
    if isinstance(node, list):
        return [_openapi_to_jsonschema(v) for v in node]
    return node


def test_example_manifest_validates_and_a_bad_one_names_the_field():
    schema = _openapi_to_jsonschema(yaml.safe_load(render())["spec"]["versions"][0]["schema"]["openAPIV3Schema"])
    example = yaml.safe_load((ROOT / "examples" / "demo-pipeline.yaml").read_text())
    jsonschema.validate(example, schema)
    example["spec"]["targets"]["topN"] = 0
    with pytest.raises(jsonschema.ValidationError, match="0 is less than the minimum of 1"):
        jsonschema.validate(example, schema)


def test_structural_rejects_unions_it_cannot_express():
    with pytest.raises(ValueError, match="anyOf"):
        structural({"anyOf": [{"type": "string"}, {"type": "boolean"}]}, {})


def test_manifest_literals_match_the_names_module():
    from trainpipe.contract.names import API_GROUP, API_VERSION, KIND
    from trainpipe.contract.pipeline import TrainingPipeline

    manifest = TrainingPipeline.model_validate({"metadata": {"name": "x"}})
    assert (manifest.api_version, manifest.kind) == (f"{API_GROUP}/{API_VERSION}", KIND)


def test_a_pipeline_not_yet_seen_by_the_operator_reads_as_not_observed():
    status = yaml.safe_load(render())["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["status"]
    assert status["default"] == {} and status["properties"]["observedGeneration"]["default"] == 0
