"""A small Kubernetes REST client and wait helpers, shared by the cluster-tier tests and the executor.

Why not the `kubernetes` package here: its 37.x generated client validates bodies with pydantic,
defaults PATCH to JSON Patch and turns every object into a model. Tests and the executor want
plain dicts, any resource (CRDs included) and explicit patch types, which ~150 lines of urllib3
give without surprises. The kubeconfigs written here work with any client, the official one too.
"""

from __future__ import annotations

import base64
import copy
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import urllib3
import yaml

MERGE = "application/merge-patch+json"
STRATEGIC = "application/strategic-merge-patch+json"
JSON_PATCH = "application/json-patch+json"

# Plural resource paths for the kinds the tier touches; anything else can be passed as a path.
CORE = "/api/v1"
BATCH = "/apis/batch/v1"


class ApiError(Exception):
    """A non-2xx answer from the API server, with its Status reason and message."""

    def __init__(self, method: str, path: str, status: int, body: Any) -> None:
        self.status = status
        self.body = body
        self.reason = body.get("reason", "") if isinstance(body, dict) else ""
        self.message = body.get("message", str(body)) if isinstance(body, dict) else str(body)
        super().__init__(f"{method} {path} -> {status} {self.reason}: {self.message}")


@dataclass(frozen=True)
class Credentials:
    """What one kubeconfig context resolves to: server, CA and either a client cert or a token."""

    server: str
    ca_file: str | None
    cert_file: str | None = None
    key_file: str | None = None
    token: str | None = None


def _materialise(entry: dict[str, Any], key: str, scratch: Path, base: Path) -> str | None:
    """Return a file path for `key` or `key-data` of a kubeconfig entry (data is written out)."""
    if entry.get(key):
        path = Path(entry[key])
        return str(path if path.is_absolute() else base / path)
    data = entry.get(f"{key}-data")
    if not data:
        return None
    fd, name = tempfile.mkstemp(dir=scratch, suffix=".pem")
    with os.fdopen(fd, "wb") as fh:
        fh.write(base64.b64decode(data))
    return name


def read_kubeconfig(path: str | os.PathLike[str]) -> Credentials:
    """Resolve the current context of a kubeconfig file into Credentials."""
    path = Path(path)
    doc = yaml.safe_load(path.read_text())
    ctx_name = doc.get("current-context")
    ctx = next((c["context"] for c in doc.get("contexts", []) if c["name"] == ctx_name), None)
    if ctx is None:
        raise ValueError(f"{path}: current-context {ctx_name!r} is not among its contexts")
    cluster = next(c["cluster"] for c in doc["clusters"] if c["name"] == ctx["cluster"])
    user = next((u["user"] for u in doc.get("users", []) if u["name"] == ctx.get("user")), {}) or {}
    scratch = Path(tempfile.mkdtemp(prefix="kubeconfig-"))
    return Credentials(
        server=cluster["server"].rstrip("/"),
        ca_file=_materialise(cluster, "certificate-authority", scratch, path.parent),
        cert_file=_materialise(user, "client-certificate", scratch, path.parent),
        key_file=_materialise(user, "client-key", scratch, path.parent),
        token=user.get("token"),
    )


def write_token_kubeconfig(path: Path, server: str, ca_file: str | None, token: str, name: str) -> Path:
    """Write a kubeconfig that authenticates with a bearer token (e.g. a ServiceAccount's)."""
    cluster: dict[str, Any] = {"server": server}
    if ca_file:
        cluster["certificate-authority-data"] = base64.b64encode(Path(ca_file).read_bytes()).decode()
    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "trainpipe", "cluster": cluster}],
        "users": [{"name": name, "user": {"token": token}}],
        "contexts": [{"name": name, "context": {"cluster": "trainpipe", "user": name}}],
        "current-context": name,
    }
    path.write_text(yaml.safe_dump(doc))
    path.chmod(0o600)
    return path


