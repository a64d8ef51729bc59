"""Reads a TrainingPipeline and its pods from a cluster, for `trainpipe status` and `trainpipe logs`.

The official Kubernetes client is imported lazily: it comes with the `operator` extra only, and every
other command must work without it. Objects are handed on as plain API dicts (what `kubectl get -o json`
shows), so the commands read the same field names a user sees.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from typing import Any

from trainpipe.contract.kubelet import KILLED_BY_KUBELET
from trainpipe.contract.names import API_GROUP, API_VERSION, LABEL_PIPELINE, LABEL_RUN, PLURAL

INSTALL_HINT = "pip install trainpipe[operator]"
# The Indexed Job's completion index of a pod: the unit a training or select pod ran.
INDEX_ANNOTATION = "batch.kubernetes.io/job-completion-index"
REQUEST_TIMEOUT = (5, 30)  # connect, read (seconds)


class ClusterError(Exception):
    """The cluster could not be asked, or does not hold what was asked for; the message says what to do."""


def add_cluster_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("name", metavar="NAME", help="The TrainingPipeline (kubectl get tp).")
    p.add_argument("-n", "--namespace", metavar="NS", help="Its namespace (default: the kubeconfig context's, else 'default').")
    p.add_argument("--kubeconfig", metavar="FILE", help="Kubeconfig to use (default: $KUBECONFIG, else ~/.kube/config).")
    p.add_argument("--context", metavar="CTX", help="Kubeconfig context (default: the current one).")


@dataclass
class Cluster:
    """One API server as the kubeconfig's user; `get`/`list` return plain dicts."""

    api: Any  # kubernetes.client.ApiClient
    namespace: str

    def _call(self, path: str, query: list[tuple[str, Any]] | None = None, raw: bool = False) -> Any:
        headers = {"Accept": "*/*" if raw else "application/json"}
        try:
            params = self.api.param_serialize("GET", path, query_params=query or None, header_params=headers, auth_settings=["BearerToken"])
            response = self.api.call_api(*params, _request_timeout=REQUEST_TIMEOUT)
            data = response.read()
        except OSError as err:  # urllib3's connection errors are OSErrors
            raise ClusterError(f"cannot reach the API server {self.api.configuration.host}: {err}") from None
        text = data.decode(errors="replace") if isinstance(data, bytes) else str(data or "")
        if not 200 <= response.status < 300:
            raise ClusterError(_api_message(response.status, text, path))
        return text if raw else json.loads(text)

    def pipeline(self, name: str) -> dict[str, Any]:
        return self._call(f"/apis/{API_GROUP}/{API_VERSION}/namespaces/{self.namespace}/{PLURAL}/{name}")

    def pods(self, selector: dict[str, str]) -> list[dict[str, Any]]:
        labels = ",".join(f"{k}={v}" for k, v in selector.items())
        items = self._call(f"/api/v1/namespaces/{self.namespace}/pods", [("labelSelector", labels)])["items"]
        return sorted(items, key=lambda p: (p["metadata"].get("creationTimestamp") or "", p["metadata"]["name"]))

    def run_pods(self, pipeline: dict[str, Any], **labels: str) -> list[dict[str, Any]]:
        """Pods of the pipeline's current run (status.runId), narrowed by more labels."""
        selector = {LABEL_PIPELINE: pipeline["metadata"]["name"]}
        run = (pipeline.get("status") or {}).get("runId")
        if run:
            selector[LABEL_RUN] = run
        return self.pods(selector | labels)

    def log(self, pod: str, container: str | None, tail: int | None) -> str:
        query: list[tuple[str, Any]] = []
        if container:
            query.append(("container", container))
        if tail:
            query.append(("tailLines", tail))
        return self._call(f"/api/v1/namespaces/{self.namespace}/pods/{pod}/log", query, raw=True)


def connect(args: argparse.Namespace) -> Cluster:
    """A client from --kubeconfig/--context (or the usual defaults) and the namespace to read."""
    try:
        from kubernetes import config
    except ImportError:
        raise ClusterError(f"`trainpipe {args.command}` reads the cluster with the Kubernetes client, which is not installed: {INSTALL_HINT}") from None
    try:
        api = config.new_client_from_config(config_file=args.kubeconfig, context=args.context)
        namespace = args.namespace
        if namespace is None:
            _, current = config.list_kube_config_contexts(config_file=args.kubeconfig)
            chosen = current
            if args.context:
                contexts, _ = config.list_kube_config_contexts(config_file=args.kubeconfig)
                chosen = next((c for c in contexts if c["name"] == args.context), current)
            namespace = (chosen or {}).get("context", {}).get("namespace") or "default"
    except (config.ConfigException, OSError) as err:
        where = args.kubeconfig or "$KUBECONFIG / ~/.kube/config"
        raise ClusterError(f"cannot load a kubeconfig from {where}: {err}; pass --kubeconfig FILE") from None
    return Cluster(api=api, namespace=namespace)


def get_pipeline(cluster: Cluster, name: str) -> dict[str, Any]:
    try:
        return cluster.pipeline(name)
    except ClusterError as err:
        if "(404)" in str(err):
            raise ClusterError(f"TrainingPipeline {name} not found in namespace {cluster.namespace} "
                               f"(`kubectl get tp -A` lists them; -n NS picks the namespace)") from None
        raise


def _api_message(status: int, text: str, path: str) -> str:
    try:
        message = json.loads(text).get("message") or text
    except (AttributeError, ValueError):
        message = text
    return f"GET {path}: ({status}) {message.strip()}"


def termination(pod: dict[str, Any]) -> tuple[int | None, str]:
    """(exit code, termination message) of the pod's first terminated container (current state, else the last one).

    A container the kubelet ended (OOMKilled) leaves no message of its own: its reason stands in for one."""
    for cs in (pod.get("status") or {}).get("containerStatuses") or []:
        for state in (cs.get("state") or {}, cs.get("lastState") or {}):
            term = state.get("terminated")
            if term:
                message = (term.get("message") or "").strip()
                if term.get("reason") in KILLED_BY_KUBELET:
                    message = f"{term['reason']}" + (f": {message}" if message else "")
                return term.get("exitCode"), message
    return None, ""


def unit_index(pod: dict[str, Any]) -> int | None:
    raw = (pod["metadata"].get("annotations") or {}).get(INDEX_ANNOTATION)
    return int(raw) if raw is not None and raw.isdigit() else None
