"""The typed status of a TrainingPipeline: kstatus conditions, per-stage unit counters, the run it reports on.

Written only by the operator (one writer); read by `kubectl get tp`, `kubectl wait`, Flux, Argo CD and
`trainpipe` tooling. Counters, never per-pod lists, so the object stays small at any fan-out.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Literal

from pydantic import Field

from trainpipe.contract.base import Contract
from trainpipe.contract.tracking import TrackingSummary


class ConditionType(StrEnum):
    READY = "Ready"  # True once the current generation's run completed successfully
    RECONCILING = "Reconciling"  # True while a run is in progress
    STALLED = "Stalled"  # True when the run failed and waits for a retry token or a spec change
    SUSPENDED = "Suspended"  # True while spec.suspend holds the run


class Reason(StrEnum):
    """Machine-readable reasons on conditions and Events (CamelCase, as Kubernetes writes them)."""

    RUN_STARTED = "RunStarted"
    STAGE_RUNNING = "StageRunning"
    WAITING_FOR_PODS = "WaitingForPods"
    UNSCHEDULABLE = "Unschedulable"
    SUCCEEDED = "Succeeded"
    STAGE_FAILED = "StageFailed"
    DEADLINE_EXCEEDED = "DeadlineExceeded"
    INVALID_SPEC = "InvalidSpec"
    SUSPENDED = "Suspended"
    NOT_SUSPENDED = "NotSuspended"
    SUPERSEDED = "Superseded"
    RETRYING = "Retrying"
    STAGE_SUCCEEDED = "StageSucceeded"
    JOBS_CREATED = "JobsCreated"
    JOBS_DELETED = "JobsDeleted"
    REPORT_LOST = "ReportLost"
    START_TIMEOUT = "StartTimeout"
    # The API server refused to create one of the pipeline's objects (a 4xx other than 409), or the Job
    # controller could not create a unit's pod (its FailedCreate Events): a status, never a silent retry.
    CREATE_REFUSED = "CreateRefused"
    FAILED_CREATE = "FailedCreate"
    # A child's name held by an object this pipeline does not control.
    NAME_TAKEN = "NameTaken"
    # A unit the cluster took away (evicted, preempted) more often than stages.<s>.maxEvictionsPerUnit
    EVICTED_TOO_OFTEN = "EvictedTooOften"
    # The kubelet evicted a unit for what it used (its scratch over scratchSizeLimit): a failure of that unit.
    EVICTED = "Evicted"
    # Units run on a node that stopped reporting Ready: they resume when it returns, or rerun on other
    # nodes once it is marked out of service.
    NODE_NOT_READY = "NodeNotReady"
    # Rank found no target whose skill clears noise: the run ends Ready, trained nothing, and lastSucceededRun stays.
    NO_EVIDENCE = "NoEvidence"
    # spec.tracking is set and the report Job could not reach MLflow after its retries: trained, not tracked.
    NOT_TRACKED = "NotTracked"


ConditionStatus = Literal["True", "False", "Unknown"]


class Condition(Contract):
    type: str
    status: ConditionStatus
    reason: str
    message: str = ""
    last_transition_time: str
    observed_generation: int | None = None


class StageStatus(Contract):
    """One stage of the current run: unit counters (units = pods' work items: targets, models) and times."""

    pending: int = Field(0, ge=0)
    active: int = Field(0, ge=0)
    succeeded: int = Field(0, ge=0)
    failed: int = Field(0, ge=0)
    attempt: int = Field(0, ge=0, description="Attempt of the stage's current Jobs; a retry token adds one.")
    report_reruns: int = Field(0, ge=0, description="Times the stage ran again because its pod was gone before its report was read.")
    evictions: dict[str, list[str]] = Field(default_factory=dict, description="Pods of a unit (`<Job>/<index>`) that were evicted, preempted "
                                            "or lost with their node; each ran again without using up the unit's retries.")
    started_at: str | None = None
    finished_at: str | None = Field(None, description="Set once, when every Job of the stage is Complete; the stage is never re-run after that.")
    outcome: Literal["Succeeded", "Failed"] | None = None
    reason: str | None = Field(None, description="Why the stage failed (a Reason), or what it waits on")
    message: str | None = None

    @property
    def total(self) -> int:
        return self.pending + self.active + self.succeeded + self.failed


class PlanRef(Contract):
    """What the plan Job reported, as copied into the `<pipeline>-plan` ConfigMap."""

    digest: str
    path: str = Field(description="The plan file as the Jobs see it")
    units: dict[str, int] = Field(default_factory=dict, description="Units per family: completions of each training Job")


class ReportRef(Contract):
    """What the report Job said: its page, the models it shows, and whether the run reached MLflow (spec.tracking set)."""

    path: str = Field(description="The report page, as the Jobs see the artifacts volume")
    models: int | None = Field(None, ge=0, description="Models the report shows (None: its pod was gone before it was read)")
    tracking: TrackingSummary | None = Field(None, description="spec.tracking set: tracked, or not tracked and why (training never fails for it)")


class RunRef(Contract):
    run_id: str
    models_path: str = Field(description="Models of that run, as the Jobs see the artifacts volume")
    finished_at: str


class ScheduleStatus(Contract):
    """Where the cron schedule stands: the fire time the current run belongs to and the next one."""

    cron: str
    time_zone: str
    since: str = Field(description="When the operator first saw this schedule: earlier fire times never start a run")
    slot: str | None = Field(None, description="Fire time that started the current run (None: the run did not come from the schedule)")
    next_run_at: str | None = None


class RunRecord(Contract):
    run_id: str
    outcome: Literal["Succeeded", "Failed", "Superseded", "NoEvidence"]
    started_at: str | None = None
    finished_at: str | None = None
    trigger: str | None = Field(None, description="spec, rerun, retry or schedule")


class PipelineStatus(Contract):
    observed_generation: int | None = Field(None, description="metadata.generation this status describes (kstatus)")
    conditions: list[Condition] = Field(default_factory=list, json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]})
    stage: str | None = Field(None, description="Stage the run is at (rank, select, plan, cpu, gpu, report) or Done/Failed/Suspended; for display only")
    progress: str | None = Field(None, description="Units succeeded / units known, e.g. 12/20")
    run_id: str | None = None
    run_generation: int | None = Field(None, description="Generation whose spec started the run")
    rerun_token: str | None = Field(None, description="trainpipe.io/rerun annotation value the run was started with")
    retry_token: str | None = Field(None, description="Last trainpipe.io/retry annotation value acted upon")
    output_path: str | None = Field(None, description="The run's folder on the artifacts volume, as the Jobs see it")
    spec_digest: str | None = Field(None, description="sha256 of the spec the run's pods read: its ConfigMap <pipeline>-<run>-spec")
    selected_targets: int | None = Field(None, ge=0, description="Targets rank kept: the select Job's completions")
    no_evidence: str | None = Field(None, description="Rank found no target with evidence of skill (its words): the run ended there, training nothing")
    plan: PlanRef | None = None
    report: ReportRef | None = None
    stages: dict[str, StageStatus] = Field(default_factory=dict)
    started_at: str | None = None
    finished_at: str | None = None
    message: str | None = Field(None, description="What the pipeline waits on, or why it stopped")
    last_succeeded_run: RunRef | None = None
    schedule: ScheduleStatus | None = None
    history: list[RunRecord] = Field(default_factory=list, description="Finished or superseded runs, newest first, at most spec.keepRuns")

    def condition(self, ctype: ConditionType) -> Condition | None:
        return next((c for c in self.conditions if c.type == ctype.value), None)