class Kube:
    """Plain-dict access to one API server as one identity (the kubeconfig's current context)."""

    def __init__(self, kubeconfig: str | os.PathLike[str], timeout: float = 30.0) -> None:
        self.kubeconfig = str(kubeconfig)
        self.creds = read_kubeconfig(kubeconfig)
        ctx = ssl.create_default_context(cafile=self.creds.ca_file)
        if self.creds.cert_file:
            ctx.load_cert_chain(self.creds.cert_file, self.creds.key_file)
        self._http = urllib3.PoolManager(ssl_context=ctx, maxsize=8, timeout=urllib3.Timeout(connect=5, read=timeout))
        self._headers = {"Accept": "application/json"}
        if self.creds.token:
            self._headers["Authorization"] = f"Bearer {self.creds.token}"

    # -- raw verbs ---------------------------------------------------------------------------
    def request(self, method: str, path: str, body: Any = None, content_type: str = "application/json",
                query: dict[str, Any] | None = None, timeout: float | None = None) -> Any:
        url = self.creds.server + path + (("?" + urlencode(query)) if query else "")
        headers = dict(self._headers)
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = content_type
        kwargs: dict[str, Any] = {}
        if timeout is not None:
            kwargs["timeout"] = urllib3.Timeout(connect=5, read=timeout)
        resp = self._http.request(method, url, body=data, headers=headers, **kwargs)
        try:
            payload = json.loads(resp.data) if resp.data else None
        except ValueError:
            payload = resp.data.decode(errors="replace")
        if not 200 <= resp.status < 300:
            raise ApiError(method, path, resp.status, payload)
        return payload

    def get(self, path: str, **query: Any) -> Any:
        return self.request("GET", path, query=query or None)

    def create(self, path: str, body: dict[str, Any]) -> Any:
        return self.request("POST", path, body)

    def patch(self, path: str, body: Any, content_type: str = MERGE) -> Any:
        return self.request("PATCH", path, body, content_type)

    def delete(self, path: str, **query: Any) -> Any:
        return self.request("DELETE", path, query=query or None)

    def exists(self, path: str) -> bool:
        try:
            self.get(path)
        except ApiError as err:
            if err.status == 404:
                return False
            raise
        return True

    def watch(self, path: str, resource_version: str, timeout_seconds: int = 60,
              **query: Any) -> Iterator[dict[str, Any]]:
        """Yield watch events (dicts with type and object) until the server ends the stream."""
        query = dict(query, watch="true", resourceVersion=resource_version,
                     timeoutSeconds=timeout_seconds, allowWatchBookmarks="true")
        url = self.creds.server + path + "?" + urlencode(query)
        resp = self._http.request("GET", url, headers=self._headers, preload_content=False,
                                  timeout=urllib3.Timeout(connect=5, read=timeout_seconds + 10))
        try:
            if resp.status != 200:
                raise ApiError("WATCH", path, resp.status, json.loads(resp.read() or b"{}"))
            buf = b""
            for chunk in resp.stream(4096, decode_content=True):
                buf += chunk
                while b"\n" in buf:
                    line, buf = buf.split(b"\n", 1)
                    if line.strip():
                        yield json.loads(line)
        finally:
            resp.release_conn()

    # -- conveniences ------------------------------------------------------------------------
    def apply_objects(self, objects: list[dict[str, Any]], namespace: str | None = None) -> list[Any]:
        """Create each object (built-in kinds the tier uses), namespacing it when it is namespaced."""
        return [self.create(collection_path(obj, namespace), obj) for obj in objects]


_CLUSTER_SCOPED = {"Namespace", "Node", "PersistentVolume", "StorageClass", "ClusterRole",
                   "ClusterRoleBinding", "CustomResourceDefinition"}
_GROUP_PATHS = {"v1": CORE}


def collection_path(obj: dict[str, Any], namespace: str | None = None, plural: str | None = None) -> str:
    """REST collection path of an object from its apiVersion and kind (plural: lower kind + s)."""
    api_version, kind = obj["apiVersion"], obj["kind"]
    base = _GROUP_PATHS.get(api_version, f"/apis/{api_version}")
    plural = plural or _plural(kind)
    ns = obj.get("metadata", {}).get("namespace") or namespace
    if kind in _CLUSTER_SCOPED or not ns:
        return f"{base}/{plural}"
    return f"{base}/namespaces/{ns}/{plural}"


def _plural(kind: str) -> str:
    lower = kind.lower()
    if lower.endswith("s"):
        return lower + "es"
    if lower.endswith("y"):
        return lower[:-1] + "ies"
    return lower + "s"


