"""Read one pipeline and its children into the snapshots `decide` takes: from the cache when it can be trusted, else from the API server.

A full read (GET the pipeline, label-selected LISTs, GET the claims) is what a pass after a start, a
failed pass or the relist period makes: after a restart or a missed event the snapshot is the
cluster's truth, which is what keeps `decide` from creating a Job twice. It also refills the cache
(see `cache`), from which the passes in between read without a request. Pods are not watched: they
are LISTed when a pass needs them (`observed.pod_read`).

A child is the pipeline's only when its controller ownerReference carries the pipeline's UID; the
others with its labels or its child names go to `Observed.foreign`, for `decide` to leave alone (and to
stall on when one holds a name it needs).
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from trainpipe.contract.names import LABEL_PIPELINE, LABEL_RUN, LABEL_STAGE
from trainpipe.kube.client import ApiError, Kube, path, pipelines_path
from trainpipe.kube.pods import ObservedPod
from trainpipe_operator.cache import ChildCache, Key
from trainpipe_operator.naming import artifacts_claim, plan_configmap, spec_configmap
from trainpipe_operator.observed import (
    POD_RECHECK_SECONDS,
    CreateFailure,
    ForeignChild,
    NodeTrouble,
    Observed,
    ObservedConfigMap,
    ObservedJob,
    PipelineView,
    PodRead,
    PodScope,
    owned,
    parse_configmap,
    parse_create_failures,
    parse_node_trouble,
    pod_read,
    pod_scope,
    pod_wait_left,
    podless,
    podless_wait_left,
    stranded_nodes,
)
from trainpipe_operator.schedule import CurrentRun

log = logging.getLogger("trainpipe.operator")


def read_pipeline(kube: Kube, cache: ChildCache, key: Key) -> tuple[dict[str, Any], PipelineView] | None:
    """The pipeline from the cache when it is trusted, else a GET (which refreshes the cache)."""
    known, obj = cache.pipeline(key) if cache.fresh(key) else (False, None)
    if not known:
        obj = kube.get_or_none(pipelines_path(*key))
        if obj is None:
            cache.pipeline_deleted(key, "")
        else:
            cache.put_pipeline(obj)
    if obj is None or (obj.get("metadata") or {}).get("deletionTimestamp"):
        return None  # gone or going: ownerReferences clean up its Jobs
    return obj, cache.view(obj)


def observe(kube: Kube, cache: ChildCache, view: PipelineView, now: datetime, current: CurrentRun | None = None) -> Observed:
    """What the cluster holds for the pipeline's `current` run (computed from `now` when not given)."""
    current = current or view.current_run(now)
    key = (view.namespace, view.name)
    selector = f"{LABEL_PIPELINE}={view.name}"
    full = not cache.fresh(key)
    if full:
        started = cache.clock()  # trust runs from the start of the reads, not their end
        cache.list_jobs(key, kube.get(path(view.namespace, "jobs", group="batch/v1"), labelSelector=selector))
        cache.list_configmaps(key, kube.get(path(view.namespace, "configmaps"), labelSelector=selector))
    jobs, foreign = own_jobs(cache.jobs(key), view.uid)
    pods: tuple[ObservedPod, ...] = ()
    missing: list[str] = []
    need, recheck, every = PodRead.NONE, None, POD_RECHECK_SECONDS
    artifacts_exists = True
    failures: tuple[CreateFailure, ...] = ()
    lost: tuple[NodeTrouble, ...] = ()
    refusal = cache.refusal(key)
    if refusal is not None and (current is None or not refusal.applies(view.generation, current.run_id)):
        refusal = None  # the spec changed (or the run did) since: the create is tried at once
    if view.spec is not None and current is not None:
        run = current.run_id
        need = pod_read(jobs, run, view.status)
        if need is PodRead.WAITING:
            wait, every = pod_wait_left(jobs, run, view.status, now)
            recheck = wait or every  # pods only starting: look when they have waited long enough; else at the next LIST
            if wait > 0:
                need = PodRead.NONE
        if need is not PodRead.NONE:
            query = pod_query(selector, run, pod_scope(jobs, run, view.status, need))
            listed = None if need is PodRead.FRESH else cache.pods(key, run, query, every)
            if listed is None:
                # Why pods wait may come from the API server's watch cache as it stands (resourceVersion
                # 0: no quorum read, no wait for the cache to catch up); a report is read consistently.
                answer = kube.get(path(view.namespace, "pods"), **query, **({"resourceVersion": "0"} if need is PodRead.WAITING else {}))
                listed = cache.list_pods(key, run, query, answer)
            pods = listed
            stranded = stranded_nodes(pods)
            if stranded:
                lost = _node_troubles(kube, cache, stranded, every)
        standing = podless_wait_left(jobs, run, view.status, now)
        if standing is not None:
            wait, every = standing
            if wait == 0:
                failures = _create_failures(kube, cache, key, [j for j in jobs if podless(j, run)], every)
            again = wait or every
            recheck = again if recheck is None else min(recheck, again)
        volume = view.spec.data.volume
        if volume is not None and not _claim_exists(kube, cache, view.namespace, volume.claim_name, full):
            missing.append(volume.claim_name)
        named = view.spec.artifacts.claim_name
        if named is not None:
            if not _claim_exists(kube, cache, view.namespace, named, full):
                missing.append(named)
        else:
            artifacts_exists = _claim_exists(kube, cache, view.namespace, artifacts_claim(view.name), full)
    if full:
        cache.primed(key, started)
    plan, spec_map = None, False
    if current is not None:
        maps, held = needed_configmaps(kube, cache, view, current.run_id)
        foreign += held
        plan_map = maps.get(plan_configmap(view.name))
        plan = plan_map.plan if plan_map is not None else None
        spec_map = spec_configmap(view.name, current.run_id) in maps
    return Observed(jobs=jobs, pods=pods, plan=plan, missing_claims=tuple(missing),
                    artifacts_claim_exists=artifacts_exists, spec_map_exists=spec_map, recheck_after=recheck,
                    foreign=tuple(foreign), refusal=refusal, create_failures=failures, lost_nodes=lost)


