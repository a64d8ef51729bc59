"""Fixtures of the cluster tier: a session-wide local control plane, a fresh namespace per test, the operator.

The cluster (localcluster/up.sh: etcd, kube-apiserver, kube-controller-manager, kube-scheduler,
kwok with 2 CPU + 2 GPU simulated nodes, the pod executor) is reused when it is already up and then
left up; otherwise this session starts it and stops it at the end. Missing binaries make every test
here fail with the command to run: the tier never skips itself.

For the operator: `operator_kubeconfig` (session: CRD and operator/deploy/rbac.yaml applied, a
kubeconfig of the operator's ServiceAccount), `operator` (per test: the real operator process serving
the test's namespace) and `example_data` (the example dataset on claim trainpipe-example-data).
"""

from __future__ import annotations

import importlib.util
import os
import re
import secrets
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from trainpipe_localcluster import (
    CORE,
    EXAMPLE_CLAIM,
    EXAMPLE_DATA_FILE,
    EXAMPLE_DIR,
    ApiError,
    Cluster,
    ExampleData,
    Kube,
    OperatorProcess,
    collection_path,
    job_condition,
    wait_for,
)
from trainpipe_localcluster.node import REAL_NODE, RealNode
from trainpipe_localcluster.node import status as real_node_status
from trainpipe_localcluster.values import image_registry

REPO = Path(__file__).resolve().parents[2]
HACK = REPO / "hack"
LOCALCLUSTER = REPO / "localcluster"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "cluster: needs the local Kubernetes control plane (make test-cluster starts it)")
    config.addinivalue_line(
        "markers", "gpu_image: needs the jobs-gpu image in the local registry (make test-gpu-image; not in make test)")


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


def _shared_operator_running(state: Path) -> bool:
    """Whether `make operator-up`'s operator (all namespaces) runs: its pidfile names a live operator."""
    try:
        pid = int((state / "operator.pid").read_text().strip())
        return pid > 0 and b"trainpipe_operator" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError):
        return False


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
    # Also when it is up: cluster-up.sh then returns at once, or restarts an executor whose code changed.
    up = subprocess.run([str(LOCALCLUSTER / "up.sh")], env=env, capture_output=True, text=True, timeout=300,
                        check=False)
    if up.returncode != 0:
        pytest.fail(f"localcluster/up.sh failed (rc {up.returncode}):\n{up.stderr[-4000:]}", pytrace=False)
    kube = Kube(kubeconfig)
    try:
        yield Cluster(kubeconfig=kubeconfig, state=state, tools=tools, kube=kube, started_here=started_here)
    finally:
        if started_here:
            down = subprocess.run([str(LOCALCLUSTER / "down.sh")], env=env, capture_output=True, text=True, timeout=180,
                                  check=False)
            # A cluster this session started must leave nothing on the machine: no process, mount, network
            # interface, firewall chain or cgroup of its real node (a teardown error fails the run).
            left = subprocess.run([str(LOCALCLUSTER / "node" / "leftovers.sh")], env=env, capture_output=True, text=True,
                                  timeout=60, check=False)
            assert down.returncode == 0 and left.returncode == 0, (
                f"localcluster/down.sh (rc {down.returncode}) left things behind:\n{down.stderr[-3000:]}\n{left.stdout}{left.stderr}")


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


@pytest.fixture(scope="session")
def real_node(cluster: Cluster) -> RealNode:
    """The real node (a kubelet with containerd, localcluster/node/), up. A node that is not up fails the
    test with the reason localcluster/node/up.sh recorded: never a skip, never the simulated pool instead."""
    status = real_node_status(cluster.state)
    if not status.up:
        pytest.fail(f"the real node {REAL_NODE.name} is not up ({status.state}): {status.reason}", pytrace=False)
    return REAL_NODE


@pytest.fixture(scope="session")
def registry_image(cluster: Cluster) -> Callable[[str], str]:
    """`registry_image("jobs-cpu")`: the project's image built (cached) and pushed to the cluster's registry; its ref.

    `make test` builds the images before the tier, so here a build finds every layer cached and a push
    uploads only what the registry lacks.
    """
    pushed: dict[str, str] = {}

    def push(name: str) -> str:
        if name not in pushed:
            out = subprocess.run([str(HACK / "images.sh"), "push", name], cwd=REPO, capture_output=True, text=True,
                                 env={**os.environ, "TRAINPIPE_CLUSTER_DIR": str(cluster.state)}, timeout=3600, check=False)
            if out.returncode != 0:
                pytest.fail(f"hack/images.sh push {name} failed (rc {out.returncode}):\n{out.stderr[-4000:]}", pytrace=False)
            pushed[name] = f"{image_registry(cluster.state)}/{name}:{chart_app_version()}"
        return pushed[name]

    return push


