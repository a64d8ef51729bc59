"""The kopf adapter: low-level watch handlers that fill the reconcile cache and wake the queue, and kopf's settings.

Watched: pipelines, their Jobs and their plan ConfigMaps. Not pods: every start, Ready and finish of
every pod is a watch event, and decoding them cost the operator more than all its passes; a pass
LISTs the few pods it needs (observed.pod_read).

Handlers are coroutines: kopf runs them on its event loop, the loop the reconcile queue lives on (kopf
would run plain functions in threads, where touching the queue is unsafe). Only `on.event` handlers: they keep no state on the objects (no kopf annotations on Jobs or
pipelines) and add no finalizer, so deleting a pipeline never hangs while the operator is down.
The periodic resync (resync.py) is the safety net kopf's timers would be, without their finalizer.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import kopf

from trainpipe.contract.names import API_GROUP, API_VERSION, LABEL_MANAGED_BY, LABEL_PIPELINE, MANAGER, PLURAL
from trainpipe_operator.runtime import Reconciler

CHILD_LABELS: dict[str, Any] = {LABEL_PIPELINE: kopf.PRESENT, LABEL_MANAGED_BY: MANAGER}


def connection_info(config: Any) -> kopf.ConnectionInfo:
    """kopf's connection settings from an official-client Configuration (token, client certificate or both)."""
    header = config.get_api_key_with_prefix("BearerToken") or config.get_api_key_with_prefix("authorization")
    scheme, _, token = (header or "").rpartition(" ")
    return kopf.ConnectionInfo(
        server=config.host, ca_path=config.ssl_ca_cert, insecure=not config.verify_ssl, scheme=scheme or None, token=token or None,
        certificate_path=config.cert_file, private_key_path=config.key_file, username=config.username or None, password=config.password or None,
    )


class NoDiffBase(kopf.DiffBaseStorage):
    """No diff-base: kopf deep-copies every object of every watch event into one, to diff for
    on.create/on.update handlers. This operator has only on.event handlers, so no diff is ever read,
    and at thousands of pods those copies take much of the event loop's time (BENCHMARKS.md, "Design
    measurements") from the passes that share its process and from the cluster that shares its cores."""

    def build(self, *, body: kopf.Body, extra_fields: Any = None) -> Any:
        return None

    def fetch(self, *, body: kopf.Body) -> None:
        return None

    def store(self, *, body: kopf.Body, patch: kopf.Patch, essence: Any) -> None:
        return None


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
        settings.persistence.diffbase_storage = NoDiffBase()

    @kopf.on.login(registry=registry)
    async def login(**_: Any) -> kopf.ConnectionInfo:
        # kopf's watches use the very credentials our client loaded (the --kubeconfig file or the pod's
        # ServiceAccount), so both sides always act as the same identity with the same RBAC.
        info = connection_info(reconciler.kube.api.configuration)
        reconciler.logged_in.set()
        return info

    # Each handler first records what it saw in the reconciler's cache, then wakes the pipeline as soon
    # as the change calls for (wakeups.py), so the pass that follows reads it without
    # asking the API server.
    @kopf.on.event(API_GROUP, API_VERSION, PLURAL, registry=registry)
    async def pipeline_event(event: kopf.RawEvent, namespace: str | None, name: str, meta: kopf.Meta, **_: Any) -> None:
        if namespace is None:
            return
        reconciler.metrics.watch_events.labels(kind="TrainingPipeline").inc()
        key = (namespace, name)
        if event.get("type") == "DELETED":
            reconciler.cache.pipeline_deleted(key, str(meta.get("resourceVersion", "")))
            reconciler.health.forget(key)
            reconciler.metrics.record_status(key, None)
            return
        reconciler.health.saw(key, str(meta.get("resourceVersion", "")))
        if reconciler.cache.put_pipeline(dict(event["object"])):  # not the echo of the operator's own status write
            reconciler.wakeups.notify(key)

    @kopf.on.event("batch", "v1", "jobs", labels=CHILD_LABELS, registry=registry)
    async def job_event(event: kopf.RawEvent, namespace: str | None, labels: Mapping[str, str], **_: Any) -> None:
        reconciler.metrics.watch_events.labels(kind="Job").inc()
        if namespace is not None:
            reconciler.wakeups.changed((namespace, labels[LABEL_PIPELINE]), reconciler.cache.job_event(event.get("type"), dict(event["object"])))

    @kopf.on.event("", "v1", "configmaps", labels=CHILD_LABELS, registry=registry)
    async def configmap_event(event: kopf.RawEvent, namespace: str | None, labels: Mapping[str, str], **_: Any) -> None:
        # The <pipeline>-plan ConfigMap: deleted or edited by hand, the pipeline's pass writes it back.
        reconciler.metrics.watch_events.labels(kind="ConfigMap").inc()
        if namespace is not None:
            reconciler.wakeups.changed((namespace, labels[LABEL_PIPELINE]), reconciler.cache.configmap_event(event.get("type"), dict(event["object"])))

    return registry
