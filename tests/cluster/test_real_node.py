"""The real node (localcluster/node/): a kubelet with containerd and runc beside the simulated pool.

Pods there run images from the local registry for real: as uid 10001 with a read-only root filesystem,
`kubectl logs` and `kubectl exec` reach them, the kernel OOM-kills a container over its memory limit, a
missing image is ErrImagePull, a deleted pod gets SIGTERM within its grace period, and the pod
executor leaves them alone. A real node that is not up fails every test here with the reason
localcluster/node/up.sh recorded (the `real_node` fixture).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from trainpipe_localcluster import CORE, Cluster, Kube, claim_manifest, wait_for
from trainpipe_localcluster.node import (
    RealNode,
    dir_entry,
    file_entry,
    push_image,
    registry_address,
    symlink_entry,
    tar_layer,
)

UID = 10001  # the images' non-root user
# What the test image holds: a shell and a few tools, copied from this machine with their libraries.
# (No container engine is needed to make it; the stage images, trainpipe/jobs-cpu, are built elsewhere.)
TOOLS = ("sh", "sleep", "cat", "id", "touch", "tail", "ls", "head")


def _add_host_path(path: str, entries: dict[str, Any], contents: dict[str, bytes]) -> None:
    """Add `path` of this machine to a layer as it is here: parent folders, symlinks (and their targets), file."""
    parts = Path(path).parts[1:]
    current = "/"
    for i, part in enumerate(parts):
        current = os.path.join(current, part)
        name = current.lstrip("/")
        if os.path.islink(current):
            link = os.readlink(current)
            entries.setdefault(name, symlink_entry(name, link))
            target = os.path.normpath(os.path.join(os.path.dirname(current), link))
            _add_host_path(os.path.join(target, *parts[i + 1:]), entries, contents)
            return
        if i < len(parts) - 1:
            entries.setdefault(name, dir_entry(name))
        else:
            entries[name] = file_entry(name, 0o755)
            contents[name] = Path(current).read_bytes()


def host_tools_layer() -> bytes:
    """One layer with TOOLS and the shared libraries `ldd` says they load, plus a world-writable /tmp."""
    entries: dict[str, Any] = {"tmp": dir_entry("tmp", 0o1777)}
    contents: dict[str, bytes] = {}
    for tool in TOOLS:
        path = shutil.which(tool)
        assert path, f"{tool} is not on this machine's PATH"
        _add_host_path(path, entries, contents)
        ldd = subprocess.run(["ldd", path], capture_output=True, text=True, check=False).stdout
        for line in ldd.splitlines():
            lib = next((w for w in line.split() if w.startswith("/")), None)
            if lib:
                _add_host_path(lib, entries, contents)
    return tar_layer([entries[name] for name in sorted(entries)], contents)


@pytest.fixture(scope="session")
def tools_image(cluster: Cluster, real_node: RealNode) -> str:
    """A small image (shell and tools of this machine) pushed to the cluster's registry, as its ref."""
    registry = registry_address(cluster.state)
    push_image(registry, "trainpipe/test-tools", "1", [host_tools_layer()],
               {"User": f"{UID}:{UID}", "Env": ["PATH=/usr/local/bin:/usr/bin:/bin"], "Cmd": ["sh"]})
    return f"{registry}/trainpipe/test-tools:1"


def _pod(node: RealNode, name: str, image: str, script: str, *, grace: int = 1, memory: str = "64Mi",
         claim: str | None = None) -> dict[str, Any]:
    """A pod for the real node, as hardened as the stage pods: non-root, read-only root, no capabilities."""
    mounts = [{"name": "tmp", "mountPath": "/tmp"}]
    volumes: list[dict[str, Any]] = [{"name": "tmp", "emptyDir": {"sizeLimit": "16Mi"}}]
    if claim:
        mounts.append({"name": "data", "mountPath": "/data"})
        volumes.append({"name": "data", "persistentVolumeClaim": {"claimName": claim}})
    container = {
        "name": "main", "image": image, "command": ["sh", "-c", script], "volumeMounts": mounts,
        "resources": {"requests": {"cpu": "10m", "memory": memory}, "limits": {"memory": memory}},
        "securityContext": {"runAsUser": UID, "runAsGroup": UID, "runAsNonRoot": True,
                            "readOnlyRootFilesystem": True, "allowPrivilegeEscalation": False,
                            "capabilities": {"drop": ["ALL"]}, "seccompProfile": {"type": "RuntimeDefault"}},
    }
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"restartPolicy": "Never", "terminationGracePeriodSeconds": grace, "automountServiceAccountToken": False,
                     "containers": [container], "volumes": volumes, **node.placement()}}


def _get(kube: Kube, namespace: str, name: str) -> dict[str, Any]:
    return kube.get(f"{CORE}/namespaces/{namespace}/pods/{name}")


def _container(pod: dict[str, Any]) -> dict[str, Any]:
    return next(iter(pod.get("status", {}).get("containerStatuses") or [{}]))


def _wait_phase(cluster: Cluster, namespace: str, name: str, phases: tuple[str, ...], timeout: float = 60) -> dict:
    """The pod once its phase is one of `phases` (Running: once its container is ready too)."""
    def reached() -> dict | None:
        pod = _get(cluster.kube, namespace, name)
        phase = pod.get("status", {}).get("phase")
        if phase == "Running" and not _container(pod).get("ready"):
            return None
        return pod if phase in phases else None
    return wait_for(f"pod {namespace}/{name} to be {'/'.join(phases)}", reached, timeout=timeout, interval=0.25,
                    describe=lambda: cluster.dump(namespace))


