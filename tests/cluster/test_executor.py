"""The pod executor: what a pod's container sees when it runs on the host, and how pods end."""

from __future__ import annotations

from pathlib import Path

from clusterkit import (
    BATCH,
    CORE,
    Cluster,
    Kube,
    claim_manifest,
    job_condition,
    job_manifest,
    pods_of_job,
    wait_for,
)


def _pod(name: str, command: list[str], **spec: object) -> dict:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"restartPolicy": "Never", "terminationGracePeriodSeconds": 1,
                     "containers": [{"name": "main", "image": "busybox", "command": command}], **spec}}


def _phase(kube: Kube, namespace: str, pod: str) -> str:
    return kube.get(f"{CORE}/namespaces/{namespace}/pods/{pod}").get("status", {}).get("phase", "")


def test_container_sees_configmap_files_env_and_working_dir(cluster: Cluster, kube: Kube, namespace: str) -> None:
    ns = f"{CORE}/namespaces/{namespace}"
    kube.create(f"{ns}/configmaps", {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "plan"},
                                     "data": {"plan.yaml": "families: [lightgbm]\n", "STAGE": "cpu"}})
    kube.create(f"{ns}/persistentvolumeclaims", claim_manifest("work"))
    script = ("import os, pathlib; "
              "plan = pathlib.Path('/etc/plan/plan.yaml').read_text().strip(); "
              "pathlib.Path('out.txt').write_text(f\"{os.getcwd()}|{plan}|{os.environ['STAGE']}|{os.environ['RUN']}\")")
    pod = _pod("configured", ["python", "-c", script], volumes=[
        {"name": "plan", "configMap": {"name": "plan", "items": [{"key": "plan.yaml", "path": "plan.yaml"}]}},
        {"name": "work", "persistentVolumeClaim": {"claimName": "work"}}])
    main = pod["spec"]["containers"][0]
    main.update(workingDir="/work/run-7", envFrom=[{"configMapRef": {"name": "plan"}}],
                env=[{"name": "RUN", "value": "7"}],
                volumeMounts=[{"name": "plan", "mountPath": "/etc/plan"}, {"name": "work", "mountPath": "/work"}])
    kube.create(f"{ns}/pods", pod)

    wait_for("pod configured to finish", lambda: _phase(kube, namespace, "configured") in ("Succeeded", "Failed"),
             timeout=30, describe=lambda: cluster.dump(namespace))
    assert _phase(kube, namespace, "configured") == "Succeeded", cluster.pod_log(namespace, "configured")
    folder = cluster.claim_dir(namespace, "work") / "run-7"
    assert (folder / "out.txt").read_text() == f"{folder}|families: [lightgbm]|cpu|7"


def test_labelled_pods_complete_without_running(cluster: Cluster, kube: Kube, namespace: str, tmp_path) -> None:
    marker = tmp_path / "ran"
    job = job_manifest("scale", ["touch", str(marker)], labels={"executor.trainpipe.io/skip": "true"})
    job["spec"].update(completions=20, parallelism=20)
    kube.create(f"{BATCH}/namespaces/{namespace}/jobs", job)
    wait_for("Job scale to complete", lambda: job_condition(kube, namespace, "scale", "Complete"),
             timeout=60, describe=lambda: cluster.dump(namespace))
    assert kube.get(f"{BATCH}/namespaces/{namespace}/jobs/scale")["status"]["succeeded"] == 20
    assert not marker.exists()


def test_on_failure_restarts_the_container_in_place(cluster: Cluster, kube: Kube, namespace: str) -> None:
    kube.create(f"{CORE}/namespaces/{namespace}/persistentvolumeclaims", claim_manifest("state"))
    # Fails on the first run, succeeds on the second: the counter lives on the claim.
    script = "n=$(cat /state/n 2>/dev/null || echo 0); echo $((n+1)) > /state/n; [ $n -ge 1 ]"
    job = job_manifest("flaky", ["sh", "-c", script], claim="state", mount_path="/state", backoff_limit=3)
    job["spec"]["template"]["spec"]["restartPolicy"] = "OnFailure"
    kube.create(f"{BATCH}/namespaces/{namespace}/jobs", job)
    wait_for("Job flaky to complete", lambda: job_condition(kube, namespace, "flaky", "Complete"),
             timeout=60, describe=lambda: cluster.dump(namespace))
    [pod] = pods_of_job(kube, namespace, "flaky")
    status = pod["status"]["containerStatuses"][0]
    assert status["restartCount"] == 1
    assert status["lastState"]["terminated"]["exitCode"] == 1
    assert (cluster.claim_dir(namespace, "state") / "n").read_text().strip() == "2"


def test_deleting_a_running_pod_stops_its_process(cluster: Cluster, kube: Kube, namespace: str) -> None:
    kube.create(f"{CORE}/namespaces/{namespace}/pods", _pod("sleeper", ["sleep", "300"]))

    def pid() -> int | None:
        pod = kube.get(f"{CORE}/namespaces/{namespace}/pods/sleeper")
        for status in pod.get("status", {}).get("containerStatuses", []):
            if "running" in status["state"] and status.get("containerID", "").removeprefix("executor://"):
                return int(status["containerID"].removeprefix("executor://"))
        return None

    process = wait_for("pod sleeper to run its process", pid, timeout=30, describe=lambda: cluster.dump(namespace))
    assert Path(f"/proc/{process}/cmdline").read_bytes().split(b"\0")[1:2] == [b"300"]
    kube.delete(f"{CORE}/namespaces/{namespace}/pods/sleeper")
    wait_for("pod sleeper to be gone", lambda: not kube.exists(f"{CORE}/namespaces/{namespace}/pods/sleeper"),
             timeout=30)
    wait_for(f"process {process} to be stopped", lambda: not Path(f"/proc/{process}").exists(), timeout=10)


def test_container_without_command_fails_with_what_to_do(cluster: Cluster, kube: Kube, namespace: str) -> None:
    pod = _pod("no-command", [])
    del pod["spec"]["containers"][0]["command"]
    kube.create(f"{CORE}/namespaces/{namespace}/pods", pod)
    wait_for("pod no-command to fail", lambda: _phase(kube, namespace, "no-command") == "Failed", timeout=30,
             describe=lambda: cluster.dump(namespace))
    status = kube.get(f"{CORE}/namespaces/{namespace}/pods/no-command")["status"]["containerStatuses"][0]
    assert "set `command`" in status["state"]["terminated"]["message"]
