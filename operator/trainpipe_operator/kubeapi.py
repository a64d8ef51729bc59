"""Plain-dict access to the API server over the official client's configuration, auth and transport.

Why not the generated typed methods: the 37.x client validates every body as a pydantic model and
wants model instances for creates, while the operator builds and reads plain manifests. Here the
official `ApiClient` still loads the kubeconfig or in-cluster token, refreshes credentials and pools
connections; this module only picks the path, the verb and the content type.
"""

from __future__ import annotations

import json
from typing import Any

from kubernetes import client, config

from trainpipe.contract.names import API_GROUP, API_VERSION, PLURAL
from trainpipe_operator.ratelimit import TokenBucket

MERGE_PATCH = "application/merge-patch+json"
TIMEOUT = (5.0, 30.0)  # connect, read: a request never hangs the reconcile worker forever


class ApiError(Exception):
    def __init__(self, method: str, path: str, status: int, body: Any) -> None:
        self.status = status
        self.reason = body.get("reason", "") if isinstance(body, dict) else ""
        message = body.get("message", "") if isinstance(body, dict) else str(body)
        super().__init__(f"{method} {path}: {status} {self.reason} {message}".strip())


def load_client(kubeconfig: str | None) -> client.ApiClient:
    """An ApiClient from the given kubeconfig, $KUBECONFIG / ~/.kube/config, or the pod's ServiceAccount."""
    if kubeconfig:
        return config.new_client_from_config(config_file=kubeconfig)
    try:
        config.load_incluster_config()
        return client.ApiClient()
    except config.ConfigException:
        return config.new_client_from_config()


def pipelines_path(namespace: str | None, name: str | None = None) -> str:
    base = f"/apis/{API_GROUP}/{API_VERSION}" + (f"/namespaces/{namespace}" if namespace else "") + f"/{PLURAL}"
    return base + (f"/{name}" if name else "")


def path(namespace: str, resource: str, name: str | None = None, *, group: str = "") -> str:
    """`resource` in `namespace`: core ('pods', 'configmaps', …) when group is '', else e.g. 'batch/v1'."""
    prefix = f"/apis/{group}" if group else "/api/v1"
    return f"{prefix}/namespaces/{namespace}/{resource}" + (f"/{name}" if name else "")


class Kube:
    def __init__(self, api_client: client.ApiClient, limiter: TokenBucket | None = None) -> None:
        self.api = api_client
        self.limiter = limiter

    def request(self, method: str, resource_path: str, body: Any = None, *, query: dict[str, Any] | None = None,
                content_type: str = "application/json") -> Any:
        if self.limiter is not None:
            self.limiter.acquire()
        headers = {"Accept": "application/json", "Content-Type": content_type}
        params = self.api.param_serialize(method, resource_path, query_params=list((query or {}).items()) or None,
                                          header_params=headers, body=body, auth_settings=["BearerToken"])
        response = self.api.call_api(*params, _request_timeout=TIMEOUT)
        raw = response.read()
        try:
            data = json.loads(raw) if raw else None
        except ValueError:
            data = raw.decode(errors="replace") if isinstance(raw, bytes) else raw
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

    def create(self, collection: str, body: dict[str, Any]) -> dict[str, Any] | None:
        """Create and return what the API server stored; None when it already exists (deterministic names make that success)."""
        try:
            created: dict[str, Any] = self.request("POST", collection, body)
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
