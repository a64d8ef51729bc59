"""Frozen snapshots of what the cluster holds for one pipeline, and pure parsers from API dicts into them.

`observe` fills these from the API server or the operator's cache of it; `decide` reads only these. Parsing lives here (not in
`observe`) so that tests can build snapshots from the same dicts the API returns; pods are parsed by
`trainpipe.kube.pods`, which `trainpipe status`/`logs` read them with too.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from enum import Enum
from typing import Any

from pydantic import ValidationError

from trainpipe.contract.names import (
    ANNOTATION_PIN,
    ANNOTATION_PLAN_DIGEST,
    ANNOTATION_RERUN,
    ANNOTATION_RETRY,
    LABEL_ATTEMPT,
    LABEL_FAMILY,
    LABEL_RUN,
    LABEL_STAGE,
    NO_FAMILY,
)
from trainpipe.contract.pipeline import PipelineSpec, format_validation_error
from trainpipe.contract.stages import STAGES
from trainpipe.contract.status import PipelineStatus
from trainpipe.contract.timestamps import parse_stamp
from trainpipe.kube.pods import ObservedPod
from trainpipe_operator.naming import GROUPS
from trainpipe_operator.refusals import Refusal
from trainpipe_operator.schedule import CurrentRun, current_run

# Set by the operator on Jobs it suspended, so that resuming never unsuspends a Job that Kueue holds.
SUSPENDED_BY_OPERATOR = "trainpipe.io/suspended-by-operator"


@dataclass(frozen=True)
class PipelineView:
    """The pipeline object: its spec (or why it cannot be used), generation, user annotations, last status."""

    namespace: str
    name: str
    uid: str
    generation: int
    spec: PipelineSpec | None
    spec_error: str | None
    status: PipelineStatus
    rerun_token: str | None = None
    retry_token: str | None = None
    resource_version: str = ""
    pinned_runs: tuple[str, ...] = ()  # trainpipe.io/pin

    def runs_kept(self) -> tuple[str, ...]:
        """The run folders pruning must never remove: the pinned ones and the last successful run (its models may be served)."""
        last = self.status.last_succeeded_run
        return tuple(dict.fromkeys([*self.pinned_runs, *([last.run_id] if last is not None else [])]))

    def previous_run(self, current: str) -> str | None:
        """The run a new run compares with (select's stability): the last successful one, unless that is `current` itself."""
        last = self.status.last_succeeded_run
        return None if last is None or last.run_id == current else last.run_id

    def current_run(self, now: datetime) -> CurrentRun | None:
        """The run the pipeline is on at `now` (None while its spec cannot be used)."""
        return None if self.spec is None else current_run(self.spec, self.rerun_token, self.status.schedule, now)


@dataclass(frozen=True)
class Controller:
    """An object's controller ownerReference: whose child it is."""

    kind: str
    name: str
    uid: str


def controller_of(meta: dict[str, Any]) -> Controller | None:
    ref = next((r for r in meta.get("ownerReferences") or [] if r.get("controller")), None)
    return None if ref is None else Controller(str(ref.get("kind", "")), str(ref.get("name", "")), str(ref.get("uid", "")))


def owned(controller: Controller | None, uid: str) -> bool:
    """A child is the pipeline's only when its controller ownerReference names the pipeline's UID: a pipeline of
    the same name deleted and created again, or a user's object with our labels, is someone else's."""
    return controller is not None and controller.uid == uid


@dataclass(frozen=True)
class ForeignChild:
    """A Job or ConfigMap that looks like the pipeline's (its labels or its name) but whose controller is not this
    pipeline (another UID, or none): never counted, deleted, suspended or replaced. When it holds a name the
    pipeline needs, the pipeline stalls (`policies.ownership`)."""

    kind: str  # Job | ConfigMap
    name: str
    controller: Controller | None

    def whose(self) -> str:
        c = self.controller
        return "it has no controller" if c is None else f"its controller is {c.kind} {c.name} (uid {c.uid})"


# The fields of a Job's status that move with each of its pods.
COUNT_FIELDS = ("succeeded", "failed", "active", "ready")


@dataclass(frozen=True)
class ObservedJob:
    name: str
    run: str
    stage: str
    family: str | None
    attempt: int
    completions: int
    indexed: bool
    succeeded: int = 0
    failed: int = 0  # failed pods (all indexes)
    active: int = 0
    ready: int = 0  # active pods with the Ready condition: active - ready pods are still Pending or starting
    failed_indexes: tuple[int, ...] = ()
    complete: bool = False
    failed_condition: str | None = None  # the Failed condition's "reason: message" when the Job failed
    suspended: bool = False
    suspended_by_operator: bool = False
    deleting: bool = False
    plan_digest: str | None = None
    controller: Controller | None = None  # only a Job whose controller is the pipeline (its UID) is the pipeline's
    # Pods being deleted (evicted, preempted, their node drained) the Job waits for before replacing them. Not
    # a running count: a change wakes a pass at once, which reads the pods while they still exist and say why.
    terminating: int = 0

    def counts_only(self, other: ObservedJob) -> bool:
        """Whether `other` differs from this Job only in its running counts (pods starting, Ready,
        finishing, a failed try the Job retries). `decide` puts those in the status and decides
        nothing on them: a stage ends on the Job's Complete or Failed condition."""
        return other != self and replace(self, **{f: getattr(other, f) for f in COUNT_FIELDS}) == other

    @property
    def failed_units(self) -> int:
        if self.indexed and self.failed_indexes:
            return len(self.failed_indexes)
        return 1 if self.failed_condition else 0


@dataclass(frozen=True)
class ObservedPlan:
    """The `<pipeline>-plan` ConfigMap."""

    run: str
    digest: str
    path: str
    units: dict[str, int]


@dataclass(frozen=True)
class CreateFailure:
    """The latest FailedCreate Event on one of the run's Jobs: the Job controller could not create a unit's pod
    (admission refused it: a missing ServiceAccount or PriorityClass, a quota, a LimitRange)."""

    job: str
    message: str
    count: int = 1


@dataclass(frozen=True)
class NodeTrouble:
    """A node some of the run's pods run on that does not report Ready: the node controller stopped hearing
    from its kubelet (Unknown), the kubelet says it is not ready (False), or the Node object is gone."""

    name: str
    status: str  # the Ready condition's status (False, Unknown), "gone", or "unreadable" (the operator may not get nodes)
    reason: str = ""
    message: str = ""
    since: str = ""  # the Ready condition's lastTransitionTime

    def describe(self) -> str:
        if self.status == "gone":
            return f"node {self.name} no longer exists"
        if self.status == "unreadable":
            return f"node {self.name} cannot be read by the operator ({self.message}); its pods there are not Ready"
        said = "; ".join(x for x in (self.reason, self.message) if x)
        return f"node {self.name} is not Ready (Ready={self.status}{' since ' + self.since if self.since else ''}{': ' + said if said else ''})"


def parse_node_trouble(name: str, obj: dict[str, Any] | None) -> NodeTrouble | None:
    """The trouble of node `name` from its GET (None: the node is Ready)."""
    if obj is None:
        return NodeTrouble(name, "gone")
    ready = next((c for c in (obj.get("status") or {}).get("conditions") or [] if c.get("type") == "Ready"), None)
    if ready is not None and ready.get("status") == "True":
        return None
    ready = ready or {}
    return NodeTrouble(name, str(ready.get("status") or "Unknown"), str(ready.get("reason") or ""), str(ready.get("message") or "").strip(),
                       str(ready.get("lastTransitionTime") or ""))


def stranded_nodes(pods: Sequence[ObservedPod]) -> tuple[str, ...]:
    """The nodes of Running pods that are not Ready: no stage pod has a readiness probe, so such a pod's node
    has stopped reporting (the node controller marks its pods not Ready) or is failing."""
    return tuple(sorted({p.node for p in pods if p.phase == "Running" and not p.ready and p.node}))


@dataclass(frozen=True)
class Observed:
    jobs: tuple[ObservedJob, ...] = ()
    pods: tuple[ObservedPod, ...] = ()
    plan: ObservedPlan | None = None
    missing_claims: tuple[str, ...] = ()  # claims the spec names that do not exist
    artifacts_claim_exists: bool = True
    spec_map_exists: bool = False  # the run's spec ConfigMap (<pipeline>-<run>-spec) is known to exist
    foreign: tuple[ForeignChild, ...] = ()  # objects with the pipeline's labels or child names that another controller (or none) holds
    # Look again this soon even without events: pods are waiting, and pods are not watched.
    recheck_after: float | None = None
    refusal: Refusal | None = None  # the API server's refusal of this generation's and run's last create
    create_failures: tuple[CreateFailure, ...] = ()  # Jobs of the run whose pods cannot be created
    lost_nodes: tuple[NodeTrouble, ...] = ()  # nodes the run's Running pods are on that do not report Ready

    def pods_of(self, job: str) -> list[ObservedPod]:
        return [p for p in self.pods if p.job == job]


# ---- parsers ------------------------------------------------------------------------------------


def parse_pipeline(obj: dict[str, Any]) -> PipelineView:
    meta = obj.get("metadata") or {}
    annotations = meta.get("annotations") or {}
    spec: PipelineSpec | None = None
    error: str | None = None
    try:
        spec = PipelineSpec.model_validate(obj.get("spec") or {})
    except ValidationError as exc:
        error = format_validation_error(exc).replace("field '", "field 'spec.")
    try:
        status = PipelineStatus.model_validate(obj.get("status") or {})
    except ValidationError:
        status = PipelineStatus()  # an unreadable status is rebuilt from the children
    return PipelineView(
        namespace=meta.get("namespace", ""), name=meta["name"], uid=meta.get("uid", ""), generation=int(meta.get("generation") or 1),
        spec=spec, spec_error=error, status=status, rerun_token=annotations.get(ANNOTATION_RERUN),
        retry_token=annotations.get(ANNOTATION_RETRY), resource_version=meta.get("resourceVersion", ""),
        pinned_runs=tuple(dict.fromkeys(r for r in annotations.get(ANNOTATION_PIN, "").replace(",", " ").split())),
    )


def _indexes(text: str | None) -> tuple[int, ...]:
    """Kubernetes' index list syntax, e.g. "1,3-5,7"."""
    out: list[int] = []
    for part in (text or "").split(","):
        part = part.strip()
        if not part:
            continue
        lo, _, hi = part.partition("-")
        out.extend(range(int(lo), int(hi or lo) + 1))
    return tuple(out)


def parse_job(obj: dict[str, Any]) -> ObservedJob | None:
    """A Job of ours as a snapshot; None when its labels are not ours (someone else's Job)."""
    meta, spec, status = obj.get("metadata") or {}, obj.get("spec") or {}, obj.get("status") or {}
    labels = meta.get("labels") or {}
    try:
        stage = STAGES[labels[LABEL_STAGE]].stage  # a stage the table does not know is not one of our Jobs
        attempt = int(labels.get(LABEL_ATTEMPT, "0"))
        run = labels[LABEL_RUN]
    except (KeyError, ValueError):
        return None
    conditions = {c.get("type"): c for c in status.get("conditions") or [] if c.get("status") == "True"}
    failed = conditions.get("Failed")
    family = labels.get(LABEL_FAMILY)
    annotations = meta.get("annotations") or {}
    return ObservedJob(
        name=meta["name"], run=run, stage=stage, family=None if family in (None, NO_FAMILY) else family, attempt=attempt,
        completions=int(spec.get("completions") or 1), indexed=spec.get("completionMode") == "Indexed",
        succeeded=int(status.get("succeeded") or 0), failed=int(status.get("failed") or 0), active=int(status.get("active") or 0),
        ready=int(status.get("ready") or 0),
        failed_indexes=_indexes(status.get("failedIndexes")), complete="Complete" in conditions,
        failed_condition=f"{failed.get('reason', '')}: {failed.get('message', '')}".strip(": ") if failed else None,
        suspended=bool(spec.get("suspend")), suspended_by_operator=annotations.get(SUSPENDED_BY_OPERATOR) == "true",
        deleting=bool(meta.get("deletionTimestamp")), plan_digest=annotations.get(ANNOTATION_PLAN_DIGEST), controller=controller_of(meta),
        terminating=int(status.get("terminating") or 0),
    )


class PodRead(Enum):
    """What a pass must know of the run's pods, beyond what its Jobs show. Pods are not watched: a
    stage's pods make most of the watch traffic of a busy cluster (every start, Ready and finish of
    every pod), and decoding it cost the operator more than all its passes."""

    NONE = "none"
    # Why a pod is still Pending (the scheduler's reason): a LIST a few seconds old is good enough,
    # and the pass comes back after that while pods wait (POD_RECHECK_SECONDS), events or not.
    WAITING = "waiting"
    # What a finished rank or plan pod reported, or why a pod failed: read once, from a LIST made now.
    FRESH = "fresh"


# How stale the pod LIST behind "why a stage waits" may be, and how soon a pass with waiting pods looks
# again. It is also how long a stage's pods may take to start before that LIST is made at all: pods
# starting normally take a few seconds, and listing them meanwhile is the most of what the operator
# would ask a busy API server.
POD_RECHECK_SECONDS = 10.0
POD_RECHECK_MAX_SECONDS = 60.0


def pod_read(jobs: Sequence[ObservedJob], run: str, status: PipelineStatus) -> PodRead:
    """Which pod read the run's Jobs call for (the strongest any Job needs).

    Pods add three facts: what a finished rank or plan pod reported (read once, until the status holds
    it), why a failed Job failed, and the scheduler's reason a pod is still Pending. A Job whose pods
    all run Ready, or that finished with nothing left to read, needs no pod read; at hundreds of
    pipelines most passes are of that kind.
    """
    unread = _unread(run, status)
    need = PodRead.NONE
    for job in jobs:
        if _to_read_now(job, run, unread):
            return PodRead.FRESH
        if _starting(job, run):  # a pod not running yet may be unschedulable
            need = PodRead.WAITING
    return need


@dataclass(frozen=True)
class PodScope:
    """Which of the run's pods a read needs: those of `stages`, and only the unfinished ones (Pending, Running) if `unfinished_only`."""

    stages: tuple[str, ...]
    unfinished_only: bool


def pod_scope(jobs: Sequence[ObservedJob], run: str, status: PipelineStatus, need: PodRead) -> PodScope:
    """The pods behind `need`, and no more: a LIST's answer is decoded whole, and the run's finished
    pods, most of it, were the operator's largest CPU cost at a hundred pipelines at once.

    FRESH: the stages with a report to read or a failed Job. WAITING: the unfinished pods of the stages
    whose pods are not all Ready: a Pending one may be unschedulable or unable to start, a Running one
    that is not Ready has lost its node (no stage pod has a readiness probe; the node controller marks
    the pods of a node it stops hearing from not Ready).
    """
    if need is PodRead.FRESH:
        unread = _unread(run, status)
        wanted = {j.stage for j in jobs if _to_read_now(j, run, unread)}
    else:
        wanted = {j.stage for j in jobs if _starting(j, run)} if need is PodRead.WAITING else set()
    return PodScope(tuple(s for s in STAGES.order if s in wanted), unfinished_only=need is not PodRead.FRESH)


def _unread(run: str, status: PipelineStatus) -> dict[str, bool]:
    """Whether the report of each reporting stage (its row in contract.stages) of `run` is still to be put in the status."""
    recorded = status.run_id == run
    return {stage: not recorded or getattr(status, row.report.status_field) is None
            for stage, row in STAGES.items() if row.report is not None}


def _to_read_now(job: ObservedJob, run: str, unread: dict[str, bool]) -> bool:
    """A Job of the run whose pods hold what a pass needs now: why it failed or why a try of it failed
    (the kubelet's OOMKilled shows while the Job still retries), its unread report, or a pod being taken
    away (evicted: counted per unit by policies/disruptions.py, and gone soon after)."""
    if job.run != run or job.deleting:
        return False
    # A stage's groups Job holds no report: the Job merging the groups does (`naming.GROUPS`).
    reports = job.complete and unread.get(job.stage, False) and job.family != GROUPS
    return (job.failed_condition is not None or (job.failed > 0 and not job.complete) or reports
            or (job.terminating > 0 and not job.complete))


def _starting(job: ObservedJob, run: str) -> bool:
    """A Job of the run whose pods are not all Ready: starting, or on a node that stopped reporting."""
    return job.run == run and not job.deleting and not job.complete and job.active > job.ready


def pod_wait_left(jobs: Sequence[ObservedJob], run: str, status: PipelineStatus, now: datetime) -> tuple[float, float]:
    """(seconds until the run's waiting pods have waited long enough to ask why, how old a pod LIST may be then).

    Counted from the start of the stage of each Job whose pods are not all running (a stage with no
    recorded start is asked about at once). The longer a stage waits, the less often it is asked
    again (half its wait, at most POD_RECHECK_MAX_SECONDS): a reason minutes old seldom changes by
    the second, and on a cluster where hundreds of stages wait at once those LISTs would be a large
    share of the operator's requests (BENCHMARKS.md, "Design measurements")."""
    left, waited = float("inf"), 0.0
    for job in jobs:
        if not _starting(job, run):
            continue
        stage = status.stages.get(job.stage) if status.run_id == run else None
        started = parse_stamp(stage.started_at if stage else None)
        age = (now - started).total_seconds() if started is not None else POD_RECHECK_SECONDS
        left, waited = min(left, max(0.0, POD_RECHECK_SECONDS - age)), max(waited, age)
    if left == float("inf"):
        return 0.0, POD_RECHECK_SECONDS
    return left, min(POD_RECHECK_MAX_SECONDS, max(POD_RECHECK_SECONDS, waited / 2))


PLAN_KEYS = ("run", "digest", "path", "units")


@dataclass(frozen=True)
class ObservedConfigMap:
    """One of the pipeline's labelled ConfigMaps: the plan's (parsed) or a run's spec (whose content decide never reads)."""

    plan: ObservedPlan | None
    controller: Controller | None = None


def parse_configmap(obj: dict[str, Any]) -> ObservedConfigMap:
    return ObservedConfigMap(parse_plan_configmap(obj), controller_of(obj.get("metadata") or {}))


def parse_plan_configmap(obj: dict[str, Any] | None) -> ObservedPlan | None:
    if not obj:
        return None
    data = obj.get("data") or {}
    try:
        return ObservedPlan(run=data["run"], digest=data["digest"], path=data["path"], units={k: int(v) for k, v in json.loads(data["units"]).items()})
    except (KeyError, ValueError, TypeError, AttributeError):
        return None  # an edited or foreign ConfigMap: rewritten from the status


# ---- pods the Job controller cannot create ---------------------------------------------------------

# How long a stage's Jobs may stand without a single pod before the FailedCreate Events on them are
# read. A Job gets its first pod within a second or two; asking sooner would be a request on most
# passes of a busy cluster for nothing.
CREATE_GRACE_SECONDS = 10.0


def podless(job: ObservedJob, run: str) -> bool:
    """A Job of the run with work left and no pod at all: its pods may be refused at creation."""
    return (job.run == run and not job.deleting and not job.complete and not job.suspended and job.failed_condition is None
            and job.active == 0 and job.succeeded < job.completions)


def podless_wait_left(jobs: Sequence[ObservedJob], run: str, status: PipelineStatus, now: datetime) -> tuple[float, float] | None:
    """(seconds until the run's podless Jobs have stood long enough to read why (0: now), how old that read may
    be then); None when there are none. Counted from the start of each Job's stage (an unrecorded start: the
    stage starts now); the longer they stand, the less often they are asked about, as with waiting pods."""
    left: float | None = None
    waited = 0.0
    for job in jobs:
        if not podless(job, run):
            continue
        stage = status.stages.get(job.stage) if status.run_id == run else None
        started = parse_stamp(stage.started_at if stage else None)
        age = (now - started).total_seconds() if started is not None else 0.0
        wait = max(0.0, CREATE_GRACE_SECONDS - age)
        left, waited = (wait if left is None else min(left, wait)), max(waited, age)
    return None if left is None else (left, min(POD_RECHECK_MAX_SECONDS, max(POD_RECHECK_SECONDS, waited / 2)))


def parse_create_failures(listing: dict[str, Any], jobs: Sequence[ObservedJob]) -> tuple[CreateFailure, ...]:
    """The latest FailedCreate Event of each of `jobs` in an Event LIST (core/v1)."""
    names = {j.name for j in jobs}
    latest: dict[str, tuple[str, CreateFailure]] = {}
    for event in listing.get("items") or []:
        involved = event.get("involvedObject") or {}
        name = involved.get("name")
        if involved.get("kind") != "Job" or event.get("reason") != "FailedCreate" or name not in names:
            continue
        when = str(event.get("lastTimestamp") or event.get("eventTime") or (event.get("metadata") or {}).get("creationTimestamp") or "")
        if name not in latest or when >= latest[name][0]:
            latest[name] = (when, CreateFailure(job=name, message=str(event.get("message") or "").strip(), count=int(event.get("count") or 1)))
    return tuple(v for _, v in sorted(latest.values(), key=lambda item: item[1].job))
