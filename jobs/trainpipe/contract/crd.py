"""Generates the TrainingPipeline CRD from the pydantic spec (`make manifests`); never edit the YAML by hand.

Kubernetes wants a *structural* OpenAPI v3.0 schema: no $ref, nullable instead of anyOf-with-null,
boolean exclusive bounds, no additionalProperties beside properties. This module converts pydantic's
JSON Schema (2020-12) into that dialect.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from trainpipe.contract.names import API_GROUP, API_VERSION, KIND, PLURAL
from trainpipe.contract.pipeline import PipelineSpec
from trainpipe.contract.status import PipelineStatus

CRD_PATH = Path("crds") / f"{API_GROUP}_{PLURAL}.yaml"
_DROP = {"title"}
_INT_OR_STRING = "x-kubernetes-int-or-string"


def structural(schema: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    """Convert one pydantic JSON-Schema node into a structural OpenAPI v3.0 node (pure, recursive)."""
    if "$ref" in schema:
        target = defs[schema["$ref"].rsplit("/", 1)[-1]]
        merged = {**target, **{k: v for k, v in schema.items() if k != "$ref"}}
        return structural(merged, defs)
    any_of = schema.get("anyOf")
    if any_of is not None and _is_int_or_string(schema, defs):
        # The one anyOf a structural schema allows: integer or string (resource quantities).
        node = {k: v for k, v in schema.items() if k not in ("anyOf", "title") and not (k == "default" and v is None)}
        for branch in any_of:
            node.update({k: v for k, v in branch.items() if k not in ("anyOf", "type", "title")})
        node["anyOf"] = [{"type": "integer"}, {"type": "string"}]
        node[_INT_OR_STRING] = True
        if any(b.get("type") == "null" for b in any_of):
            node["nullable"] = True
        return node
    if any_of is not None:
        non_null = [s for s in any_of if s.get("type") != "null"]
        if len(non_null) != 1:
            raise ValueError(f"cannot express anyOf {any_of} structurally; use one type per field")
        rest = {k: v for k, v in schema.items() if k != "anyOf"}
        nullable = structural({**non_null[0], **rest}, defs)
        nullable["nullable"] = True
        return nullable
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key in _DROP or (key == "default" and value is None):
            continue
        if key == "additionalProperties":
            # `extra="forbid"` models say False (dropped: pruning refuses unknown keys already);
            # typed maps (labels, resources) keep their value schema.
            if isinstance(value, dict) and "properties" not in schema:
                out["additionalProperties"] = structural(value, defs)
            continue
        if key == "properties":
            out["properties"] = {name: structural(sub, defs) for name, sub in value.items()}
        elif key == "items":
            out["items"] = structural(value, defs)
        elif key == "const":
            out["enum"] = [value]
        elif key == "exclusiveMinimum":
            out["minimum"], out["exclusiveMinimum"] = value, True
        elif key == "exclusiveMaximum":
            out["maximum"], out["exclusiveMaximum"] = value, True
        else:
            out[key] = value
    if schema.get("type") == "object" and "properties" not in schema and not isinstance(schema.get("additionalProperties"), dict):
        # Free-form objects (affinity, metadata): keep their content instead of pruning it.
        out["x-kubernetes-preserve-unknown-fields"] = True
    if "enum" in out and "type" not in out:
        out["type"] = "string"
    return out


def _is_int_or_string(schema: dict[str, Any], defs: dict[str, Any]) -> bool:
    if schema.get(_INT_OR_STRING):
        return True
    branches = [defs[b["$ref"].rsplit("/", 1)[-1]] if "$ref" in b else b for b in schema.get("anyOf", [])]
    if any(b.get(_INT_OR_STRING) or _is_int_or_string(b, defs) for b in branches if "anyOf" in b or b.get(_INT_OR_STRING)):
        return True
    return {b.get("type") for b in branches if b.get("type") != "null"} == {"integer", "string"}


def _model_schema(model: type) -> dict[str, Any]:
    raw = model.model_json_schema(by_alias=True, mode="validation")  # type: ignore[attr-defined]
    defs = raw.pop("$defs", {})
    return structural(raw, defs)


def spec_schema() -> dict[str, Any]:
    return _model_schema(PipelineSpec)


def status_schema() -> dict[str, Any]:
    schema = _model_schema(PipelineStatus)
    # A pipeline the operator has not written yet reads `observedGeneration: 0` (below generation 1), so
    # kstatus readers (Flux, kubectl wait) see it InProgress instead of Current in that first moment.
    schema["default"] = {}
    schema["properties"]["observedGeneration"]["default"] = 0
    return schema


def crd() -> dict[str, Any]:
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{PLURAL}.{API_GROUP}"},
        "spec": {
            "group": API_GROUP,
            "scope": "Namespaced",
            "names": {"kind": KIND, "plural": PLURAL, "singular": KIND.lower(), "listKind": f"{KIND}List", "shortNames": ["tp", "tpipe"], "categories": ["trainpipe"]},
            "versions": [{
                "name": API_VERSION,
                "served": True,
                "storage": True,
                "subresources": {"status": {}},
                "additionalPrinterColumns": [
                    {"name": "Ready", "type": "string", "jsonPath": ".status.conditions[?(@.type=='Ready')].status"},
                    {"name": "Stage", "type": "string", "jsonPath": ".status.stage"},
                    {"name": "Progress", "type": "string", "jsonPath": ".status.progress", "description": "Units succeeded / units known in the current run"},
                    # Why it is not Ready, in one word: our reason or the kubelet's own (OOMKilled, ImagePullBackOff).
                    {"name": "Reason", "type": "string", "jsonPath": ".status.conditions[?(@.type=='Ready')].reason"},
                    {"name": "Run", "type": "string", "jsonPath": ".status.runId"},
                    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
                    {"name": "Message", "type": "string", "jsonPath": ".status.message", "priority": 1},
                ],
                "schema": {"openAPIV3Schema": {
                    "type": "object",
                    "description": "A retrain: rank targets, select features, route and plan, train CPU then GPU models.",
                    "required": ["spec"],
                    "properties": {
                        "apiVersion": {"type": "string"},
                        "kind": {"type": "string"},
                        "metadata": {"type": "object"},
                        "spec": spec_schema(),
                        "status": status_schema(),
                    },
                }},
            }],
        },
    }


def render() -> str:
    header = "# Generated by `make manifests` from trainpipe.contract.pipeline — do not edit by hand.\n"
    return header + yaml.safe_dump(crd(), sort_keys=False, width=120)


def write_generated(argv: list[str] | None, default: Path, text: Callable[[], str]) -> int:
    """`python -m <generator> [PATH]`: write the generated text atomically to PATH (or `default`), print the path."""
    args = argv if argv is not None else sys.argv[1:]
    path = Path(args[0]) if args else default
    from trainpipe.io.atomic import write_text

    write_text(path, text())
    print(path)
    return 0


def main(argv: list[str] | None = None) -> int:
    return write_generated(argv, CRD_PATH, render)


if __name__ == "__main__":
    raise SystemExit(main())
