"""Scratch (/tmp) of every stage pod, as the operator builds it (manifests.job): a bounded emptyDir, and as
much ephemeral storage requested as it may grow to, so the scheduler counts the node disk a pod can fill."""

from __future__ import annotations

from typing import Any

import pytest

from trainpipe.contract.names import Stage
from trainpipe.contract.pipeline import PipelineSpec
from trainpipe_operator import manifests
from trainpipe_operator.config import OperatorConfig
from trainpipe_operator.manifests import JobIntent, Owner

CONFIG = OperatorConfig(cpu_image="jobs-cpu:1", gpu_image="jobs-gpu:1")
OWNER = Owner("ns", "demo", "uid-1")
BASE = {"data": {"dir": "example", "volume": {"claimName": "bars"}}, "training": {"families": ["lightgbm", "mlp"]}}
INTENTS = {
    "rank": JobIntent(Stage.RANK, None, 0, 1),
    "select": JobIntent(Stage.SELECT, None, 0, 3),
    "plan": JobIntent(Stage.PLAN, None, 0, 1),
    "cpu": JobIntent(Stage.CPU, "lightgbm", 0, 4, "d" * 64),
    "gpu": JobIntent(Stage.GPU, "mlp", 0, 2, "d" * 64),
    "report": JobIntent(Stage.REPORT, None, 0, 1),
}


def pod(stage: str, **stages: Any) -> dict[str, Any]:
    spec = PipelineSpec.model_validate({**BASE, "stages": stages})
    return manifests.job(spec, OWNER, "r0123456789", INTENTS[stage], CONFIG, suspend=False)["spec"]["template"]["spec"]


def scratch(pod_spec: dict[str, Any]) -> dict[str, Any]:
    [container] = pod_spec["containers"]
    [mount] = [m for m in container["volumeMounts"] if m["mountPath"] == manifests.SCRATCH]
    return next(v for v in pod_spec["volumes"] if v["name"] == mount["name"])


@pytest.mark.parametrize("stage", list(INTENTS))
def test_every_stage_pod_requests_the_ephemeral_storage_its_bounded_scratch_may_fill(stage: str) -> None:
    spec = pod(stage)
    assert scratch(spec) == {"name": "scratch", "emptyDir": {"sizeLimit": "2Gi"}}
    assert spec["containers"][0]["resources"]["requests"]["ephemeral-storage"] == "2Gi"


@pytest.mark.parametrize(("settings", "requests", "limits"), [
    # the stage's own scratch limit is what its pods request
    ({"scratchSizeLimit": "10Gi"}, {"ephemeral-storage": "10Gi"}, None),
    # beside the stage's other requests, which stay as they are
    ({"resources": {"requests": {"cpu": 2}, "limits": {"cpu": 4}}}, {"cpu": "2", "ephemeral-storage": "2Gi"}, {"cpu": "4"}),
    # a request of the user's own wins
    ({"resources": {"requests": {"ephemeral-storage": "5Gi"}}}, {"ephemeral-storage": "5Gi"}, None),
    # a limit alone is the request too (Kubernetes defaults one to the other): none added, which could exceed it
    ({"resources": {"limits": {"ephemeral-storage": "1Gi"}}}, None, {"ephemeral-storage": "1Gi"}),
    # a family's own resources replace the stage's, and get the scratch request too
    ({"families": {"lightgbm": {"limits": {"cpu": 6}}}}, {"ephemeral-storage": "2Gi"}, {"cpu": "6"}),
])
def test_the_scratch_request_yields_to_what_the_stage_sets(settings: dict[str, Any], requests: dict[str, str] | None,
                                                           limits: dict[str, str] | None) -> None:
    resources = pod("cpu", cpu=settings)["containers"][0]["resources"]
    assert resources.get("requests") == requests and resources.get("limits") == limits
