"""Apply a Decision: ensure children, write status once (only when it changed), then delete, then post Events.

Order matters: a stage's completion is in status before anything may delete its Jobs, so a crash
between the two can never make `decide` run a finished stage again.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Callable
from typing import Any

from trainpipe.contract.names import API_GROUP, API_VERSION, KIND, LABEL_STAGE, MANAGER
from trainpipe.contract.status import Reason
from trainpipe.contract.timestamps import stamp
from trainpipe.kube.client import ApiError, Kube, path, pipelines_path
from trainpipe_operator.admission import ADMITTED_SECONDS, job_shape
from trainpipe_operator.cache import ChildCache
from trainpipe_operator.decide import Decision
from trainpipe_operator.metrics import Metrics
from trainpipe_operator.observed import SUSPENDED_BY_OPERATOR, PipelineView, controller_of, owned
from trainpipe_operator.refusals import is_refusal

log = logging.getLogger("trainpipe.operator")
INSTANCE = os.environ.get("POD_NAME") or socket.gethostname()
# PUTs of one status against an object a client keeps editing, before the pass starts over.
STATUS_WRITE_ATTEMPTS = 5


class CreateRefused(Exception):
    """The API server refused to create `manifest` with a 4xx that asking again will not change (`refusals.is_refusal`).

    The pass stops at once: nothing after the refusal is created, and the status it would write is from
    before it. The reconciler records the refusal and passes again, and that pass Stalls the pipeline."""

    def __init__(self, manifest: dict[str, Any], error: ApiError, dry_run: bool) -> None:
        self.manifest, self.error, self.dry_run = manifest, error, dry_run
        super().__init__(f"{'dry run of ' if dry_run else ''}{manifest.get('kind')} {manifest['metadata']['name']}: {error}")


def ensure(kube: Kube, manifest: dict[str, Any], *, dry_run: bool = False) -> dict[str, Any] | None:
    """Create `manifest` (None when it exists already); CreateRefused when the API server will not have it."""
    try:
        return kube.create(_collection(manifest), manifest, dry_run=dry_run)
    except ApiError as err:
        if is_refusal(err.status):
            raise CreateRefused(manifest, err, dry_run) from err
        raise


class StatusConflict(Exception):
    """Someone else wrote the pipeline's status since it was read: reconcile again from a fresh read."""


def status_wire(decision: Decision) -> dict[str, Any]:
    return decision.status.model_dump(mode="json", by_alias=True, exclude_none=True)


def _collection(manifest: dict[str, Any]) -> str:
    ns = manifest["metadata"]["namespace"]
    kind = manifest["kind"]
    if kind == "Job":
        return path(ns, "jobs", group="batch/v1")
    if kind == "ConfigMap":
        return path(ns, "configmaps")
    if kind == "PersistentVolumeClaim":
        return path(ns, "persistentvolumeclaims")
    raise ValueError(f"act cannot create a {kind}")


def progress_only(old: dict[str, Any], new: dict[str, Any]) -> bool:
    """Whether two statuses differ only in running counts: stage unit counters, `progress`, and the
    "stage cpu: 12/20 units done, …" message a running stage shows. Those follow every pod a Job starts
    or finishes; everything else (a stage starting or ending, a failure, a reason to wait) does not."""
    return old != new and _without_counts(old) == _without_counts(new)


def _without_counts(status: dict[str, Any]) -> dict[str, Any]:
    out = dict(status, progress=None)
    out["stages"] = {name: dict(stage, pending=0, active=0, succeeded=0, failed=0) for name, stage in (status.get("stages") or {}).items()}
    if status.get("conditions") and any(c.get("reason") == Reason.STAGE_RUNNING.value for c in status["conditions"]):
        out["message"] = None
        out["conditions"] = [dict(c, message="") if c.get("reason") == Reason.STAGE_RUNNING.value else c for c in status["conditions"]]
    return out


EventPoster = Callable[[Kube, PipelineView, str, str, str], object]