def test_pod_runs_registry_image_non_root_with_read_only_root(
        cluster: Cluster, kube: Kube, namespace: str, real_node: RealNode, tools_image: str) -> None:
    kube.create(f"{CORE}/namespaces/{namespace}/persistentvolumeclaims", claim_manifest("work"))
    script = ("id -u; if touch /probe 2>/dev/null; then echo root-writable; else echo root-read-only; fi; "
              "echo scratch > /tmp/t && cat /tmp/t; echo result > /data/out.txt && echo claim-writable; "
              "exec sleep 3600")
    started = time.monotonic()
    kube.create(f"{CORE}/namespaces/{namespace}/pods", _pod(real_node, "hardened", tools_image, script, claim="work"))
    pod = _wait_phase(cluster, namespace, "hardened", ("Running",))
    print(f"pod Running on {real_node.name} {time.monotonic() - started:.1f}s after create (image pull included)")
    assert pod["spec"]["nodeName"] == real_node.name
    assert _container(pod)["containerID"].startswith("containerd://")

    def logged() -> str | None:
        out = cluster.kubectl("logs", "-n", namespace, "hardened", check=False).stdout
        return out if "claim-writable" in out else None
    assert wait_for("the pod's output in kubectl logs", logged, timeout=20).split() == [
        str(UID), "root-read-only", "scratch", "claim-writable"]

    assert cluster.kubectl("exec", "-n", namespace, "hardened", "--", "id", "-u").stdout.strip() == str(UID)
    assert cluster.kubectl("exec", "-n", namespace, "hardened", "--", "cat", "/data/out.txt").stdout == "result\n"
    written = cluster.claim_dir(namespace, "work") / "out.txt"
    assert written.read_text() == "result\n" and written.stat().st_uid == UID
    denied = cluster.kubectl("exec", "-n", namespace, "hardened", "--", "touch", "/etc/x", check=False)
    assert denied.returncode != 0 and "Read-only file system" in denied.stderr + denied.stdout


def test_container_over_its_memory_limit_is_oom_killed(
        cluster: Cluster, kube: Kube, namespace: str, real_node: RealNode, tools_image: str) -> None:
    # tail keeps the last lines of /dev/zero, which has no newline: it holds everything it reads.
    kube.create(f"{CORE}/namespaces/{namespace}/pods",
                _pod(real_node, "hungry", tools_image, "tail /dev/zero", memory="32Mi"))
    pod = _wait_phase(cluster, namespace, "hungry", ("Failed", "Succeeded"))
    terminated = _container(pod)["state"]["terminated"]
    assert (terminated["reason"], terminated["exitCode"]) == ("OOMKilled", 137), terminated


def test_image_that_does_not_exist_is_err_image_pull(
        cluster: Cluster, kube: Kube, namespace: str, real_node: RealNode, tools_image: str) -> None:
    missing = f"{registry_address(cluster.state)}/trainpipe/does-not-exist:0.0.0"
    kube.create(f"{CORE}/namespaces/{namespace}/pods", _pod(real_node, "missing", missing, "true"))

    def waiting() -> dict | None:
        state = _container(_get(kube, namespace, "missing")).get("state", {}).get("waiting") or {}
        return state if state.get("reason") in ("ErrImagePull", "ImagePullBackOff") else None
    state = wait_for("ErrImagePull or ImagePullBackOff", waiting, timeout=60, describe=lambda: cluster.dump(namespace))
    assert "does-not-exist" in state.get("message", ""), state


def test_deleted_pod_gets_sigterm_within_its_grace_period(
        cluster: Cluster, kube: Kube, namespace: str, real_node: RealNode, tools_image: str) -> None:
    kube.create(f"{CORE}/namespaces/{namespace}/persistentvolumeclaims", claim_manifest("work"))
    # The shell is PID 1, which ignores TERM unless it traps it; the trap runs between two short sleeps.
    script = "trap 'echo TERM > /data/term; exit 0' TERM; echo ready > /data/ready; while :; do sleep 0.2; done"
    grace = 20
    kube.create(f"{CORE}/namespaces/{namespace}/pods",
                _pod(real_node, "graceful", tools_image, script, grace=grace, claim="work"))
    _wait_phase(cluster, namespace, "graceful", ("Running",))
    folder = cluster.claim_dir(namespace, "work")
    wait_for("the pod to start its loop", lambda: (folder / "ready").exists(), timeout=20)

    started = time.monotonic()
    kube.delete(f"{CORE}/namespaces/{namespace}/pods/graceful")
    wait_for("the pod to be gone", lambda: not kube.exists(f"{CORE}/namespaces/{namespace}/pods/graceful"),
             timeout=grace + 10, describe=lambda: cluster.dump(namespace))
    took = time.monotonic() - started
    assert (folder / "term").read_text() == "TERM\n", "the container ended without running its TERM trap"
    assert took < grace, f"deleting took {took:.1f}s, not within the {grace}s grace period: killed, not stopped"


def test_executor_leaves_real_node_pods_alone(
        cluster: Cluster, kube: Kube, namespace: str, real_node: RealNode, tools_image: str) -> None:
    kube.create(f"{CORE}/namespaces/{namespace}/pods", _pod(real_node, "short", tools_image, "echo from-the-kubelet"))
    pod = _wait_phase(cluster, namespace, "short", ("Succeeded", "Failed"))
    assert pod["status"]["phase"] == "Succeeded", pod["status"]
    assert _container(pod)["containerID"].startswith("containerd://"), "the executor ran it, not the kubelet"
    assert cluster.kubectl("logs", "-n", namespace, "short").stdout == "from-the-kubelet\n"
    assert not (cluster.executor_dir / "logs" / namespace).exists()
    executor_log = (cluster.state / "executor.log").read_text(errors="replace")
    assert f"{namespace}/short" not in executor_log
