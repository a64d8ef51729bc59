"""Plain-dict access to the API server over the official client's configuration, auth and transport:
the operator's reads and writes, and what `trainpipe status`/`logs` read.

Why not the generated typed methods: the 37.x client validates every body as a pydantic model and
wants model instances for creates, while the operator builds and reads plain manifests and the CLI
shows the fields a user sees in `kubectl get -o json`. Here the official `ApiClient` still loads the
kubeconfig or in-cluster token, refreshes credentials and pools connections; this module only picks
the path, the verb and the content type. The Kubernetes client comes with the `operator` extra, so it
is imported only when a client is loaded: the CLI imports this module and still runs every command
that reads no cluster without it.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Protocol

from trainpipe.contract.names import API_GROUP, API_VERSION, PLURAL

if TYPE_CHECKING:
    from kubernetes.client import ApiClient

JSON = "application/json"
MERGE_PATCH = "application/merge-patch+json"
TIMEOUT = (5.0, 30.0)  # connect, read: a request never hangs its caller forever


class ApiError(Exception):
    """A non-2xx answer, with the Status object's reason and message."""

    def __init__(self, method: str, path: str, status: int, body: Any) -> None:
        self.status = status
        self.reason = body.get("reason", "") if isinstance(body, dict) else ""
        self.message = (body.get("message", "") if isinstance(body, dict) else str(body or "")).strip()
        details = (body.get("details") or {}) if isinstance(body, dict) else {}
        # The object's fields the API server names (a 422's causes): which part of a manifest it refused.
        self.fields = tuple(dict.fromkeys(c["field"] for c in details.get("causes") or [] if c.get("field")))
        super().__init__(f"{method} {path}: {status} {self.reason} {self.message}".strip())


class Limiter(Protocol):
    def acquire(self) -> None: ...


def load_client(kubeconfig: str | None = None, context: str | None = None, *, in_cluster: bool = False) -> ApiClient:
    """An ApiClient from `kubeconfig` (its `context`, else the current one); without a file, the pod's
    ServiceAccount when `in_cluster` and there is one, else $KUBECONFIG / ~/.kube/config."""
    from kubernetes import client, config

    if in_cluster and not kubeconfig:
        try:
            config.load_incluster_config()
            return client.ApiClient()
        except config.ConfigException:
            pass
    return config.new_client_from_config(config_file=kubeconfig, context=context)


def kubeconfig_namespace(kubeconfig: str | None = None, context: str | None = None) -> str:
    """The namespace of the kubeconfig's `context` (the current one when not given), 'default' when it sets none."""
    from kubernetes import config

    contexts, current = config.list_kube_config_contexts(config_file=kubeconfig)
    chosen = next((c for c in contexts if c["name"] == context), current) if context else current
    return str((chosen or {}).get("context", {}).get("namespace") or "default")


def pipelines_path(namespace: str | None, name: str | None = None) -> str:
    base = f"/apis/{API_GROUP}/{API_VERSION}" + (f"/namespaces/{namespace}" if namespace else "") + f"/{PLURAL}"
    return base + (f"/{name}" if name else "")


def path(namespace: str, resource: str, name: str | None = None, *, group: str = "") -> str:
    """`resource` in `namespace`: core ('pods', 'configmaps', …) when group is '', else e.g. 'batch/v1'."""
    prefix = f"/apis/{group}" if group else "/api/v1"
    return f"{prefix}/namespaces/{namespace}/{resource}" + (f"/{name}" if name else "")


class Kube:
    """One API server as one identity; bodies and answers are plain API dicts."""

    def __init__(self, api_client: ApiClient, limiter: Limiter | None = None) -> None:
        self.api = api_client
        self.limiter = limiter

    def request(self, method: str, resource_path: str, body: Any = None, *, query: dict[str, Any] | None = None,
                content_type: str = JSON, accept: str = JSON) -> Any:
        """The answer as JSON (or as text when `accept` is not JSON, e.g. a pod's log); ApiError unless 2xx."""
        if self.limiter is not None:
            self.limiter.acquire()
        headers = {"Accept": accept, "Content-Type": content_type}
        # The body bypasses param_serialize: its sanitize_for_serialization walks every value of a dict in
        # Python (for model objects this client never sends), a quarter of the operator's own CPU at 50
        # pipelines at once; the REST layer json.dumps the plain dict as it would have the walked copy.
        method, url, header_params, _, post_params = self.api.param_serialize(
            method, resource_path, query_params=list((query or {}).items()) or None, header_params=headers, body=None, auth_settings=["BearerToken"])
        response = self.api.call_api(method, url, header_params, body, post_params, _request_timeout=TIMEOUT)
        raw = response.read()
        text = raw.decode(errors="replace") if isinstance(raw, bytes) else (raw or "")
        if 200 <= response.status < 300 and accept != JSON:
            return text
        try:
            data = json.loads(text) if text else None
        except ValueError:
            data = text
        if not 200 <= response.status < 300:
            raise ApiError(method, resource_path, response.status, data)
        return data

    def get(self, resource_path: str, **query: Any) -> Any:
        return self.request("GET", resource_path, query=query)

    def get_or_none(self, resource_path: str) -> Any:
        try:
            return self.get(resource_path)
        except ApiError as err:
            if err.status == 404:
                return None
            raise

    def text(self, resource_path: str, **query: Any) -> str:
        """A plain-text read (a pod's log)."""
        answer: str = self.request("GET", resource_path, query=query, accept="*/*")
        return answer

    def create(self, collection: str, body: dict[str, Any], *, dry_run: bool = False) -> dict[str, Any] | None:
        """Create and return what the API server stored; None when it already exists (deterministic names make that success).
        With `dry_run`, the API server validates and admits it (dryRun=All) and stores nothing."""
        try:
            created: dict[str, Any] = self.request("POST", collection, body, query={"dryRun": "All"} if dry_run else None)
            return created
        except ApiError as err:
            if err.status == 409:
                return None
            raise

    def replace(self, resource_path: str, body: dict[str, Any]) -> Any:
        return self.request("PUT", resource_path, body)

    def merge_patch(self, resource_path: str, body: dict[str, Any]) -> Any:
        return self.request("PATCH", resource_path, body, content_type=MERGE_PATCH)

    def delete(self, resource_path: str, propagation: str = "Background") -> Any:
        """Delete; returns the API's answer (the object or a Status), None when it was already gone."""
        try:
            return self.request("DELETE", resource_path, {"propagationPolicy": propagation}) or {}
        except ApiError as err:
            if err.status == 404:
                return None
            raise