def _create_failures(kube: Kube, cache: ChildCache, key: Key, jobs: list[Any], max_age: float) -> tuple[CreateFailure, ...]:
    """The FailedCreate Events on `jobs` (Jobs without a pod past the grace), from a read at most `max_age` old.

    One field-selected LIST of the namespace's Events, shared by every pipeline there; only Jobs that stand
    without any pod ask it, so a healthy run never does. The API server keeps no watch cache of Events:
    each LIST reads and decodes every Event of the namespace from etcd, whatever the selector. Asked per
    pipeline, 200 pipelines in one namespace whose Jobs waited on a busy controller made a quarter of the
    API server's CPU of such reads."""
    held = cache.failed_creates(key[0], max_age)
    if held is not None:
        return parse_create_failures({"items": held}, jobs)
    events: list[dict[str, Any]] = []
    try:
        events = kube.get(path(key[0], "events"), fieldSelector="involvedObject.kind=Job,reason=FailedCreate").get("items") or []
    except ApiError as err:
        if err.status not in (401, 403, 404):
            raise
        # Without the grant (an older chart's RBAC) the reason is only missing from the status: the pass goes on
        # and the start timeout still stops the stage. Asked again after `max_age`, not on every pass.
        log.warning("%s/%s: cannot read why the Jobs have no pods (%s); grant list on events to the operator", *key, err)
    cache.put_failed_creates(key[0], events)
    return parse_create_failures({"items": events}, jobs)


