"""The chart values that only the local cluster needs, layered over values-dev.yaml; used by the demo and tests.

What they hold depends on the running cluster, so they are computed, not committed: its registry (where
`make images-push` pushed the images), and, when its real node is up, the placement of the operator and
the CPU-side Jobs on that node. The operator then runs in a real container on the host network: the
local cluster has no Service network (no kube-proxy), so the in-cluster address of the API server
routes nowhere and the operator is pointed at the API server's loopback address instead. It listens
on the node's own address only (its pod IP), where the kubelet's probes reach it.

    python -m trainpipe_localcluster.values --state-dir .cache/cluster --port 18080 > values-local.yaml
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import yaml

from trainpipe_localcluster.kube import read_kubeconfig
from trainpipe_localcluster.node import REAL_NODE, RealNode, registry_address, status

# `make images-push` pushes <registry>/<prefix>/<image>; the chart's global.imageRegistry takes the same prefix.
IMAGE_PREFIX = "trainpipe"


def image_registry(state_dir: Path) -> str:
    """Where the local cluster's images are: `127.0.0.1:PORT/trainpipe` (the chart's global.imageRegistry)."""
    return f"{registry_address(state_dir)}/{IMAGE_PREFIX}"


def real_node_values(api_server: str, port: int, node: RealNode = REAL_NODE) -> dict[str, Any]:
    """The operator, the example data and the CPU-side Jobs on the real node; the operator on the host network."""
    url = urlparse(api_server)
    placement = {"nodeSelector": dict(node.node_selector), "tolerations": [dict(node.toleration)]}
    return {
        "hostNetwork": True,
        "port": port,
        "extraEnv": [
            {"name": "KUBERNETES_SERVICE_HOST", "value": url.hostname},
            {"name": "KUBERNETES_SERVICE_PORT", "value": str(url.port or 443)},
            # The pod IP of a host-network pod is the node's address, where the kubelet's probes go.
            {"name": "TRAINPIPE_OPERATOR_HOST", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
        ],
        **placement,
        "jobs": {"cpuNodeSelector": placement["nodeSelector"], "cpuTolerations": placement["tolerations"]},
        "exampleData": dict(placement),
    }


def local_values(state_dir: Path, port: int) -> dict[str, Any]:
    """The local cluster's values: its registry, and the real node's placement when that node is up.

    Without the real node the operator and every Job run on the simulated nodes, whose pod executor runs
    each container's entrypoint as a host process (images are not pulled there).
    """
    values: dict[str, Any] = {"global": {"imageRegistry": image_registry(state_dir)}, "port": port}
    if status(state_dir).up:
        values.update(real_node_values(read_kubeconfig(state_dir / "kubeconfig").server, port))
    return values


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--state-dir", type=Path, required=True, help="the cluster's state folder (.cache/cluster)")
    parser.add_argument("--port", type=int, required=True, help="the operator's HTTP port (free on the host: it may use the host network)")
    args = parser.parse_args(argv)
    yaml.safe_dump(local_values(args.state_dir, args.port), sys.stdout, sort_keys=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
