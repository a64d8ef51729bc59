"""The security settings of every stage Job's pod, as the operator builds it (manifests.job).

The local cluster's executor runs pods without enforcing any of these, so they are checked here on
the manifests, and on the live pods by tests/cluster/test_least_privilege.py.
"""

from __future__ import annotations

import posixpath
from typing import Any

import pytest

from trainpipe.contract.names import Stage
from trainpipe.contract.pipeline import PipelineSpec
from trainpipe_operator import manifests
from trainpipe_operator.config import OperatorConfig
from trainpipe_operator.manifests import JobIntent, Owner

CONFIG = OperatorConfig(cpu_image="jobs-cpu:1", gpu_image="jobs-gpu:1", job_service_account="trainpipe-jobs")
OWNER = Owner("ns", "demo", "uid-1")
SPEC = PipelineSpec.model_validate({
    "data": {"dir": "example", "volume": {"claimName": "bars"}},
    "training": {"families": ["lightgbm", "mlp"]},
    "serviceAccountName": "jobs",
    "stages": {"gpu": {"gpusPerPod": 1}},
})
INTENTS = {
    "rank": JobIntent(Stage.RANK, None, 0, 1),
    "select": JobIntent(Stage.SELECT, None, 0, 3),
    "plan": JobIntent(Stage.PLAN, None, 0, 1),
    "cpu": JobIntent(Stage.CPU, "lightgbm", 0, 4, "d" * 64),
    "gpu": JobIntent(Stage.GPU, "mlp", 1, 2, "d" * 64),
    "report": JobIntent(Stage.REPORT, None, 0, 1),
}


def pod_spec(stage: str, spec: PipelineSpec = SPEC) -> dict[str, Any]:
    return manifests.job(spec, OWNER, "r0123456789", INTENTS[stage], CONFIG, suspend=False)["spec"]["template"]["spec"]


def mounted_at(spec: dict[str, Any], container: dict[str, Any], path: str) -> dict[str, Any] | None:
    """The volume whose mount holds `path` (the deepest mount that is a parent of it), or None."""
    mounts = [m for m in container["volumeMounts"] if path == m["mountPath"] or path.startswith(m["mountPath"].rstrip("/") + "/")]
    if not mounts:
        return None
    deepest = max(mounts, key=lambda m: len(m["mountPath"]))
    return next(v for v in spec["volumes"] if v["name"] == deepest["name"])


@pytest.mark.parametrize("stage", list(INTENTS))
def test_every_stage_pod_runs_non_root_without_privileges_capabilities_or_an_api_token(stage: str) -> None:
    spec = pod_spec(stage)
    [container] = spec["containers"]
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    ctx = container["securityContext"]
    assert ctx["allowPrivilegeEscalation"] is False and not ctx.get("privileged")
    assert ctx["capabilities"] == {"drop": ["ALL"]}
    assert ctx["readOnlyRootFilesystem"] is True
    # A ServiceAccount named by the spec (or the operator's default) still gets no token mounted.
    assert spec["serviceAccountName"] == "jobs" and spec["automountServiceAccountToken"] is False
    assert not (spec.get("hostNetwork") or spec.get("hostPID") or spec.get("hostIPC"))


@pytest.mark.parametrize("stage", list(INTENTS))
def test_every_path_a_stage_writes_is_a_volume_because_its_root_filesystem_is_read_only(stage: str) -> None:
    spec = pod_spec(stage)
    [container] = spec["containers"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    for scratch in (env["HOME"], env["TMPDIR"], env["MPLCONFIGDIR"], container["workingDir"]):
        assert "emptyDir" in (mounted_at(spec, container, scratch) or {}), f"{scratch} is not on an emptyDir"
    out = container["args"][container["args"].index("--output-dir") + 1]
    assert mounted_at(spec, container, out)["persistentVolumeClaim"]["claimName"] == "demo-artifacts"
    assert posixpath.dirname(container["terminationMessagePath"]) == "/dev"  # the kubelet provides it on any root filesystem
    # The data claim is mounted read-only: a stage can never damage its input.
    data = next(m for m in container["volumeMounts"] if m["name"] == "data")
    assert data["readOnly"] is True and mounted_at(spec, container, data["mountPath"])["persistentVolumeClaim"]["readOnly"] is True


def test_each_job_gets_its_own_security_context_objects() -> None:
    # Manifests are plain dicts that callers may edit: one Job's edit must never reach the next Job.
    first, second = pod_spec("rank"), pod_spec("plan")
    first["securityContext"]["runAsNonRoot"] = False
    first["containers"][0]["securityContext"]["capabilities"]["drop"].clear()
    assert second["securityContext"]["runAsNonRoot"] is True
    assert second["containers"][0]["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert pod_spec("rank")["securityContext"]["runAsNonRoot"] is True
