"""Jobs on the simulated node pool: GPU placement, real execution, retries, unschedulable requests."""

from __future__ import annotations

import re

from trainpipe_localcluster import (
    BATCH,
    CORE,
    GPU_RESOURCE,
    Cluster,
    Kube,
    claim_manifest,
    job_condition,
    job_manifest,
    pods_of_job,
    wait_for,
)


def test_gpu_job_runs_on_a_gpu_node_and_writes_into_its_claim(cluster: Cluster, kube: Kube, namespace: str) -> None:
    kube.create(f"{CORE}/namespaces/{namespace}/persistentvolumeclaims", claim_manifest("artefacts"))
    script = ("import os, pathlib; "
              "pathlib.Path('/data/model.txt').write_text(f\"trained on {os.environ['NODE']} with gpu\"); "
              "print('wrote', '/data/model.txt')")
    job = job_manifest("train-gpu", ["python", "-c", script], pool="gpu", gpus=1, claim="artefacts",
                       env=[{"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}])
    kube.create(f"{BATCH}/namespaces/{namespace}/jobs", job)

    complete = wait_for("Job train-gpu to complete", lambda: job_condition(kube, namespace, "train-gpu", "Complete"),
                        timeout=60, describe=lambda: cluster.dump(namespace))
    assert complete["reason"] == "CompletionsReached"
    [pod] = pods_of_job(kube, namespace, "train-gpu")
    node = kube.get(f"{CORE}/nodes/{pod['spec']['nodeName']}")
    assert node["metadata"]["labels"]["trainpipe.io/pool"] == "gpu"
    assert pod["status"]["phase"] == "Succeeded"
    assert pod["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"] == 0
    written = (cluster.claim_dir(namespace, "artefacts") / "model.txt").read_text()
    assert written == f"trained on {pod['spec']['nodeName']} with gpu"
    log = cluster.pod_log(namespace, pod["metadata"]["name"])
    assert f"wrote {cluster.claim_dir(namespace, 'artefacts')}/model.txt" in log


def test_failing_job_is_retried_up_to_its_backoff_limit_then_fails(cluster: Cluster, kube: Kube,
                                                                   namespace: str) -> None:
    script = "echo 'loss is NaN at epoch 3' > /dev/termination-log; echo attempt on $HOSTNAME; exit 1"
    kube.create(f"{BATCH}/namespaces/{namespace}/jobs",
                job_manifest("diverges", ["sh", "-c", script], pool="cpu", backoff_limit=2))

    failed = wait_for("Job diverges to fail", lambda: job_condition(kube, namespace, "diverges", "Failed"),
                      timeout=90, interval=0.5, describe=lambda: cluster.dump(namespace))
    assert failed["reason"] == "BackoffLimitExceeded"
    assert "backoff limit" in failed["message"]
    status = kube.get(f"{BATCH}/namespaces/{namespace}/jobs/diverges")["status"]
    assert status["failed"] == 3  # the first try + backoffLimit retries
    pods = pods_of_job(kube, namespace, "diverges")
    assert len(pods) == 3
    for pod in pods:
        assert pod["status"]["phase"] == "Failed"
        terminated = pod["status"]["containerStatuses"][0]["state"]["terminated"]
        assert (terminated["exitCode"], terminated["reason"]) == (1, "Error")
        assert terminated["message"].strip() == "loss is NaN at epoch 3"
        assert cluster.pod_log(namespace, pod["metadata"]["name"]).strip() == f"attempt on {pod['metadata']['name']}"


def test_job_asking_for_more_gpus_than_any_node_has_stays_pending(cluster: Cluster, kube: Kube, namespace: str) -> None:
    kube.create(f"{BATCH}/namespaces/{namespace}/jobs",
                job_manifest("too-big", ["python", "-c", "print('never runs')"], pool="gpu", gpus=2))

    def unschedulable() -> dict | None:
        for pod in pods_of_job(kube, namespace, "too-big"):
            for cond in (pod.get("status") or {}).get("conditions") or []:
                if cond["type"] == "PodScheduled" and cond["status"] == "False":
                    return {"pod": pod, "condition": cond}
        return None

    found = wait_for("the scheduler to report the pod unschedulable", unschedulable, timeout=30,
                     describe=lambda: cluster.dump(namespace))
    cond = found["condition"]
    assert cond["reason"] == "Unschedulable"
    assert f"Insufficient {GPU_RESOURCE}" in cond["message"]
    assert re.search(r"0/\d+ nodes are available", cond["message"]), cond["message"]
    pod = kube.get(f"{CORE}/namespaces/{namespace}/pods/{found['pod']['metadata']['name']}")
    assert pod["status"]["phase"] == "Pending"
    assert not pod["spec"].get("nodeName")
    assert job_condition(kube, namespace, "too-big", "Complete") is None
