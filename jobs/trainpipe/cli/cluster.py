"""Reads a TrainingPipeline and its pods from a cluster, for `trainpipe status` and `trainpipe logs`.

Through the one client the operator uses too (trainpipe.kube.client), which loads the Kubernetes
client of the `operator` extra only when a command connects: every other command works without it.
The pipeline is handed on as the plain API dict (what `kubectl get -o json` shows, field names a user
knows); its pods as the views trainpipe.kube.pods parses, so the page and the operator's conditions
read a pod the same way.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Any

from trainpipe.contract.names import LABEL_PIPELINE, LABEL_RUN
from trainpipe.kube.client import ApiError, Kube, kubeconfig_namespace, load_client, path, pipelines_path
from trainpipe.kube.pods import ObservedPod, parse_pod

INSTALL_HINT = "pip install trainpipe[operator]"


class ClusterError(Exception):
    """The cluster could not be asked, or does not hold what was asked for; the message says what to do."""


def add_cluster_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("name", metavar="NAME", help="The TrainingPipeline (kubectl get tp).")
    p.add_argument("-n", "--namespace", metavar="NS", help="Its namespace (default: the kubeconfig context's, else 'default').")
    p.add_argument("--kubeconfig", metavar="FILE", help="Kubeconfig to use (default: $KUBECONFIG, else ~/.kube/config).")
    p.add_argument("--context", metavar="CTX", help="Kubeconfig context (default: the current one).")


@dataclass
class Cluster:
    """One API server as the kubeconfig's user, and the namespace the command reads."""

    kube: Kube
    namespace: str

    def _read(self, resource_path: str, *, text: bool = False, **query: Any) -> Any:
        import urllib3  # the official client's transport: installed with it, which `connect` has loaded

        try:
            return self.kube.text(resource_path, **query) if text else self.kube.get(resource_path, **query)
        except ApiError as err:
            raise ClusterError(f"GET {resource_path}: ({err.status}) {err.message}") from None
        except (OSError, urllib3.exceptions.HTTPError) as err:  # refused, timed out, out of retries
            raise ClusterError(f"cannot reach the API server {self.kube.api.configuration.host}: {err}") from None

    def pipeline(self, name: str) -> dict[str, Any]:
        found: dict[str, Any] = self._read(pipelines_path(self.namespace, name))
        return found

    def pods(self, selector: dict[str, str]) -> list[ObservedPod]:
        """The pods `selector` picks, oldest first."""
        items = self._read(path(self.namespace, "pods"), labelSelector=",".join(f"{k}={v}" for k, v in selector.items()))["items"]
        return [parse_pod(p) for p in sorted(items, key=lambda p: (p["metadata"].get("creationTimestamp") or "", p["metadata"]["name"]))]

    def run_pods(self, pipeline: dict[str, Any], **labels: str) -> list[ObservedPod]:
        """Pods of the pipeline's current run (status.runId), narrowed by more labels."""
        selector = {LABEL_PIPELINE: pipeline["metadata"]["name"]}
        run = (pipeline.get("status") or {}).get("runId")
        if run:
            selector[LABEL_RUN] = run
        return self.pods(selector | labels)

    def log(self, pod: str, container: str | None, tail: int | None) -> str:
        query: dict[str, Any] = ({"container": container} if container else {}) | ({"tailLines": tail} if tail else {})
        text: str = self._read(path(self.namespace, "pods", pod) + "/log", text=True, **query)
        return text


def connect(args: argparse.Namespace) -> Cluster:
    """A client from --kubeconfig/--context (or the usual defaults) and the namespace to read."""
    try:
        from kubernetes import config
    except ImportError:
        raise ClusterError(f"`trainpipe {args.command}` reads the cluster with the Kubernetes client, which is not installed: {INSTALL_HINT}") from None
    try:
        api = load_client(args.kubeconfig, args.context)
        namespace = args.namespace or kubeconfig_namespace(args.kubeconfig, args.context)
    except (config.ConfigException, OSError) as err:
        where = args.kubeconfig or "$KUBECONFIG / ~/.kube/config"
        raise ClusterError(f"cannot load a kubeconfig from {where}: {err}; pass --kubeconfig FILE") from None
    return Cluster(kube=Kube(api), namespace=namespace)


def get_pipeline(cluster: Cluster, name: str) -> dict[str, Any]:
    try:
        return cluster.pipeline(name)
    except ClusterError as err:
        if "(404)" in str(err):
            raise ClusterError(f"TrainingPipeline {name} not found in namespace {cluster.namespace} "
                               f"(`kubectl get tp -A` lists them; -n NS picks the namespace)") from None
        raise
