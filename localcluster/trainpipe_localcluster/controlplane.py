"""Crash and restart one process of the local control plane in place; used by the fault tests.

kwokctl 0.8 starts and stops whole clusters only (`kwokctl stop cluster`), which would take etcd,
the scheduler, the controller manager and kwok down with the API server and disturb every other
test on the shared cluster. With kwokctl's binary runtime each component is a plain detached
process whose pid file it keeps in `<workdir>/clusters/<name>/pids/`, so one component can be killed
and started again from its own /proc entry: same command line, working folder, environment and log.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import urllib3

from trainpipe_localcluster.cluster import Cluster
from trainpipe_localcluster.kube import ApiError

# localcluster/lib.sh: KWOK_WORKDIR=$STATE/kwok and CLUSTER_NAME=trainpipe.
CLUSTER_NAME = "trainpipe"
COMPONENTS = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok-controller")


@dataclass(frozen=True)
class ProcessImage:
    """What it takes to start a component again exactly as kwokctl started it."""

    name: str
    argv: list[str]
    cwd: str
    env: dict[str, str]
    log: Path


def cluster_dir(cluster: Cluster) -> Path:
    return cluster.state / "kwok" / "clusters" / CLUSTER_NAME


def pid_of(cluster: Cluster, component: str) -> int | None:
    """The live pid kwokctl recorded for `component`, or None when the file or the process is gone."""
    try:
        pid = int((cluster_dir(cluster) / "pids" / f"{component}.pid").read_text().strip())
        os.kill(pid, 0)
    except (OSError, ValueError):
        return None
    return pid


def image_of(cluster: Cluster, component: str) -> ProcessImage:
    pid = pid_of(cluster, component)
    if pid is None:
        raise RuntimeError(f"{component} of the local cluster is not running: nothing to restart (make cluster-up)")
    proc = Path(f"/proc/{pid}")
    argv = [a.decode() for a in proc.joinpath("cmdline").read_bytes().split(b"\0") if a]
    env = dict(e.decode(errors="replace").split("=", 1) for e in proc.joinpath("environ").read_bytes().split(b"\0") if b"=" in e)
    return ProcessImage(component, argv, os.readlink(proc / "cwd"), env, cluster_dir(cluster) / "logs" / f"{component}.log")


def start(cluster: Cluster, image: ProcessImage) -> int:
    """Start `image` detached (its own session, as kwokctl forks it), appending to its log; records the pid."""
    with open(image.log, "ab") as log:
        proc = subprocess.Popen(image.argv, cwd=image.cwd, env=image.env, stdin=subprocess.DEVNULL, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
    (cluster_dir(cluster) / "pids" / f"{image.name}.pid").write_text(str(proc.pid))
    return proc.pid


def _wait_gone(pid: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.02)
    raise TimeoutError(f"pid {pid} is still alive {timeout:.0f}s after SIGKILL")


def wait_api_ready(cluster: Cluster, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            cluster.kube.request("GET", "/readyz", timeout=2)
            return
        except (ApiError, OSError, urllib3.exceptions.HTTPError) as err:  # refused while starting, 500 while post-start hooks run
            if time.monotonic() > deadline:
                raise TimeoutError(f"the API server is not ready {timeout:.0f}s after its restart: {err}") from None
            time.sleep(0.1)


def wait_no_running_pods(cluster: Cluster, timeout: float) -> list[str]:
    """Wait up to `timeout` s until no pod in the cluster runs; the ones still running then."""
    deadline = time.monotonic() + timeout
    while True:
        items = cluster.kube.get("/api/v1/pods", fieldSelector="status.phase=Running")["items"]
        running = [f"{p['metadata']['namespace']}/{p['metadata']['name']}" for p in items]
        if not running or time.monotonic() > deadline:
            return running
        time.sleep(1)


def crash_and_restart_apiserver(cluster: Cluster, down_seconds: float = 0.0, quiet_timeout: float = 60.0) -> float:
    """SIGKILL kube-apiserver (a crash: no graceful shutdown), start it again, wait for /readyz.

    Returns the outage in seconds. Keep it short: the controller manager and the scheduler give up
    their leader lease after 10 s without the API server and then exit, and with no supervisor
    here nothing would start them again; any component found dead afterwards is restarted from the
    image taken before the crash, so the shared cluster is whole again when this returns.
    First waits (up to `quiet_timeout` s) for a moment when no pod runs: the executor cannot report
    a pod that ends during the outage, which would leave another test's pod Running forever.
    """
    wait_no_running_pods(cluster, quiet_timeout)
    images = {c: image_of(cluster, c) for c in COMPONENTS}
    pid = pid_of(cluster, "kube-apiserver")
    assert pid is not None
    started = time.monotonic()
    os.kill(pid, signal.SIGKILL)
    try:
        _wait_gone(pid, 10)
        time.sleep(down_seconds)
    finally:
        start(cluster, images["kube-apiserver"])  # whatever happened above, never leave the cluster without one
    wait_api_ready(cluster)
    outage = time.monotonic() - started
    for name, image in images.items():
        if pid_of(cluster, name) is None:
            start(cluster, image)
    wait_api_ready(cluster)
    return outage
