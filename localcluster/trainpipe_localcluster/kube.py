"""The test harness's Kubernetes REST client (plain dicts over urllib3), kubeconfig helpers and wait helpers.

Shared by the executor, the cluster-tier tests and the scale benchmark. Why not trainpipe.kube.client,
the one client of the operator and the CLI: this one is what the cluster tier checks the operator
with, and a check made through the client under test would pass on both sides of a wrong path, verb
or content type in it. It also does what the product's client never needs (kopf watches for the
operator): watch streams, strategic-merge and JSON patches, a read timeout per call, and the server
and CA files the executor hands to the pods it runs. The kubeconfigs written here work with any
client, the official one too.
"""

from __future__ import annotations

import atexit
import base64
import json
import os
import shutil
import socket
import ssl
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
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
    # The key and certificates must exist while this process talks to the API server; not after it.
    atexit.register(shutil.rmtree, scratch, True)
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

