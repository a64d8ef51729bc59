"""ServiceAccount kubeconfigs: a client gets exactly the RBAC granted to its ServiceAccount."""

from __future__ import annotations

from pathlib import Path

import pytest
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes.client.exceptions import ApiException

from trainpipe_localcluster import CORE, ApiError, Cluster, Kube, wait_for


def test_service_account_kubeconfig_has_exactly_the_granted_rbac(cluster: Cluster, kube: Kube, namespace: str,
                                                                tmp_path: Path) -> None:
    kubeconfig = cluster.service_account_kubeconfig(namespace, "operator", tmp_path / "operator.kubeconfig")
    as_sa = Kube(kubeconfig)
    with pytest.raises(ApiError) as denied:
        as_sa.get(f"{CORE}/namespaces/{namespace}/configmaps")
    assert denied.value.status == 403
    assert f"system:serviceaccount:{namespace}:operator" in denied.value.message

    kube.create(f"/apis/rbac.authorization.k8s.io/v1/namespaces/{namespace}/roles", {
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": {"name": "read-configmaps"},
        "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list"]}]})
    kube.create(f"/apis/rbac.authorization.k8s.io/v1/namespaces/{namespace}/rolebindings", {
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": {"name": "operator"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "read-configmaps"},
        "subjects": [{"kind": "ServiceAccount", "name": "operator", "namespace": namespace}]})

    def listed() -> list[str] | None:
        # A new RoleBinding reaches the API server's authorizer through its own watch: a busy
        # server may still answer 403 for a moment after the create returns.
        try:
            return [cm["metadata"]["name"] for cm in as_sa.get(f"{CORE}/namespaces/{namespace}/configmaps")["items"]]
        except ApiError as err:
            if err.status == 403:
                return None
            raise

    names = wait_for("the new RoleBinding to take effect", listed, timeout=30)
    assert "kube-root-ca.crt" in names
    with pytest.raises(ApiError) as still_denied:
        as_sa.create(f"{CORE}/namespaces/{namespace}/configmaps",
                     {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}})
    assert still_denied.value.status == 403
    with pytest.raises(ApiError):
        as_sa.get(f"{CORE}/namespaces/{namespace}/secrets")

    # The official client (what the operator uses) reads the same kubeconfig.
    api = k8s.CoreV1Api(k8s_config.new_client_from_config(config_file=str(kubeconfig)))
    listed = api.list_namespaced_config_map(namespace)
    assert "kube-root-ca.crt" in [cm.metadata.name for cm in listed.items]
    with pytest.raises(ApiException) as official_denied:
        api.list_namespaced_secret(namespace)
    assert official_denied.value.status == 403

    # kubectl agrees, from the same file.
    can = cluster.kubectl("auth", "can-i", "list", "configmaps", "-n", namespace, kubeconfig=kubeconfig, check=False)
    assert can.stdout.strip() == "yes"
    cannot = cluster.kubectl("auth", "can-i", "delete", "configmaps", "-n", namespace, kubeconfig=kubeconfig,
                             check=False)
    assert cannot.stdout.strip() == "no"