def act(kube: Kube, obj: dict[str, Any], view: PipelineView, decision: Decision, metrics: Metrics, cache: ChildCache | None = None,
        *, hold_progress: bool = False, post: EventPoster | None = None) -> bool:
    """Apply `decision`; every answer the API gives to a write goes into `cache`, so the next pass starts from it.

    With `hold_progress`, a status that only moves running counts (`progress_only`) is not written:
    holding them halves a run's status writes when many pipelines run at once (BENCHMARKS.md, "Design
    measurements"), and a count a few seconds old is still true enough. Returns whether the status was held back, so the
    caller looks again when the hold ends. Events go through `post` (default: posted here, in order).
    """
    ns, key = view.namespace, (view.namespace, view.name)
    cache = cache if cache is not None else ChildCache()
    # The plan ConfigMap goes first: whoever sees a stage's Jobs can already read the plan they train.
    for manifest in decision.upsert:
        written = ensure(kube, manifest) or replace_own(kube, f"{_collection(manifest)}/{manifest['metadata']['name']}", manifest, view.uid)
        if written is None:
            cache.unprime(key)  # another controller's object holds the name: the next pass reads it and stalls
            continue
        cache.wrote(written)
    # A stage of several Jobs (one per family) is dry-run whole first: a spec that makes one of them
    # invalid then creates none, instead of leaving its siblings running for nothing. A single create
    # is its own dry run.
    # A shape that passed a dry run lately is not dry-run again (admission.py): most pipelines share a spec.
    stage_jobs = [m for m in decision.create if m["kind"] == "Job"]
    if len(stage_jobs) > 1:
        shapes = [job_shape(m) for m in stage_jobs]
        for manifest, shape in zip(stage_jobs, shapes):
            if not cache.admitted(ns, shape, ADMITTED_SECONDS):
                ensure(kube, manifest, dry_run=True)
        cache.admit(ns, shapes)
    for manifest in decision.create:
        try:
            created = ensure(kube, manifest)
        except CreateRefused:
            cache.forget_admitted(ns)
            raise
        cache.accepted(key, manifest["metadata"]["name"])
        if created is None:
            if manifest["kind"] == "Job":
                held_by_another(kube, manifest, view.uid)
                cache.unprime(key)  # it exists, yet the cache did not show it: read it all again next pass
            continue
        cache.wrote(created)
        if manifest["kind"] == "Job":
            metrics.jobs_created.labels(stage=manifest["metadata"]["labels"].get(LABEL_STAGE, "")).inc()
            log.info("%s/%s: created Job %s", ns, view.name, manifest["metadata"]["name"])
    for name in decision.suspend_jobs:
        cache.wrote(kube.merge_patch(path(ns, "jobs", name, group="batch/v1"),
                                     {"metadata": {"annotations": {SUSPENDED_BY_OPERATOR: "true"}}, "spec": {"suspend": True}}))
    for name in decision.resume_jobs:
        cache.wrote(kube.merge_patch(path(ns, "jobs", name, group="batch/v1"),
                                     {"metadata": {"annotations": {SUSPENDED_BY_OPERATOR: None}}, "spec": {"suspend": False}}))
    new_status, old_status = status_wire(decision), obj.get("status") or {}
    held = False
    if new_status != old_status:  # most passes change nothing: they skip the comparison of counts too
        counts = progress_only(old_status, new_status)
        held = hold_progress and counts
        if not held:
            written = write_status(kube, obj, pipelines_path(ns, view.name), new_status)
            if written is not None:
                cache.wrote(written)
                metrics.status_writes.labels(change="counts" if counts else "state").inc()
    for name in decision.delete_jobs:
        answer = kube.delete(path(ns, "jobs", name, group="batch/v1"))
        cache.job_deleted(key, name, answer)
        if answer is not None:
            log.info("%s/%s: deleted Job %s", ns, view.name, name)
    for stage, outcome, seconds, jobs in decision.finished_stages:
        metrics.stage_seconds.labels(stage=stage, outcome=outcome).observe(seconds)
        metrics.jobs_finished.labels(stage=stage, outcome=outcome).inc(jobs)
    for event in decision.events:
        (post or post_event)(kube, view, event.type, event.reason, event.message)
    return held


