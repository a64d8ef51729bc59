"""The jobs-gpu image in a real container on the real node: a tiny MLP (TensorFlow) and LSTM (PyTorch) on CPU.

Not part of `make test`: the image holds two CUDA stacks (several GB; BENCHMARKS.md, "Images") and its
build and push alone would take most of the suite's time budget. `make test-gpu-image` builds it,
pushes it to the local cluster's registry and runs this module (marker `gpu_image`). On this machine
there is no GPU: both frameworks fall back to the CPU, which is what the stage does on a GPU node whose
GPU is missing; on a GPU node the same image sees it (CUDA libraries come with the wheels, the driver
with the node).
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from trainpipe_localcluster import BATCH, CORE, Cluster, ExampleData, Kube, claim_manifest, job_condition, pods_of_job, wait_for
from trainpipe_localcluster.node import RealNode

pytestmark = pytest.mark.gpu_image
APP_UID = 10001


@pytest.fixture(scope="module")
def gpu_image(registry_image: Callable[[str], str], real_node: RealNode) -> str:
    return registry_image("jobs-gpu")


def test_the_gpu_image_trains_an_mlp_and_an_lstm_on_cpu_in_a_real_container(
        cluster: Cluster, kube: Kube, namespace: str, example_data: ExampleData, real_node: RealNode, gpu_image: str) -> None:
    kube.create(f"{CORE}/namespaces/{namespace}/persistentvolumeclaims", claim_manifest("out"))
    job = {
        "apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "gpu-smoke"},
        "spec": {"backoffLimit": 0, "template": {"spec": {
            "restartPolicy": "Never", "automountServiceAccountToken": False,
            "securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
            **real_node.placement(),
            "containers": [{
                "name": "main", "image": gpu_image,
                # Two symbols carry no evidence of skill (the run would end NoEvidence): the image is under test, so it trains anyway.
                "args": ["run", "--data-dir", f"/data/{example_data.dir}", "--symbols", "AAPL", "NVDA", "--top-n-targets", "1",
                         "--top-m-features", "4", "--families", "mlp", "lstm", "--train-anyway", "--output-dir", "/out/smoke"],
                "env": [{"name": n, "value": "/tmp"} for n in ("HOME", "TMPDIR", "MPLCONFIGDIR")],
                "resources": {"requests": {"cpu": "1", "memory": "2Gi"}, "limits": {"cpu": "2", "memory": "8Gi"}},
                "securityContext": {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True, "capabilities": {"drop": ["ALL"]}},
                "volumeMounts": [{"name": "data", "mountPath": "/data", "readOnly": True}, {"name": "out", "mountPath": "/out"},
                                 {"name": "tmp", "mountPath": "/tmp"}],
            }],
            "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": example_data.claim, "readOnly": True}},
                        {"name": "out", "persistentVolumeClaim": {"claimName": "out"}},
                        {"name": "tmp", "emptyDir": {"sizeLimit": "2Gi"}}],
        }}},
    }
    kube.create(f"{BATCH}/namespaces/{namespace}/jobs", job)
    done = wait_for("the GPU image's run to finish", lambda: next(
        (c for c in ("Complete", "Failed") if job_condition(kube, namespace, "gpu-smoke", c)), None), timeout=1800, interval=2,
        describe=lambda: cluster.dump(namespace))
    [pod] = pods_of_job(kube, namespace, "gpu-smoke")
    logs = cluster.kubectl("logs", "-n", namespace, pod["metadata"]["name"], check=False).stdout
    assert done == "Complete", f"the run failed on the real node:\n{logs[-4000:]}"
    assert pod["spec"]["nodeName"] == real_node.name
    out = cluster.claim_dir(namespace, "out") / "smoke"
    for family in ("mlp", "lstm"):
        metrics = list(out.glob(f"models/*/{family}/metrics.json"))
        assert metrics, f"no {family} model was trained:\n{logs[-4000:]}"
        assert all(p.stat().st_uid == APP_UID for p in metrics)
    assert (out / "report.html").exists()