def chart_app_version() -> str:
    """The chart's appVersion: the tag `make images` gives every image."""
    return str(yaml.safe_load((REPO / "helm" / "trainpipe" / "Chart.yaml").read_text())["appVersion"])


@pytest.fixture(scope="session")
def operator_kubeconfig(cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The CRD and operator/deploy/rbac.yaml installed (idempotent), and a kubeconfig acting as the
    operator's ServiceAccount, so the operator under test has exactly the RBAC a deployment grants."""
    return cluster.install_operator_access(tmp_path_factory.mktemp("operator") / "operator.kubeconfig")


@pytest.fixture
def operator(cluster: Cluster, namespace: str, operator_kubeconfig: Path) -> Iterator[OperatorProcess]:
    """`python -m trainpipe_operator --namespace <the test's namespace>`, ready; stopped at teardown.

    Function-scoped on purpose: it watches only this test's namespace (which is per test), tests kill
    and restart it, and its log (cluster.operator_log(namespace), in the failure dump) then holds
    this test's story only. Starting one costs about as long as importing kopf and the client.
    """
    if importlib.util.find_spec("trainpipe_operator") is None:
        pytest.fail(f"{sys.executable} cannot import trainpipe_operator: run `make install` (the operator extra)",
                    pytrace=False)
    if _shared_operator_running(cluster.state):
        pytest.fail("an operator started by `make operator-up` serves every namespace and would race this test's "
                    "operator: run `make operator-down` first", pytrace=False)
    proc = OperatorProcess(operator_kubeconfig, cluster.operator_log(namespace), namespaces=[namespace])
    try:
        proc.start()
        yield proc
    finally:
        proc.stop()


@pytest.fixture(scope="session")
def example_data_cache(cluster: Cluster) -> Path:
    """The example dataset, built once per session by the Job of examples/cluster-example-data.yaml
    (as `make demo-cluster` builds it) in a scratch namespace, then kept in .cache/cluster-example-data."""
    objects = list(yaml.safe_load_all(EXAMPLE_DATA_FILE.read_text()))
    job = next(o for o in objects if o["kind"] == "Job")["metadata"]["name"]
    ns = f"example-data-{secrets.token_hex(3)}"
    cluster.kube.create(f"{CORE}/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {
        "name": ns, "labels": {"trainpipe.io/test": "cluster"}}})
    try:
        wait_for(f"ServiceAccount default in {ns}",
                 lambda: cluster.kube.exists(f"{CORE}/namespaces/{ns}/serviceaccounts/default"), timeout=30)
        for obj in objects:
            cluster.kube.create(collection_path(obj, ns), obj)

        def finished() -> str | None:
            return next((c for c in ("Complete", "Failed") if job_condition(cluster.kube, ns, job, c)), None)

        if wait_for(f"Job {ns}/{job} to finish", finished, timeout=180, interval=0.5,
                    describe=lambda: cluster.dump(ns)) != "Complete":
            pytest.fail(f"the example-data Job failed:\n{cluster.dump(ns)}", pytrace=False)
        cache = cluster.state.parent / "cluster-example-data"  # .cache/, next to cluster-dumps/
        shutil.rmtree(cache, ignore_errors=True)
        shutil.copytree(cluster.claim_dir(ns, EXAMPLE_CLAIM) / EXAMPLE_DIR, cache / EXAMPLE_DIR)
        return cache / EXAMPLE_DIR
    finally:
        cluster.kube.delete(f"{CORE}/namespaces/{ns}")


@pytest.fixture
def example_data(cluster: Cluster, namespace: str, example_data_cache: Path) -> ExampleData:
    """Claim trainpipe-example-data in the test's namespace holding the example dataset in example/.

    The claim is the one of examples/cluster-example-data.yaml; once it is Bound, the session's
    cached copy is written straight into its host folder (the executor's claim folders are plain
    folders here), which takes milliseconds where a Job per test would take seconds.
    """
    pvc = next(o for o in yaml.safe_load_all(EXAMPLE_DATA_FILE.read_text()) if o["kind"] == "PersistentVolumeClaim")
    cluster.kube.create(collection_path(pvc, namespace), pvc)
    path = f"{CORE}/namespaces/{namespace}/persistentvolumeclaims/{EXAMPLE_CLAIM}"
    wait_for(f"claim {EXAMPLE_CLAIM} to be Bound",
             lambda: cluster.kube.get(path).get("status", {}).get("phase") == "Bound", timeout=30,
             describe=lambda: cluster.dump(namespace))
    folder = cluster.claim_dir(namespace, EXAMPLE_CLAIM) / EXAMPLE_DIR
    shutil.copytree(example_data_cache, folder, dirs_exist_ok=True)
    return ExampleData(claim=EXAMPLE_CLAIM, dir=EXAMPLE_DIR, path=folder)
