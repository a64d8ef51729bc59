"""Manifests the tests and benchmarks create on the local cluster: plain Jobs and claims, TrainingPipelines.

Also the waits that read them back (a pipeline's conditions).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from trainpipe_localcluster.kube import ApiError, Kube, wait_for

POOL_LABEL = "trainpipe.io/pool"
GPU_RESOURCE = "nvidia.com/gpu"
GPU_TOLERATION = {"key": GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"}


def job_manifest(name: str, command: list[str], *, pool: str | None = None, gpus: int = 0,
                 backoff_limit: int = 0, claim: str | None = None, mount_path: str = "/data",
                 labels: dict[str, str] | None = None, **container: Any) -> dict[str, Any]:
    """A batch/v1 Job with one container, optionally pinned to a pool, asking for GPUs, with a claim."""
    main: dict[str, Any] = {"name": "main", "image": "ghcr.io/trainpipe/jobs-cpu:dev", "command": command,
                            "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}}, **container}
    pod: dict[str, Any] = {"restartPolicy": "Never", "containers": [main]}
    if pool:
        pod["nodeSelector"] = {POOL_LABEL: pool}
    if gpus:
        main["resources"]["limits"] = {GPU_RESOURCE: str(gpus)}  # quantities are strings
        pod["tolerations"] = [GPU_TOLERATION]
    if claim:
        main["volumeMounts"] = [{"name": "data", "mountPath": mount_path}]
        pod["volumes"] = [{"name": "data", "persistentVolumeClaim": {"claimName": claim}}]
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name, "labels": labels or {}},
            "spec": {"backoffLimit": backoff_limit, "template": {"metadata": {"labels": labels or {}}, "spec": pod}}}


def claim_manifest(name: str, size: str = "1Gi", access_modes: Sequence[str] = ("ReadWriteOnce",)) -> dict[str, Any]:
    """A PersistentVolumeClaim of the default StorageClass (served by the executor's provisioner)."""
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": name},
            "spec": {"accessModes": list(access_modes), "resources": {"requests": {"storage": size}}}}


# -- TrainingPipelines and the operator ------------------------------------------------------------
# The claim and folder examples/cluster-example-data.yaml writes the example dataset to.
EXAMPLE_CLAIM = "trainpipe-example-data"
EXAMPLE_DIR = "example"


@dataclass(frozen=True)
class ExampleData:
    """The example dataset on a claim of a test's namespace (the `example_data` fixture)."""

    claim: str  # what data.volume.claimName names
    dir: str  # what data.dir names, inside the claim
    path: Path  # the same folder on this machine (the executor's claim folder)


def pipelines_path(namespace: str, name: str | None = None) -> str:
    """REST path of a namespace's TrainingPipelines, or of one of them."""
    from trainpipe.contract.names import API_GROUP, API_VERSION, PLURAL  # the executor imports this module too

    base = f"/apis/{API_GROUP}/{API_VERSION}/namespaces/{namespace}/{PLURAL}"
    return f"{base}/{name}" if name else base


def _merge(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """Deep merge: dicts merge key by key, anything else replaces, None removes the key."""
    out = copy.deepcopy(base)
    for key, value in overrides.items():
        if value is None:
            out.pop(key, None)
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


# A run that finishes in about a minute on two cores: three symbols of the example data, one target,
# eight features, one CPU family, every stage limited to one core (its TRAINPIPE_CPUS).
_TEST_SPEC: dict[str, Any] = {
    "data": {"volume": {"claimName": EXAMPLE_CLAIM}, "dir": EXAMPLE_DIR, "symbols": ["AAPL", "NVDA", "META"]},
    "targets": {"topN": 1},
    "features": {"topM": 8},
    "training": {"families": ["lightgbm"]},
    # Three symbols are too few for the evidence gates to keep a feature and a route: the operator is under test, so the gates are off.
    "evidence": {"trainAnyway": True},
    "images": {"cpu": "ghcr.io/trainpipe/jobs-cpu:test", "gpu": "ghcr.io/trainpipe/jobs-gpu:test"},
    "stages": {stage: {"resources": {"limits": {"cpu": 1}}} for stage in ("rank", "select", "plan", "cpu", "gpu", "report")},
}


def pipeline_manifest(name: str, *, annotations: dict[str, str] | None = None, validate: bool = True,
                      **spec: Any) -> dict[str, Any]:
    """A TrainingPipeline with a small test spec; keyword arguments deep-merge into its spec.

    `pipeline_manifest("p", training={"families": ["lightgbm", "mlp"]}, suspend=True)`; a None value
    removes the field (the API server then applies the CRD's default). The result is checked against
    the typed model, so a misspelt field fails here; `validate=False` builds invalid manifests.
    """
    from trainpipe.contract.names import API_GROUP, API_VERSION, KIND

    manifest: dict[str, Any] = {"apiVersion": f"{API_GROUP}/{API_VERSION}", "kind": KIND,
                                "metadata": {"name": name}, "spec": _merge(_TEST_SPEC, spec)}
    if annotations:
        manifest["metadata"]["annotations"] = dict(annotations)
    if validate:
        from trainpipe.contract.pipeline import TrainingPipeline

        TrainingPipeline.model_validate(manifest)
    return manifest


def condition(obj: dict[str, Any], ctype: str) -> dict[str, Any] | None:
    """The condition `ctype` of an object's status, if it has one."""
    return next((c for c in (obj.get("status") or {}).get("conditions") or [] if c.get("type") == ctype), None)


def wait_condition(kube: Kube, namespace: str, name: str, ctype: str, status: str = "True", timeout: float = 120.0,
                   generation: int | None = None) -> dict[str, Any]:
    """Wait until a TrainingPipeline's condition `ctype` has `status`; return the condition.

    Only a current condition counts (kstatus): its observedGeneration, when set, must equal the
    object's metadata.generation, or `generation` when given, so a status written for an older spec
    never satisfies the wait.
    """
    path = pipelines_path(namespace, name)
    seen: dict[str, Any] = {}

    def probe() -> dict[str, Any] | None:
        try:
            obj = kube.get(path)
        except ApiError as err:
            if err.status == 404:
                return None
            raise
        seen["obj"] = obj
        cond = condition(obj, ctype)
        want = generation if generation is not None else obj["metadata"].get("generation")
        if cond and cond["status"] == status and cond.get("observedGeneration", want) == want:
            return cond
        return None

    def describe() -> str:
        obj = seen.get("obj")
        if obj is None:
            return f"TrainingPipeline {namespace}/{name} does not exist"
        return f"generation {obj['metadata'].get('generation')}, status:\n" + yaml.safe_dump(obj.get("status") or {})

    return wait_for(f"TrainingPipeline {namespace}/{name} condition {ctype}={status}", probe, timeout=timeout,
                    interval=0.5, describe=describe)
