"""Fixtures of the cluster tier: a session-wide local control plane and a fresh namespace per test.

The cluster (hack/cluster-up.sh: etcd, kube-apiserver, kube-controller-manager, kube-scheduler,
kwok with 2 CPU + 2 GPU simulated nodes, the pod executor) is reused when it is already up and then
left up; otherwise this session starts it and stops it at the end. Missing binaries make every test
here fail with the command to run: the tier never skips itself.
"""

from __future__ import annotations

import os
import re
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from clusterkit import CORE, ApiError, Cluster, Kube, wait_for

REPO = Path(__file__).resolve().parents[2]
HACK = REPO / "hack"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "cluster: needs the local Kubernetes control plane (make test-cluster starts it)")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).resolve().parent
    for item in items:
        if here in item.path.resolve().parents:
            item.add_marker(pytest.mark.cluster)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    # Keep each phase's report on the item so fixtures can tell, at teardown, that the test failed.
    report = yield
    setattr(item, f"report_{report.when}", report)
    return report


def _versions() -> dict[str, str]:
    pairs = (line.split("=", 1) for line in (HACK / "versions.env").read_text().splitlines()
             if "=" in line and not line.startswith("#"))
    return {k.strip(): v.strip() for k, v in pairs}


def _cluster_is_up(kubeconfig: Path, state: Path) -> bool:
    pidfile = state / "executor.pid"
    if not kubeconfig.exists() or not pidfile.exists():
        return False
    try:
        os.kill(int(pidfile.read_text().strip()), 0)
        Kube(kubeconfig, timeout=5).request("GET", "/readyz")
    except Exception:  # noqa: BLE001 -- whatever fails (pidfile, TLS, HTTP), the cluster is not usable
        return False
    return True


@pytest.fixture(scope="session")
def cluster() -> Iterator[Cluster]:
    versions = _versions()
    tools_root = Path(os.environ.get("TRAINPIPE_TOOLS", Path.home() / ".cache/trainpipe/tools"))
    tools = {c: tools_root / f"{c}-{versions[f'{c.upper()}_VERSION']}" for c in ("kubernetes", "etcd", "kwok", "helm")}
    missing = [str(p) for p in tools.values() if not (p / ".stamp").exists()]
    if missing:
        pytest.fail(f"local cluster binaries are not built ({', '.join(missing)} missing): "
                    "run `make cluster-build` (or `make test-cluster`, which builds first)", pytrace=False)
    state = Path(os.environ.get("TRAINPIPE_CLUSTER_DIR", REPO / ".cache/cluster"))
    kubeconfig = state / "kubeconfig"
    venv = os.environ.get("VENV", str(Path(sys.executable).parents[1]))
    env = dict(os.environ, TRAINPIPE_CLUSTER_DIR=str(state), VENV=venv)
    started_here = not _cluster_is_up(kubeconfig, state)
    if started_here:
        up = subprocess.run([str(HACK / "cluster-up.sh")], env=env, capture_output=True, text=True, timeout=300,
                            check=False)
        if up.returncode != 0:
            pytest.fail(f"hack/cluster-up.sh failed (rc {up.returncode}):\n{up.stderr[-4000:]}", pytrace=False)
    kube = Kube(kubeconfig)
    try:
        yield Cluster(kubeconfig=kubeconfig, state=state, tools=tools, kube=kube, started_here=started_here)
    finally:
        if started_here:
            subprocess.run([str(HACK / "cluster-down.sh")], env=env, capture_output=True, text=True, timeout=120,
                           check=False)


@pytest.fixture
def namespace(cluster: Cluster, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh namespace (with its default ServiceAccount) that is dumped on failure, then deleted."""
    slug = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower()).strip("-")[:40].rstrip("-")
    name = f"{slug}-{secrets.token_hex(3)}"
    cluster.kube.create(f"{CORE}/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {
        "name": name, "labels": {"trainpipe.io/test": "cluster"}}})
    # Pods are refused until the ServiceAccount controller has created `default`.
    wait_for(f"ServiceAccount default in {name}",
             lambda: cluster.kube.exists(f"{CORE}/namespaces/{name}/serviceaccounts/default"), timeout=30)
    yield name
    failed = any(getattr(getattr(request.node, f"report_{when}", None), "failed", False)
                 for when in ("setup", "call"))
    if failed:
        text = cluster.dump(name)
        dump_dir = cluster.state.parent / "cluster-dumps"  # outlives cluster-down, which removes state
        dump_dir.mkdir(parents=True, exist_ok=True)
        (dump_dir / f"{name}.txt").write_text(text)
        request.node.add_report_section("teardown", "cluster dump", text)
        print(f"\ncluster dump of {name} written to {dump_dir / (name + '.txt')}", file=sys.stderr)
    # Don't wait for the namespace controller: deletion runs in the background while tests go on.
    try:
        cluster.kube.delete(f"{CORE}/namespaces/{name}")
    except ApiError as err:
        if err.status != 404:
            raise


@pytest.fixture
def kube(cluster: Cluster) -> Kube:
    return cluster.kube
