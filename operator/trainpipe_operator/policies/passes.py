"""One `decide` pass: its scratch space (`Pass`), what it returns (`Decision`), and the words both use."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from trainpipe.contract.pipeline import PipelineSpec
from trainpipe.contract.status import PipelineStatus, Reason, StageStatus
from trainpipe.contract.timestamps import stamp
from trainpipe_operator.config import OperatorConfig
from trainpipe_operator.manifests import Owner
from trainpipe_operator.observed import Observed, ObservedJob, PipelineView

SUCCEEDED, FAILED = "Succeeded", "Failed"


MAX_MESSAGE = 1024
_STATUS_FIELDS = frozenset(PipelineStatus.model_fields)

# Events of one pass folded into the one just before them, under the reason given: a hand-off is one
# Event ("stage rank succeeded; stage select: 1 Job, 5 units"), not a stage's end and the next one's
# start, and the last stage's end is the run's. Each Event is a write the API server stores; a run
# posted 14, now 8 (BENCHMARKS.md, "Scale").
FOLDS: dict[tuple[str, str], Reason] = {
    (Reason.STAGE_SUCCEEDED.value, Reason.JOBS_CREATED.value): Reason.STAGE_SUCCEEDED,
    (Reason.STAGE_SUCCEEDED.value, Reason.SUCCEEDED.value): Reason.SUCCEEDED,
}


@dataclass(frozen=True)
class EventIntent:
    type: str  # Normal | Warning
    reason: str
    message: str


@dataclass(frozen=True)
class Decision:
    """Everything `act` does for one pipeline in one pass, and the status to write afterwards."""

    status: PipelineStatus
    create: tuple[dict[str, Any], ...] = ()  # ensure these exist (Jobs, the artifacts claim)
    upsert: tuple[dict[str, Any], ...] = ()  # create, or replace when different (the plan ConfigMap)
    delete_jobs: tuple[str, ...] = ()  # deleted with propagationPolicy Background, so their pods go too
    suspend_jobs: tuple[str, ...] = ()
    resume_jobs: tuple[str, ...] = ()
    events: tuple[EventIntent, ...] = ()
    finished_stages: tuple[tuple[str, str, float, int], ...] = ()  # (stage, outcome, seconds, Jobs) for metrics
    requeue_after: float | None = None


def iso(moment: datetime) -> str:
    return stamp(moment)


@dataclass
class Pass:
    """Mutable scratch space of one `decide` call; nothing outlives the call."""

    view: PipelineView
    spec: PipelineSpec
    observed: Observed
    config: OperatorConfig
    now: datetime
    run: str
    status: PipelineStatus  # the run's fields, typed; conditions, stage, progress and stages are set by finish
    stages: dict[str, StageStatus]
    slot: str | None = None  # the cron fire time the run belongs to, if the schedule started it
    create: list[dict[str, Any]] = field(default_factory=list)
    upsert: list[dict[str, Any]] = field(default_factory=list)
    delete: list[str] = field(default_factory=list)
    suspend: list[str] = field(default_factory=list)
    resume: list[str] = field(default_factory=list)
    events: list[EventIntent] = field(default_factory=list)
    finished: list[tuple[str, str, float, int]] = field(default_factory=list)
    requeue: list[float] = field(default_factory=list)
    # What the run is doing, decided below: running | stuck | done | failed | invalid | suspended
    state: str = "running"
    reason: str = Reason.STAGE_RUNNING.value
    message: str = ""

    @property
    def owner(self) -> Owner:
        return Owner(self.view.namespace, self.view.name, self.view.uid)

    @property
    def stamp(self) -> str:
        return iso(self.now)

    def event(self, kind: str, reason: Reason, message: str) -> None:
        last = self.events[-1] if self.events else None
        folded = FOLDS.get((last.reason, reason.value)) if last is not None and last.type == kind == "Normal" else None
        if last is not None and folded is not None:
            self.events[-1] = EventIntent(kind, folded.value, f"{last.message}; {message}"[:MAX_MESSAGE])
            return
        self.events.append(EventIntent(kind, reason.value, message[:MAX_MESSAGE]))

    def stop(self, state: str, reason: Reason | str, message: str) -> None:
        """The run's state, with our reason or the kubelet's own (OOMKilled, ImagePullBackOff, ...)."""
        self.state, self.reason, self.message = state, str(reason), message[:MAX_MESSAGE]

    def record(self, **fields: Any) -> None:
        """Set status fields by their Python names (PipelineStatus); an unknown name is an error here, not a lost write."""
        unknown = set(fields) - _STATUS_FIELDS
        if unknown:
            raise AttributeError(f"PipelineStatus has no field {', '.join(sorted(unknown))}")
        self.status = self.status.model_copy(update=fields)

    def run_jobs(self) -> list[ObservedJob]:
        return [j for j in self.observed.jobs if j.run == self.run]