def wait_for(what: str, probe: Callable[[], Any], timeout: float = 60.0, interval: float = 0.25,
             describe: Callable[[], str] | None = None) -> Any:
    """Poll `probe` until it returns something truthy; fail with `what` and the last state."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(interval)
    detail = describe() if describe else repr(last)
    raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}; last state: {detail}")


def pods_of_job(kube: Kube, namespace: str, job: str) -> list[dict[str, Any]]:
    """Pods the Job controller created for a Job, oldest first."""
    pods = kube.get(f"{CORE}/namespaces/{namespace}/pods", labelSelector=f"job-name={job}")["items"]
    return sorted(pods, key=lambda p: p["metadata"]["creationTimestamp"])


def job_condition(kube: Kube, namespace: str, job: str, ctype: str) -> dict[str, Any] | None:
    status = kube.get(f"{BATCH}/namespaces/{namespace}/jobs/{job}").get("status", {})
    return next((c for c in status.get("conditions") or [] if c["type"] == ctype and c["status"] == "True"), None)


POOL_LABEL = "trainpipe.io/pool"
GPU_RESOURCE = "nvidia.com/gpu"
GPU_TOLERATION = {"key": GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"}


def job_manifest(name: str, command: list[str], *, pool: str | None = None, gpus: int = 0,
                 backoff_limit: int = 0, claim: str | None = None, mount_path: str = "/data",
                 labels: dict[str, str] | None = None, **container: Any) -> dict[str, Any]:
    """A batch/v1 Job with one container, optionally pinned to a pool, asking for GPUs, with a claim."""
    main: dict[str, Any] = {"name": "main", "image": "ghcr.io/trainpipe/jobs-cpu:dev", "command": command,
                            "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}}, **container}
    pod: dict[str, Any] = {"restartPolicy": "Never", "containers": [main]}
    if pool:
        pod["nodeSelector"] = {POOL_LABEL: pool}
    if gpus:
        main["resources"]["limits"] = {GPU_RESOURCE: str(gpus)}  # quantities are strings
        pod["tolerations"] = [GPU_TOLERATION]
    if claim:
        main["volumeMounts"] = [{"name": "data", "mountPath": mount_path}]
        pod["volumes"] = [{"name": "data", "persistentVolumeClaim": {"claimName": claim}}]
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name, "labels": labels or {}},
            "spec": {"backoffLimit": backoff_limit, "template": {"metadata": {"labels": labels or {}}, "spec": pod}}}


def claim_manifest(name: str, size: str = "1Gi", access_modes: Sequence[str] = ("ReadWriteOnce",)) -> dict[str, Any]:
    """A PersistentVolumeClaim of the default StorageClass (served by the executor's provisioner)."""
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": name},
            "spec": {"accessModes": list(access_modes), "resources": {"requests": {"storage": size}}}}


# -- TrainingPipelines and the operator ------------------------------------------------------------
REPO = Path(__file__).resolve().parents[2]
CRD_FILE = REPO / "crds" / "trainpipe.io_trainingpipelines.yaml"
RBAC_FILE = REPO / "operator" / "deploy" / "rbac.yaml"
EXAMPLE_DATA_FILE = REPO / "examples" / "cluster-example-data.yaml"
# The ServiceAccount operator/deploy/rbac.yaml grants the operator's ClusterRole to.
OPERATOR_NAMESPACE = "trainpipe-system"
OPERATOR_SERVICE_ACCOUNT = "trainpipe-operator"
# The claim and folder examples/cluster-example-data.yaml writes the example dataset to.
EXAMPLE_CLAIM = "trainpipe-example-data"
EXAMPLE_DIR = "example"


@dataclass(frozen=True)
class ExampleData:
    """The example dataset on a claim of a test's namespace (the `example_data` fixture)."""

    claim: str  # what data.volume.claimName names
    dir: str  # what data.dir names, inside the claim
    path: Path  # the same folder on this machine (the executor's claim folder)


def pipelines_path(namespace: str, name: str | None = None) -> str:
    """REST path of a namespace's TrainingPipelines, or of one of them."""
    from trainpipe.contract.names import API_GROUP, API_VERSION, PLURAL  # the executor imports this module too

    base = f"/apis/{API_GROUP}/{API_VERSION}/namespaces/{namespace}/{PLURAL}"
    return f"{base}/{name}" if name else base