def _node_troubles(kube: Kube, cache: ChildCache, names: tuple[str, ...], max_age: float) -> tuple[NodeTrouble, ...]:
    """The troubles of `names` (nodes holding Running pods that are not Ready), each from a GET at most `max_age` old.

    Nodes are not watched: only a run with such pods asks, one GET per node, shared by every pipeline."""
    out: list[NodeTrouble] = []
    for name in names:
        known, trouble = cache.node(name, max_age)
        if not known:
            try:
                trouble = parse_node_trouble(name, kube.get_or_none(f"/api/v1/nodes/{name}"))
            except ApiError as err:
                if err.status not in (401, 403):
                    raise
                # Per-namespace Roles cannot grant a cluster-scoped read: the pods' state is still said.
                log.warning("cannot read node %s (%s); grant get on nodes to the operator to know why its pods are not Ready", name, err)
                trouble = NodeTrouble(name, "unreadable", message=f"HTTP {err.status}")
            cache.put_node(name, trouble)
        if trouble is not None:
            out.append(trouble)
    return tuple(out)


def own_jobs(jobs: tuple[ObservedJob, ...], uid: str) -> tuple[tuple[ObservedJob, ...], list[ForeignChild]]:
    """(the pipeline's Jobs, the labelled Jobs another controller or none holds)."""
    return (tuple(j for j in jobs if owned(j.controller, uid)),
            [ForeignChild("Job", j.name, j.controller) for j in jobs if not owned(j.controller, uid)])


def needed_configmaps(kube: Kube, cache: ChildCache, view: PipelineView, run: str) -> tuple[dict[str, ObservedConfigMap], list[ForeignChild]]:
    """The plan and run-spec ConfigMaps that are the pipeline's, by name, and those names held by objects that are not.

    The watch and LISTs see only ConfigMaps with the pipeline's label; one a user made (or one left by a
    deleted pipeline of the same name) may hold the name without it. So a name the cache does not show is
    asked for (a LIST by name) when the pipeline is about to create it: at a run's start (its spec ConfigMap is not
    there yet) and when the plan ConfigMap should be there and is not. A running pipeline asks nothing.
    """
    names = (plan_configmap(view.name), spec_configmap(view.name, run))
    known = {name: cache.configmap((view.namespace, view.name), name) for name in names}
    starting = known[names[1]] is None
    ours: dict[str, ObservedConfigMap] = {}
    foreign: list[ForeignChild] = []
    for name, seen in known.items():
        if seen is None and (starting or (name == names[0] and view.status.plan is not None)):
            # A LIST by name, not a GET: the operator's role reads ConfigMaps by listing only (rbac.yaml).
            items = kube.get(path(view.namespace, "configmaps"), fieldSelector=f"metadata.name={name}").get("items") or []
            seen = parse_configmap(items[0]) if items else None
        if seen is None:
            continue
        if owned(seen.controller, view.uid):
            ours[name] = seen
        else:
            foreign.append(ForeignChild("ConfigMap", name, seen.controller))
    return ours, foreign


# Pods not yet Succeeded or Failed (Pending, Running): a field selector takes no set of phases, only a conjunction.
UNFINISHED = "status.phase!=Succeeded,status.phase!=Failed"


def pod_query(selector: str, run: str, scope: PodScope) -> dict[str, str]:
    """The LIST parameters for `scope`'s pods of `run` (earlier runs' pods are of no use to `decide`)."""
    labels = f"{selector},{LABEL_RUN}={run}"
    if scope.stages:
        labels += f",{LABEL_STAGE} in ({','.join(scope.stages)})"
    return {"labelSelector": labels} | ({"fieldSelector": UNFINISHED} if scope.unfinished_only else {})


def _claim_exists(kube: Kube, cache: ChildCache, namespace: str, name: str, full: bool) -> bool:
    """A claim seen lately is taken to exist (claims are not watched); a missing one is asked again every pass."""
    if not full and cache.claim_known(namespace, name):
        return True
    if kube.get_or_none(path(namespace, "persistentvolumeclaims", name)) is None:
        return False
    cache.claim_exists(namespace, name)
    return True
