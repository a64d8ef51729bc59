"""The pod executor: what a pod's container sees when it runs on the host, and how pods end."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from trainpipe.contract.quantity import parse_quantity
from trainpipe_localcluster import (
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
from trainpipe_localcluster.executor import EXIT_FORMAT, EXIT_LINE, resource_field_value, wait_with_peak


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


NODE = {"cpu": "8", "memory": "32Gi", "ephemeral-storage": "200Gi"}


@pytest.mark.parametrize("resource,resources,divisor,value", [
    # Whole cores, rounded up: what a stage reads as TRAINPIPE_CPUS.
    ("limits.cpu", {"limits": {"cpu": "1500m"}}, "1", "2"),
    ("limits.cpu", {"limits": {"cpu": "100m"}}, None, "1"),
    ("limits.cpu", {"limits": {"cpu": 3}}, None, "3"),
    ("limits.cpu", {"limits": {"cpu": "1500m"}}, "1m", "1500"),
    ("limits.cpu", {"limits": {"cpu": "1n"}}, "1m", "1"),  # millicores round up first
    # No limit: the node's allocatable, as the kubelet defaults it for the downward API.
    ("limits.cpu", {"requests": {"cpu": "1"}}, None, "8"),
    ("limits.memory", {}, "1Gi", "32"),
    ("limits.ephemeral-storage", {}, "1G", "215"),  # 200Gi = 214.7G
    # Requests are never defaulted from the node.
    ("requests.cpu", {}, None, "0"),
    ("requests.cpu", {"requests": {"cpu": "250m"}}, "1", "1"),
    ("limits.memory", {"limits": {"memory": "1Gi"}}, None, str(2**30)),
    ("limits.memory", {"limits": {"memory": "1G"}}, "1Mi", "954"),  # 953.67 rounds up
    ("requests.memory", {"requests": {"memory": "64Mi"}}, "1Mi", "64"),
    ("requests.hugepages-2Mi", {"requests": {"hugepages-2Mi": "4Mi"}}, "2Mi", "2"),
])
def test_resource_field_values_round_up_like_a_kubelet(resource, resources, divisor, value) -> None:
    assert resource_field_value(resource, resources, NODE, divisor) == value


@pytest.mark.parametrize("resource,divisor,message", [
    ("limits.nvidia.com/gpu", None, "only limits"),
    ("cpu", None, "only limits"),
    ("limits.cpu", "0m", "must be positive"),
])
def test_unsupported_resource_fields_are_refused(resource, divisor, message) -> None:
    with pytest.raises(ValueError, match=message):
        resource_field_value(resource, {"limits": {"cpu": "1"}}, NODE, divisor)


def test_a_containers_exit_code_and_peak_resident_set_are_read_when_it_ends() -> None:
    """The peak a pod's memory limit would have to hold, from wait4: here a child that holds 300 MiB at once."""
    big = subprocess.Popen([sys.executable, "-c", "block = b'x' * (300 * 2**20); raise SystemExit(3)"])
    code, peak_kib = wait_with_peak(big)
    assert code == 3 and big.returncode == 3
    assert peak_kib is not None and peak_kib >= 300 * 1024
    small = subprocess.Popen([sys.executable, "-c", "import os, signal; os.kill(os.getpid(), signal.SIGKILL)"])
    code, peak_kib = wait_with_peak(small)
    assert code == -9 and peak_kib is not None and peak_kib < 300 * 1024
    # The line the executor logs is the one benchmarks parse.
    line = EXIT_LINE.search("2026-12-08 INFO " + EXIT_FORMAT % ("ns-1", "p-abc-rank-groups-0-x7k2q", "main", 3, "307200 KiB"))
    assert line is not None and (line["ns"], line["pod"], line["code"], line["kib"]) == ("ns-1", "p-abc-rank-groups-0-x7k2q", "3", "307200")


