"""The local Kubernetes cluster trainpipe is tested on: a real control plane, simulated nodes, the pod executor.

The names tests and benchmarks use most are re-exported here; each lives in the module named after
what it holds (kube, cluster, manifests, operator_process, executor, controlplane, auditlog).
"""

from trainpipe_localcluster.cluster import OPERATOR_NAMESPACE, OPERATOR_SERVICE_ACCOUNT, Cluster
from trainpipe_localcluster.kube import (
    BATCH,
    CORE,
    JSON_PATCH,
    MERGE,
    STRATEGIC,
    ApiError,
    Kube,
    collection_path,
    free_port,
    http_get,
    job_condition,
    pods_of_job,
    read_kubeconfig,
    wait_for,
    write_token_kubeconfig,
)
from trainpipe_localcluster.manifests import (
    EXAMPLE_CLAIM,
    EXAMPLE_DIR,
    GPU_RESOURCE,
    GPU_TOLERATION,
    POOL_LABEL,
    ExampleData,
    claim_manifest,
    condition,
    job_manifest,
    pipeline_manifest,
    pipelines_path,
    wait_condition,
)
from trainpipe_localcluster.operator_process import OperatorProcess
from trainpipe_localcluster.repo import CRD_FILE, EXAMPLE_DATA_FILE, RBAC_FILE, REPO

__all__ = [
    "BATCH", "CORE", "CRD_FILE", "EXAMPLE_CLAIM", "EXAMPLE_DATA_FILE", "EXAMPLE_DIR", "GPU_RESOURCE", "GPU_TOLERATION",
    "JSON_PATCH", "MERGE", "OPERATOR_NAMESPACE", "OPERATOR_SERVICE_ACCOUNT", "POOL_LABEL", "RBAC_FILE", "REPO", "STRATEGIC",
    "ApiError", "Cluster", "ExampleData", "Kube", "OperatorProcess", "claim_manifest", "collection_path", "condition",
    "free_port", "http_get", "job_condition", "job_manifest", "pipeline_manifest", "pipelines_path", "pods_of_job",
    "read_kubeconfig", "wait_condition", "wait_for", "write_token_kubeconfig",
]