def _merge(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """Deep merge: dicts merge key by key, anything else replaces, None removes the key."""
    out = copy.deepcopy(base)
    for key, value in overrides.items():
        if value is None:
            out.pop(key, None)
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


# A run that finishes in about a minute on two cores: three symbols of the example data, one target,
# eight features, one CPU family, every stage limited to one core (its TRAINPIPE_CPUS).
_TEST_SPEC: dict[str, Any] = {
    "data": {"volume": {"claimName": EXAMPLE_CLAIM}, "dir": EXAMPLE_DIR, "symbols": ["AAPL", "NVDA", "META"]},
    "targets": {"topN": 1},
    "features": {"topM": 8},
    "training": {"families": ["lightgbm"]},
    "images": {"cpu": "ghcr.io/trainpipe/jobs-cpu:test", "gpu": "ghcr.io/trainpipe/jobs-gpu:test"},
    "stages": {stage: {"resources": {"limits": {"cpu": 1}}} for stage in ("rank", "select", "plan", "cpu", "gpu", "report")},
}


def pipeline_manifest(name: str, *, annotations: dict[str, str] | None = None, validate: bool = True,
                      **spec: Any) -> dict[str, Any]:
    """A TrainingPipeline with a small test spec; keyword arguments deep-merge into its spec.

    `pipeline_manifest("p", training={"families": ["lightgbm", "mlp"]}, suspend=True)`; a None value
    removes the field (the API server then applies the CRD's default). The result is checked against
    the typed model, so a misspelt field fails here; `validate=False` builds invalid manifests.
    """
    from trainpipe.contract.names import API_GROUP, API_VERSION, KIND

    manifest: dict[str, Any] = {"apiVersion": f"{API_GROUP}/{API_VERSION}", "kind": KIND,
                                "metadata": {"name": name}, "spec": _merge(_TEST_SPEC, spec)}
    if annotations:
        manifest["metadata"]["annotations"] = dict(annotations)
    if validate:
        from trainpipe.contract.pipeline import TrainingPipeline

        TrainingPipeline.model_validate(manifest)
    return manifest


def condition(obj: dict[str, Any], ctype: str) -> dict[str, Any] | None:
    """The condition `ctype` of an object's status, if it has one."""
    return next((c for c in (obj.get("status") or {}).get("conditions") or [] if c.get("type") == ctype), None)


def wait_condition(kube: Kube, namespace: str, name: str, ctype: str, status: str = "True", timeout: float = 120.0,
                   generation: int | None = None) -> dict[str, Any]:
    """Wait until a TrainingPipeline's condition `ctype` has `status`; return the condition.

    Only a current condition counts (kstatus): its observedGeneration, when set, must equal the
    object's metadata.generation, or `generation` when given, so a status written for an older spec
    never satisfies the wait.
    """
    path = pipelines_path(namespace, name)
    seen: dict[str, Any] = {}

    def probe() -> dict[str, Any] | None:
        try:
            obj = kube.get(path)
        except ApiError as err:
            if err.status == 404:
                return None
            raise
        seen["obj"] = obj
        cond = condition(obj, ctype)
        want = generation if generation is not None else obj["metadata"].get("generation")
        if cond and cond["status"] == status and cond.get("observedGeneration", want) == want:
            return cond
        return None

    def describe() -> str:
        obj = seen.get("obj")
        if obj is None:
            return f"TrainingPipeline {namespace}/{name} does not exist"
        return f"generation {obj['metadata'].get('generation')}, status:\n" + yaml.safe_dump(obj.get("status") or {})

    return wait_for(f"TrainingPipeline {namespace}/{name} condition {ctype}={status}", probe, timeout=timeout,
                    interval=0.5, describe=describe)


def free_port() -> int:
    """A TCP port nothing listens on right now (the OS picks it)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def http_get(url: str, timeout: float = 2.0) -> tuple[int, str]:
    """(status, body) of a GET; status 0 when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status, resp.read().decode(errors="replace")
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode(errors="replace")
    except OSError:
        return 0, ""


class OperatorProcess:
    """`python -m trainpipe_operator` as a subprocess of a test: started ready, signalled, restarted, stopped.

    Its output is appended to `log_path` (each start marked), which a failed test's dump includes.
    Each start picks a fresh free port, so `port` and `pid` change on restart.
    """

    def __init__(self, kubeconfig: Path, log_path: Path, namespaces: Sequence[str] = (),
                 extra_args: Sequence[str] = (), python: str = sys.executable, ready_timeout: float = 90.0) -> None:
        self.kubeconfig = kubeconfig
        self.log_path = log_path
        self.namespaces = list(namespaces)
        self.extra_args = list(extra_args)
        self.python = python
        self.ready_timeout = ready_timeout
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        if self.proc is None:
            raise RuntimeError("the operator has not been started")
        return self.proc.pid

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def argv(self) -> list[str]:
        argv = [self.python, "-m", "trainpipe_operator", "--kubeconfig", str(self.kubeconfig), "--port", str(self.port)]
        for ns in self.namespaces:
            argv += ["--namespace", ns]
        return argv + self.extra_args

    def start(self) -> OperatorProcess:
        """Start the process and return once /readyz answers 200."""
        if self.running:
            raise RuntimeError(f"the operator is already running (pid {self.pid})")
        self.port = free_port()
        argv = self.argv()
        # KUBECONFIG as well as the flag: the kubernetes client (and kopf's login through it) reads the
        # variable. Unbuffered, so the log is complete up to the moment a test looks.
        env = os.environ | {"KUBECONFIG": str(self.kubeconfig), "PYTHONUNBUFFERED": "1"}
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            log.write(f"===== {time.strftime('%H:%M:%S')} start: {' '.join(argv)}\n".encode())
            log.flush()
            self.proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         env=env, start_new_session=True)
        self.wait_ready()
        return self

    def get(self, path: str) -> tuple[int, str]:
        """GET one of the operator's HTTP endpoints (/metrics, /healthz, /readyz)."""
        return http_get(self.url + path)

    def wait_ready(self, timeout: float | None = None) -> None:
        deadline = time.monotonic() + (timeout or self.ready_timeout)
        while time.monotonic() < deadline:
            if not self.running:
                code = self.proc.returncode if self.proc else None
                raise RuntimeError(f"the operator exited with {code} before it was ready; {self.log_path} ends with:\n"
                                   + self.log_tail())
            if self.get("/readyz")[0] == 200:
                return
            time.sleep(0.2)
        raise TimeoutError(f"the operator (pid {self.pid}) is not ready at {self.url}/readyz after "
                           f"{timeout or self.ready_timeout:.0f}s; {self.log_path} ends with:\n" + self.log_tail())

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Send `sig`; after SIGKILL, also wait until the process is gone."""
        if not self.running:
            raise RuntimeError("the operator is not running")
        os.kill(self.pid, sig)
        if sig == signal.SIGKILL:
            self.wait()

    def wait(self, timeout: float = 30.0) -> int:
        """Wait for the process to exit; its exit code (-N: killed by signal N)."""
        assert self.proc is not None
        return self.proc.wait(timeout)

    def stop(self, grace: float = 10.0) -> int | None:
        """SIGTERM, then SIGKILL after `grace` seconds; the exit code (None if never started)."""
        if self.proc is None:
            return None
        if self.running:
            self.proc.terminate()
            try:
                self.proc.wait(grace)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        return self.proc.returncode

    def restart(self) -> OperatorProcess:
        """Stop (if running) and start again; returns once the new process is ready."""
        self.stop()
        return self.start()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log().splitlines()[-lines:])


@dataclass
class Cluster:
    """The running local cluster: admin client, paths to its tools, kubeconfigs and executor files."""

    kubeconfig: Path
    state: Path
    tools: dict[str, Path]
    kube: Kube
    started_here: bool

    @property
    def executor_dir(self) -> Path:
        return self.state / "executor"

    def binary(self, name: str) -> Path:
        component = {"kubectl": "kubernetes", "kube-apiserver": "kubernetes", "etcd": "etcd",
                     "kwok": "kwok", "kwokctl": "kwok", "helm": "helm"}[name]
        return self.tools[component] / "bin" / name

    def kubectl(self, *args: str, kubeconfig: Path | None = None,
                check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(self.binary("kubectl")), "--kubeconfig", str(kubeconfig or self.kubeconfig), *args],
                              capture_output=True, text=True, check=check, timeout=60)

    def claim_dir(self, namespace: str, claim: str) -> Path:
        """Host folder of a bound PersistentVolumeClaim (the executor mounts it into pods)."""
        pvc = self.kube.get(f"{CORE}/namespaces/{namespace}/persistentvolumeclaims/{claim}")
        pv = self.kube.get(f"{CORE}/persistentvolumes/{pvc['spec']['volumeName']}")
        return Path(pv["spec"]["hostPath"]["path"])

    def pod_log(self, namespace: str, pod: str, container: str | None = None) -> str:
        """Output of a pod's container as the executor recorded it (no kubelet: `kubectl logs` can't)."""
        folder = self.executor_dir / "logs" / namespace / pod
        if container is None:
            logs = sorted(folder.glob("*.log"))
            if len(logs) != 1:
                raise AssertionError(f"pod {namespace}/{pod} has logs {[p.name for p in logs]}; name the container")
            return logs[0].read_text()
        return (folder / f"{container}.log").read_text()

    def service_account_kubeconfig(self, namespace: str, name: str, dest: Path,
                                   expiration_seconds: int = 3600) -> Path:
        """Create the ServiceAccount if needed and write a kubeconfig that acts as it (TokenRequest token)."""
        try:
            self.kube.create(f"{CORE}/namespaces/{namespace}/serviceaccounts",
                             {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": name}})
        except ApiError as err:
            if err.status != 409:
                raise
        token = self.kube.create(
            f"{CORE}/namespaces/{namespace}/serviceaccounts/{name}/token",
            {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
             "spec": {"expirationSeconds": expiration_seconds}})["status"]["token"]
        return write_token_kubeconfig(dest, self.kube.creds.server, self.kube.creds.ca_file, token,
                                      f"system:serviceaccount:{namespace}:{name}")

    def apply(self, path: Path, namespace: str | None = None) -> None:
        """Server-side apply a manifest file with kubectl (as hack/ does): idempotent, our file wins conflicts."""
        args = ["apply", "--server-side", "--force-conflicts", "--field-manager", "trainpipe-tests", "-f", str(path)]
        self.kubectl(*args, *(["-n", namespace] if namespace else []))

    def install_operator_access(self, kubeconfig: Path, expiration_seconds: int = 6 * 3600) -> Path:
        """The TrainingPipeline CRD (waited until Established) and operator/deploy/rbac.yaml applied,
        and a kubeconfig written that acts as the operator's ServiceAccount. Idempotent."""
        self.apply(CRD_FILE)
        self.kubectl("wait", "--for=condition=Established", "--timeout=60s", "-f", str(CRD_FILE))
        self.apply(RBAC_FILE)
        return self.service_account_kubeconfig(OPERATOR_NAMESPACE, OPERATOR_SERVICE_ACCOUNT, kubeconfig,
                                               expiration_seconds=expiration_seconds)

    def operator_log(self, namespace: str) -> Path:
        """Where the `operator` fixture writes the output of the operator watching `namespace`."""
        return self.state / "operators" / f"{namespace}.log"

    def dump(self, namespace: str) -> str:
        """Everything a reader needs after a failure: objects, pipelines, events, operator and executor output."""
        out: list[str] = [f"===== namespace {namespace} ====="]
        kinds = ["pods", "jobs.batch", "persistentvolumeclaims", "configmaps", "serviceaccounts",
                 "roles.rbac.authorization.k8s.io", "rolebindings.rbac.authorization.k8s.io"]
        got = self.kubectl("get", "-n", namespace, ",".join(kinds), "-o", "wide", check=False)
        out += ["--- objects", got.stdout + got.stderr]
        # Only when the CRD is installed: otherwise kubectl fails on the unknown resource.
        got = self.kubectl("get", "-n", namespace, "trainingpipelines.trainpipe.io", "-o", "yaml", check=False)
        if got.returncode == 0:
            out += ["--- trainingpipelines (yaml)", got.stdout]
        got = self.kubectl("get", "-n", namespace, "pods,jobs.batch", "-o", "yaml", check=False)
        out += ["--- pods and jobs (yaml)", got.stdout + got.stderr]
        got = self.kubectl("get", "events", "-n", namespace, "--sort-by=.lastTimestamp", check=False)
        out += ["--- events", got.stdout + got.stderr]
        got = self.kubectl("get", "nodes", "-o", "wide", check=False)
        out += ["--- nodes", got.stdout + got.stderr]
        for log in sorted((self.executor_dir / "logs" / namespace).glob("*/*.log")):
            text = log.read_text(errors="replace")
            out += [f"--- pod log {log.parent.name}/{log.name}", text[-4000:]]
        operator_log = self.operator_log(namespace)
        if operator_log.exists():
            lines = operator_log.read_text(errors="replace").splitlines()
            out += [f"--- operator log {operator_log} (last 300 lines)", "\n".join(lines[-300:])]
        shared_log = self.state / "operator.log"  # the operator of `make operator-up`, if one runs
        if shared_log.exists():
            lines = [ln for ln in shared_log.read_text(errors="replace").splitlines() if namespace in ln]
            if lines:
                out += ["--- operator.log of make operator-up (this namespace)", "\n".join(lines[-200:])]
        executor_log = self.state / "executor.log"
        if executor_log.exists():
            lines = [ln for ln in executor_log.read_text(errors="replace").splitlines() if namespace in ln
                     or "WARNING" in ln or "ERROR" in ln or "Traceback" in ln]
            out += ["--- executor.log (this namespace, warnings)", "\n".join(lines[-200:])]
        return "\n".join(out)