def test_container_sees_resource_fields_as_a_kubelet_computes_them(cluster: Cluster, kube: Kube,
                                                                    namespace: str) -> None:
    def ref(name: str, resource: str, divisor: str, container: str | None = None) -> dict:
        field = {"resource": resource, "divisor": divisor} | ({"containerName": container} if container else {})
        return {"name": name, "valueFrom": {"resourceFieldRef": field}}

    echo = "echo $CPUS $NODE_CPUS $REQUEST_MILLI $MEMORY_MI $(cat /etc/pod/memory-mi)"
    pod = _pod("sized", ["sh", "-c", echo], nodeSelector={"trainpipe.io/pool": "cpu"}, volumes=[
        {"name": "pod", "downwardAPI": {"items": [
            {"path": "memory-mi", "resourceFieldRef": {"containerName": "main", "resource": "limits.memory",
                                                      "divisor": "1Mi"}}]}}])
    pod["spec"]["containers"].append({"name": "unlimited", "image": "busybox", "command": ["sh", "-c", echo],
                                      "resources": {"requests": {"cpu": "250m", "memory": "64Mi"}},
                                      "volumeMounts": [{"name": "pod", "mountPath": "/etc/pod"}],
                                      "env": [ref("CPUS", "limits.cpu", "1"), ref("NODE_CPUS", "limits.cpu", "1"),
                                              ref("REQUEST_MILLI", "requests.cpu", "1m"),
                                              ref("MEMORY_MI", "limits.memory", "1Mi", container="main")]})
    main = pod["spec"]["containers"][0]
    main["resources"] = {"limits": {"cpu": "1500m", "memory": "1Gi"}}  # requests default to the limits
    main["volumeMounts"] = [{"name": "pod", "mountPath": "/etc/pod"}]
    main["env"] = [ref("CPUS", "limits.cpu", "1"), ref("NODE_CPUS", "limits.cpu", "1"),
                   ref("REQUEST_MILLI", "requests.cpu", "1m"), ref("MEMORY_MI", "limits.memory", "1Mi")]
    kube.create(f"{CORE}/namespaces/{namespace}/pods", pod)

    wait_for("pod sized to finish", lambda: _phase(kube, namespace, "sized") in ("Succeeded", "Failed"),
             timeout=30, describe=lambda: cluster.dump(namespace))
    assert _phase(kube, namespace, "sized") == "Succeeded", cluster.dump(namespace)
    node = kube.get(f"{CORE}/namespaces/{namespace}/pods/sized")["spec"]["nodeName"]
    node_cpus = str(parse_quantity(kube.get(f"{CORE}/nodes/{node}")["status"]["allocatable"]["cpu"]))
    # main: 1.5 cores -> 2; limit set, so NODE_CPUS is the limit too; request 1500m; 1Gi = 1024Mi.
    assert cluster.pod_log(namespace, "sized", "main").split() == ["2", "2", "1500", "1024", "1024"]
    # unlimited: no cpu limit -> the node's allocatable; its memory var names container main.
    assert cluster.pod_log(namespace, "sized", "unlimited").split() == [node_cpus, node_cpus, "250", "1024", "1024"]


def test_a_pod_gets_a_projected_token_of_its_service_account_at_the_kubelet_path(cluster: Cluster, kube: Kube, namespace: str) -> None:
    """As a kubelet mounts it: token (bound to the pod), ca.crt and namespace; the official client's
    in-cluster config finds them and authenticates as the pod's ServiceAccount."""
    ns = f"{CORE}/namespaces/{namespace}"
    kube.create(f"{ns}/serviceaccounts", {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "reader"}})
    script = ("import json, pathlib; from kubernetes import client, config; "
              "base = pathlib.Path('/var/run/secrets/kubernetes.io/serviceaccount'); "
              "config.load_incluster_config(); api = client.ApiClient(); "
              "review = api.call_api(*api.param_serialize('POST', '/apis/authentication.k8s.io/v1/selfsubjectreviews', "
              "body={'apiVersion': 'authentication.k8s.io/v1', 'kind': 'SelfSubjectReview'}, "
              "header_params={'Content-Type': 'application/json', 'Accept': 'application/json'}, auth_settings=['BearerToken'])); "
              "info = json.loads(review.read())['status']['userInfo']; "
              "print(json.dumps({'user': info['username'], 'pod': info.get('extra', {}).get('authentication.kubernetes.io/pod-name'), "
              "'namespace': (base / 'namespace').read_text()}))")
    kube.create(f"{ns}/pods", _pod("token", ["python", "-c", script], serviceAccountName="reader"))
    kube.create(f"{ns}/pods", _pod("no-token", ["python", "-c", "import os; assert not os.path.exists("
                                                "'/var/run/secrets/kubernetes.io/serviceaccount/token')"],
                                   automountServiceAccountToken=False))
    for pod in ("token", "no-token"):
        wait_for(f"pod {pod} to finish", lambda pod=pod: _phase(kube, namespace, pod) in ("Succeeded", "Failed"),
                 timeout=60, describe=lambda: cluster.dump(namespace))
        assert _phase(kube, namespace, pod) == "Succeeded", cluster.pod_log(namespace, pod)
    import json
    seen = json.loads(cluster.pod_log(namespace, "token").strip().splitlines()[-1])
    assert seen == {"user": f"system:serviceaccount:{namespace}:reader", "pod": ["token"], "namespace": namespace}
