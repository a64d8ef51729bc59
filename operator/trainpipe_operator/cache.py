"""What the operator has seen of each pipeline and its children: watch events, its own writes, and consistent LISTs.

Pipelines, Jobs and plan ConfigMaps are watched; pods are not (see `observed.pod_read`): a stage's
pods make most of a cluster's watch traffic and tell the operator little its Jobs do not, so they are
LISTed when a pass needs them and kept here for a short while.

A pass that reads this instead of the API server costs no requests; at hundreds of pipelines the GETs
and LISTs of every pass were the operator's whole overhead (each pass waited on five or six requests
to a busy API server, and the queue behind it). What keeps it as safe as reading the API server:

- Every entry carries its resourceVersion, and an older version never replaces a newer one, so a
  watch event that arrives late cannot undo what a LIST or the operator's own write put here.
- The operator's own writes go in at once (the API's answer to a create, patch or status PUT; a
  tombstone for a delete), so the next pass never sees the world from before its last one. That is
  what keeps a finished stage whose Jobs were just deleted from looking unstarted.
- A pipeline is read from the API server in full (`primed`) on its first pass after a start, after
  any failed pass, and every `RELIST_SECONDS`; a LIST sets a floor below which late events are
  already accounted for. A deletion the watch missed while reconnecting lives at most that long.

Thread-safe: kopf's handlers write from the event loop while passes read from worker threads.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Generic, TypeVar

from trainpipe.contract.names import LABEL_PIPELINE
from trainpipe.kube.pods import ObservedPod, parse_pod
from trainpipe_operator.observed import (
    NodeTrouble,
    ObservedConfigMap,
    ObservedJob,
    ObservedPlan,
    PipelineView,
    parse_configmap,
    parse_job,
    parse_pipeline,
)
from trainpipe_operator.refusals import Refusal

Key = tuple[str, str]  # (namespace, pipeline)
T = TypeVar("T")
# How long a pass may go on trusting the cache of a pipeline before it reads the API server again.
RELIST_SECONDS = 300.0


def newer(candidate: str, held: str) -> bool:
    """Whether resourceVersion `candidate` is later than `held` ("" = nothing held).

    etcd-backed API servers hand out increasing integers; were one to give opaque strings, the
    version that arrived last is taken, which is what a watch in order gives anyway.
    """
    if not held:
        return True
    try:
        return int(candidate) > int(held)
    except ValueError:
        return candidate != held


def version(obj: dict[str, Any] | None) -> str:
    return str(((obj or {}).get("metadata") or {}).get("resourceVersion") or "")


@dataclass
class Versioned(Generic[T]):
    """One kind of object of one pipeline by name, each with its resourceVersion; None marks one deleted."""

    floor: str = ""  # the resourceVersion of the last LIST: every change at or below it is in `entries`
    entries: dict[str, tuple[str, T | None]] = field(default_factory=dict)
    listed: bool = False  # a LIST filled it since it was last distrusted: what it lacks does not exist

    def apply(self, name: str, rv: str, value: T | None) -> tuple[bool, T | None]:
        """Take `value` unless it is older than what is held; returns (taken, the value held before)."""
        held = self.entries.get(name)
        if not newer(rv, held[0] if held else self.floor):
            return False, None  # older than what is here, or than the LIST that already showed its fate
        self.entries[name] = (rv, value)
        return True, held[1] if held else None

    def deleted(self, name: str, rv: str) -> tuple[bool, T | None]:
        """A watch DELETED event. Remembered as a tombstone while a LIST could still be under way (one
        started before the delete would otherwise bring the object back); the next LIST drops it."""
        if name in self.entries or self.listed:
            return self.apply(name, rv, None)
        return False, None

    def forget(self, name: str, rv: str) -> None:
        """The operator deleted it: a tombstone, so events from before the delete cannot bring it back."""
        held = self.entries.get(name)
        if held is None or newer(rv, held[0]):
            self.entries[name] = (rv, None)
        else:
            self.entries[name] = (held[0], None)

    def replace(self, items: Iterable[tuple[str, str, T | None]], list_rv: str) -> None:
        """A consistent LIST at `list_rv`; what arrived since (a newer event or write) stays."""
        fresh: dict[str, tuple[str, T | None]] = {name: (rv, value) for name, rv, value in items}
        for name, (rv, value) in self.entries.items():
            if list_rv and newer(rv, list_rv) and (name not in fresh or newer(rv, fresh[name][0])):
                fresh[name] = (rv, value)
        self.entries, self.floor, self.listed = fresh, list_rv, True

    def values(self) -> list[T]:
        return [value for _, (_, value) in sorted(self.entries.items()) if value is not None]


@dataclass
class PipelineCache:
    """Everything cached about one pipeline."""

    obj: tuple[str, dict[str, Any] | None] | None = None  # (resourceVersion, object); object None = deleted
    jobs: Versioned[ObservedJob] = field(default_factory=Versioned)
    pods: dict[str, tuple[float, dict[str, str], tuple[ObservedPod, ...]]] = field(default_factory=dict)  # by run: (when, the LIST's query, what)
    configmaps: Versioned[ObservedConfigMap] = field(default_factory=Versioned)  # the <pipeline>-plan ConfigMap and the runs' specs
    primed_at: float | None = None
    refusal: Refusal | None = None  # the API server's last refusal of one of its creates
    view: tuple[str, PipelineView] | None = None  # the parsed object, by resourceVersion: parsing is most of a cached pass


class ChildCache:
    def __init__(self, relist_seconds: float = RELIST_SECONDS, clock: Callable[[], float] = time.monotonic) -> None:
        self._lock = threading.Lock()
        self._pipelines: dict[Key, PipelineCache] = {}
        self._claims: dict[tuple[str, str], float] = {}  # (namespace, claim) -> when it was last seen to exist
        self._nodes: dict[str, tuple[float, NodeTrouble | None]] = {}  # node -> (when it was read, its trouble; None: Ready)
        self._admitted: dict[tuple[str, str], float] = {}  # (namespace, Job shape) -> when a dry run of that shape passed
        # namespace -> (when read, its FailedCreate Events on Jobs): one read serves every pipeline of the namespace.
        self._failed_creates: dict[str, tuple[float, tuple[dict[str, Any], ...]]] = {}
        self.relist_seconds = relist_seconds
        self.clock = clock

    def _of(self, key: Key) -> PipelineCache:
        return self._pipelines.setdefault(key, PipelineCache())

    # ---- the pipeline object -------------------------------------------------------------------

    def pipeline(self, key: Key) -> tuple[bool, dict[str, Any] | None]:
        """(known, object): known with None = deleted; not known = read it from the API server."""
        with self._lock:
            held = self._pipelines.get(key)
            if held is None or held.obj is None:
                return False, None
            return True, held.obj[1]

    def view(self, obj: dict[str, Any]) -> PipelineView:
        """`parse_pipeline(obj)`, parsed once per resourceVersion of the pipeline."""
        meta = obj.get("metadata") or {}
        key, rv = (meta.get("namespace", ""), meta["name"]), version(obj)
        with self._lock:
            held = self._pipelines.get(key)
            if held is not None and held.view is not None and rv and held.view[0] == rv:
                return held.view[1]
        parsed = parse_pipeline(obj)
        with self._lock:
            if rv:
                self._of(key).view = (rv, parsed)
        return parsed

    def put_pipeline(self, obj: dict[str, Any]) -> bool:
        """Hold `obj` unless a version as new is held; returns whether it was taken. The watch event of
        the operator's own status write brings the version its answer already put here: not news."""
        meta = obj.get("metadata") or {}
        key = (meta.get("namespace", ""), meta["name"])
        rv = version(obj)
        with self._lock:
            held = self._of(key)
            if held.obj is None or newer(rv, held.obj[0]):
                held.obj = (rv, obj)
                return True
            return False

    def pipeline_deleted(self, key: Key, rv: str) -> None:
        """The pipeline is gone: drop its children (ownerReferences delete them) and remember it went."""
        with self._lock:
            self._pipelines[key] = PipelineCache(obj=(rv, None))

    # ---- children from watch events -----------------------------------------------------------

    def job_event(self, kind: str | None, obj: dict[str, Any]) -> Change:
        return self._event(kind, obj, lambda held: held.jobs, parse_job)

    def configmap_event(self, kind: str | None, obj: dict[str, Any]) -> Change:
        return self._event(kind, obj, lambda held: held.configmaps, parse_configmap)

    def _event(self, kind: str | None, obj: dict[str, Any], store_of: Callable[[PipelineCache], Versioned[Any]],
               parse: Callable[[dict[str, Any]], Any]) -> Change:
        key, name, rv = _identity(obj)
        value = None if kind == "DELETED" else parse(obj)
        with self._lock:
            store = store_of(self._of(key))
            taken, before = store.deleted(name, rv) if kind == "DELETED" else store.apply(name, rv, value)
        return change(taken, before, value)

    # ---- the operator's own writes -------------------------------------------------------------

    def wrote(self, obj: dict[str, Any]) -> None:
        """The API's answer to a create, patch or replace the operator made."""
        kind = obj.get("kind")
        if kind == "Job":
            self.job_event("MODIFIED", obj)
        elif kind == "ConfigMap":
            self.configmap_event("MODIFIED", obj)
        elif kind == "PersistentVolumeClaim":
            meta = obj.get("metadata") or {}
            self.claim_exists(meta.get("namespace", ""), meta["name"])
        elif kind is not None and (obj.get("metadata") or {}).get("name"):
            self.put_pipeline(obj)

    def job_deleted(self, key: Key, name: str, answer: Any) -> None:
        rv = version(answer) if isinstance(answer, dict) and answer.get("kind") == "Job" else ""
        with self._lock:
            self._of(key).jobs.forget(name, rv)

    # ---- consistent reads ---------------------------------------------------------------------

    def list_jobs(self, key: Key, listing: dict[str, Any]) -> None:
        with self._lock:
            self._of(key).jobs.replace(((o["metadata"]["name"], version(o), parse_job(o)) for o in listing.get("items") or []), version(listing))

    def list_pods(self, key: Key, run: str, query: dict[str, str], listing: dict[str, Any]) -> tuple[ObservedPod, ...]:
        # A pod no Job made (a bare pod with our labels) is no stage's.
        pods = tuple(sorted((p for p in (parse_pod(o) for o in listing.get("items") or []) if p.job), key=lambda p: p.name))
        with self._lock:
            self._of(key).pods = {run: (self.clock(), query, pods)}  # only the current run's are ever asked for
        return pods

    def list_configmaps(self, key: Key, listing: dict[str, Any]) -> None:
        with self._lock:
            self._of(key).configmaps.replace(((o["metadata"]["name"], version(o), parse_configmap(o)) for o in listing.get("items") or []),
                                        version(listing))

    def put_node(self, name: str, trouble: NodeTrouble | None) -> None:
        with self._lock:
            self._nodes[name] = (self.clock(), trouble)

    def node(self, name: str, max_age: float) -> tuple[bool, NodeTrouble | None]:
        """(known, its trouble) from a GET at most `max_age` seconds old; nodes are shared by every pipeline."""
        with self._lock:
            held = self._nodes.get(name)
            if held is None or self.clock() - held[0] > max_age:
                return False, None
            return True, held[1]

    def admitted(self, namespace: str, shape: str, max_age: float) -> bool:
        """Whether a dry run of a Job of this shape (`admission.job_shape`) passed in `namespace` within `max_age` seconds."""
        with self._lock:
            at = self._admitted.get((namespace, shape))
            return at is not None and self.clock() - at <= max_age

    def admit(self, namespace: str, shapes: list[str]) -> None:
        with self._lock:
            now = self.clock()
            self._admitted.update(((namespace, shape), now) for shape in shapes)

    def forget_admitted(self, namespace: str) -> None:
        """A create in `namespace` was refused: what passed before may not pass now (a quota, a policy changed)."""
        with self._lock:
            for key in [k for k in self._admitted if k[0] == namespace]:
                del self._admitted[key]

    def claim_exists(self, namespace: str, name: str) -> None:
        with self._lock:
            self._claims[(namespace, name)] = self.clock()

    def claim_known(self, namespace: str, name: str) -> bool:
        """Seen to exist within the relist period (a missing claim is always asked again: the user may create it)."""
        with self._lock:
            seen = self._claims.get((namespace, name))
            return seen is not None and self.clock() - seen < self.relist_seconds

    def primed(self, key: Key, at: float | None = None) -> None:
        with self._lock:
            self._of(key).primed_at = self.clock() if at is None else at

    # ---- what the API server refused, and the pods the Job controller could not create ----------------

    def refused(self, key: Key, refusal: Refusal) -> None:
        """Remembered in memory only: after a restart the create is tried once more and refused again."""
        with self._lock:
            self._of(key).refusal = refusal

    def refusal(self, key: Key) -> Refusal | None:
        with self._lock:
            held = self._pipelines.get(key)
            return held.refusal if held else None

    def accepted(self, key: Key, name: str) -> None:
        """A create of `name` went through (or found it there): a refusal of it no longer holds."""
        with self._lock:
            held = self._pipelines.get(key)
            if held is not None and held.refusal is not None and held.refusal.name == name:
                held.refusal = None

    def put_failed_creates(self, namespace: str, events: Sequence[dict[str, Any]]) -> None:
        with self._lock:
            self._failed_creates[namespace] = (self.clock(), tuple(events))

    def failed_creates(self, namespace: str, max_age: float) -> tuple[dict[str, Any], ...] | None:
        """The namespace's FailedCreate Events on Jobs, read at most `max_age` seconds ago; None when there is no such read."""
        with self._lock:
            read = self._failed_creates.get(namespace)
            return read[1] if read is not None and self.clock() - read[0] <= max_age else None

    def unprime(self, key: Key) -> None:
        """Distrust the cache of `key` until its next full read (after a failed pass or a 409)."""
        with self._lock:
            held = self._pipelines.get(key)
            if held is not None:
                held.primed_at = None
                held.pods = {}

    # ---- reads for a pass ---------------------------------------------------------------------

    def fresh(self, key: Key) -> bool:
        """Whether a pass may observe `key` from here (read in full within the relist period)."""
        with self._lock:
            held = self._pipelines.get(key)
            return held is not None and held.primed_at is not None and self.clock() - held.primed_at < self.relist_seconds

    def jobs(self, key: Key) -> tuple[ObservedJob, ...]:
        with self._lock:
            held = self._pipelines.get(key)
            return tuple(held.jobs.values()) if held else ()

    def pods(self, key: Key, run: str, query: dict[str, str], max_age: float) -> tuple[ObservedPod, ...] | None:
        """The run's pods as a LIST with `query` answered at most `max_age` seconds ago; None when there is no such LIST."""
        with self._lock:
            held = self._pipelines.get(key)
            listed = held.pods.get(run) if held else None
            return listed[2] if listed is not None and listed[1] == query and self.clock() - listed[0] <= max_age else None

    def has_configmap(self, key: Key, name: str) -> bool:
        """Whether one of the pipeline's labelled ConfigMaps of that name is known (the plan's, or a run's spec)."""
        with self._lock:
            held = self._pipelines.get(key)
            entry = held.configmaps.entries.get(name) if held else None
            return entry is not None and entry[1] is not None  # None: a tombstone

    def configmap(self, key: Key, name: str) -> ObservedConfigMap | None:
        """The labelled ConfigMap of that name as last seen (whoever controls it); None when none is known."""
        with self._lock:
            held = self._pipelines.get(key)
            entry = held.configmaps.entries.get(name) if held else None
            return entry[1] if entry else None

    def plan(self, key: Key, name: str) -> ObservedPlan | None:
        with self._lock:
            held = self._pipelines.get(key)
            entry = held.configmaps.entries.get(name) if held else None
            return entry[1].plan if entry and entry[1] else None


class Change(Enum):
    """What a watch event changed in what a pass reads, which says how soon the pass should come."""

    NONE = "none"  # nothing a pass reads: an older version, an echo of the operator's own write, a field not parsed
    COUNTS = "counts"  # only a Job's running counts (ObservedJob.counts_only): the status shows them, nothing is decided on them
    STATE = "state"  # anything else: a child appearing or going, a Job finishing, failing or suspended


def change(taken: bool, before: Any, after: Any) -> Change:
    if not taken or before == after:
        return Change.NONE
    if isinstance(before, ObservedJob) and isinstance(after, ObservedJob) and before.counts_only(after):
        return Change.COUNTS
    return Change.STATE


def _identity(obj: dict[str, Any]) -> tuple[Key, str, str]:
    meta = obj.get("metadata") or {}
    return (meta.get("namespace", ""), (meta.get("labels") or {}).get(LABEL_PIPELINE, "")), meta["name"], version(obj)