def held_by_another(kube: Kube, manifest: dict[str, Any], uid: str) -> None:
    """A Job of ours "already exists": if the object of that name is not the pipeline's (no labels of ours, so no
    LIST by label showed it), CreateRefused, so the pipeline Stalls naming it instead of asking on every pass."""
    name = manifest["metadata"]["name"]
    collection = _collection(manifest)
    items = kube.get(collection, fieldSelector=f"metadata.name={name}").get("items") or []
    if not items or owned(controller_of(items[0].get("metadata") or {}), uid):
        return
    holder = controller_of(items[0].get("metadata") or {})
    by = f"its controller is {holder.kind} {holder.name} (uid {holder.uid})" if holder else "it has no controller"
    raise CreateRefused(manifest, ApiError("POST", collection, 409, {
        "reason": "AlreadyExists", "message": f"a Job named {name} exists and is not this pipeline's: {by}"}), dry_run=False)


def replace_own(kube: Kube, resource_path: str, manifest: dict[str, Any], uid: str) -> dict[str, Any] | None:
    """Replace the object at `resource_path` with `manifest` only if the pipeline (`uid`) controls it, at the
    version read (a 409 if it changed meanwhile); None, leaving it byte for byte, when it is someone else's or gone."""
    # A LIST by name, not a GET: the operator's role reads its children by listing only (operator-rules.yaml).
    collection, _, name = resource_path.rpartition("/")
    items = kube.get(collection, fieldSelector=f"metadata.name={name}").get("items") or []
    if not items:
        return None
    current = items[0]
    meta = current.get("metadata") or {}
    if not owned(controller_of(meta), uid):
        log.warning("%s: not replaced, its controller is not this pipeline", resource_path)
        return None
    body = dict(manifest, metadata=dict(manifest["metadata"], resourceVersion=meta.get("resourceVersion")))
    written: dict[str, Any] = kube.replace(resource_path, body)
    return written


def write_status(kube: Kube, obj: dict[str, Any], resource_path: str, status: dict[str, Any]) -> dict[str, Any] | None:
    """PUT `status` to /status with a resourceVersion, so it never overwrites a status it did not start from.

    A 409 means the object changed since this pass read it. An edit of the spec, labels or
    annotations does not make the status wrong: it reports what this pass observed, and its
    observedGeneration says which spec it was computed for (the edit's own event brings the next
    pass). So the status goes again on the fresh object, as long as the status there is still the
    one this pass started from; only a status written by someone else calls for a pass from scratch.
    Returns the object as written (None when the pipeline went meanwhile).
    Recomputing on every edit instead would let a client that edits faster than a pass takes keep
    status from ever being written while the Jobs run on.
    """
    current, conflict = obj, ""
    for _ in range(STATUS_WRITE_ATTEMPTS):
        try:
            written: dict[str, Any] = kube.replace(resource_path + "/status", dict(current, status=status))
            return written
        except ApiError as err:
            if err.status != 409:
                raise
            conflict = str(err)
        current = kube.get_or_none(resource_path)
        if current is None:
            return None  # deleted meanwhile: its Jobs go with it
        if (current.get("status") or {}) != (obj.get("status") or {}):
            raise StatusConflict(f"{conflict}; and the status changed meanwhile")
    raise StatusConflict(conflict)


def post_event(kube: Kube, view: PipelineView, kind: str, reason: str, message: str) -> None:
    """A core/v1 Event on the pipeline; losing one is never worth failing a reconcile for."""
    now = stamp()
    body = {
        "apiVersion": "v1", "kind": "Event",
        "metadata": {"generateName": f"{view.name}.", "namespace": view.namespace},
        "involvedObject": {"apiVersion": f"{API_GROUP}/{API_VERSION}", "kind": KIND, "name": view.name, "namespace": view.namespace, "uid": view.uid},
        "type": kind, "reason": reason, "message": message, "count": 1, "firstTimestamp": now, "lastTimestamp": now,
        "source": {"component": MANAGER}, "reportingComponent": MANAGER, "reportingInstance": INSTANCE[:128],
    }
    try:
        kube.create(path(view.namespace, "events"), body)
    except ApiError as err:
        log.warning("%s/%s: event %s not posted: %s", view.namespace, view.name, reason, err)
