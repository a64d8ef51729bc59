"""The kopf adapter: low-level watch handlers that only wake the reconcile queue, and kopf's settings.

Only `on.event` handlers: they keep no state on the objects (no kopf annotations on Jobs or
pipelines) and add no finalizer, so deleting a pipeline never hangs while the operator is down.
The periodic resync in `runtime` is the safety net kopf's timers would be, without their finalizer.
"""

from __future__ import annotations

from typing import Any

import kopf

from trainpipe.contract.names import API_GROUP, API_VERSION, LABEL_MANAGED_BY, LABEL_PIPELINE, MANAGER, PLURAL
from trainpipe_operator.runtime import Reconciler

CHILD_LABELS = {LABEL_PIPELINE: kopf.PRESENT, LABEL_MANAGED_BY: MANAGER}


def build_registry(reconciler: Reconciler) -> kopf.OperatorRegistry:
    registry = kopf.OperatorRegistry()

    @kopf.on.startup(registry=registry)
    def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
        settings.posting.enabled = False  # our Events are posted by `act`; kopf's would repeat its log
        settings.watching.server_timeout = 300  # re-open watches regularly: silent stalls end by themselves
        settings.watching.client_timeout = 310
        settings.watching.reconnect_backoff = 0.5
        settings.networking.request_timeout = 60
        settings.scanning.disabled = True  # the resources are fixed; no need to watch CRDs and namespaces

    @kopf.on.login(registry=registry)
    def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
        # The official client's loaders: the --kubeconfig / $KUBECONFIG file, else the pod's ServiceAccount.
        return kopf.login_via_client(**kwargs)

    @kopf.on.event(API_GROUP, API_VERSION, PLURAL, registry=registry)
    def pipeline_event(event: dict[str, Any], namespace: str, name: str, meta: dict[str, Any], **_: Any) -> None:
        key = (namespace, name)
        if event.get("type") == "DELETED":
            reconciler.health.forget(key)
            reconciler.metrics.record_status(key, None)
            return
        reconciler.health.saw(key, meta.get("resourceVersion", ""))
        reconciler.enqueue(key)

    @kopf.on.event("batch", "v1", "jobs", labels=CHILD_LABELS, registry=registry)
    def job_event(namespace: str, labels: dict[str, str], **_: Any) -> None:
        reconciler.enqueue((namespace, labels[LABEL_PIPELINE]))

    @kopf.on.event("", "v1", "pods", labels=CHILD_LABELS, registry=registry)
    def pod_event(namespace: str, labels: dict[str, str], **_: Any) -> None:
        # Pods add what Jobs do not show: the scheduler's reason for Pending, termination messages.
        reconciler.enqueue((namespace, labels[LABEL_PIPELINE]))

    return registry
