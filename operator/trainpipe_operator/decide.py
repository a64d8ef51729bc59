"""The pure heart of the operator: from a pipeline and what the cluster holds, what to create, delete and report.

`decide(view, observed, config, now)` imports neither kopf nor the Kubernetes client. It is
level-triggered: it recomputes the whole desired state each time, so a missed event or an operator
restart changes nothing. Two rules keep it safe to re-run at any moment:
- Job names are deterministic, so creating what exists is harmless (no duplicate Job can appear);
- a stage recorded as finished in status is never run again, so Jobs deleted after it finished
  (by TTL or by hand) are not re-created.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from trainpipe.contract.families import FAMILY_STAGE
from trainpipe.contract.kubelet import KILLED_BY_KUBELET
from trainpipe.contract.names import STAGE_ORDER, Stage
from trainpipe.contract.pipeline import PipelineSpec
from trainpipe.contract.reports import PlanReport, RankReport, StageReport
from trainpipe.contract.stages import STAGES, FanOut
from trainpipe.contract.status import ConditionType, PipelineStatus, PlanRef, Reason, RunRecord, RunRef, StageStatus
from trainpipe_operator import manifests
from trainpipe_operator.conditions import set_condition
from trainpipe_operator.config import OperatorConfig
from trainpipe_operator.manifests import JobIntent, Owner
from trainpipe_operator.naming import job_name
from trainpipe_operator.observed import STAMP_FORMAT, Observed, ObservedJob, ObservedPlan, ObservedPod, PipelineView, parse_iso
from trainpipe_operator.schedule import CurrentRun, seconds_until

SUCCEEDED, FAILED = "Succeeded", "Failed"
# How soon to look again while a Job we need to re-create is still being deleted.
DELETION_POLL_SECONDS = 2.0
MAX_MESSAGE = 1024


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
    return moment.strftime(STAMP_FORMAT)


def termination_report(text: str, model: type[StageReport]) -> StageReport | None:
    """The report a successful stage command wrote to its termination log (its last line), or None."""
    try:
        return model.model_validate_json(text.strip().splitlines()[-1]) if text.strip() else None
    except ValueError:
        return None


@dataclass
class _Pass:
    """Mutable scratch space of one `decide` call; nothing outlives the call."""

    view: PipelineView
    spec: PipelineSpec
    observed: Observed
    config: OperatorConfig
    now: datetime
    run: str
    status: PipelineStatus  # the run's fields, typed; conditions, stage, progress and stages are set by _finish
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
    # What the run is doing, decided below: running | done | failed | invalid | suspended
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
        self.events.append(EventIntent(kind, reason.value, message[:MAX_MESSAGE]))

    def stop(self, state: str, reason: Reason | str, message: str) -> None:
        """The run's state, with our reason or the kubelet's own (OOMKilled, ImagePullBackOff, ...)."""
        self.state, self.reason, self.message = state, str(reason), message[:MAX_MESSAGE]

    def record(self, **fields: Any) -> None:
        """Set status fields by their Python names (PipelineStatus); an unknown name is an error here, not a lost write."""
        unknown = set(fields) - set(PipelineStatus.model_fields)
        if unknown:
            raise AttributeError(f"PipelineStatus has no field {', '.join(sorted(unknown))}")
        self.status = self.status.model_copy(update=fields)

    def run_jobs(self) -> list[ObservedJob]:
        return [j for j in self.observed.jobs if j.run == self.run]


def decide(view: PipelineView, observed: Observed, config: OperatorConfig, now: datetime, current: CurrentRun | None = None) -> Decision:
    """What to do for one pipeline now, for its `current` run (the one observe read; computed from `now`
    when not given). Pure: same inputs, same decision."""
    current = current or view.current_run(now)
    if view.spec is None or current is None:
        return _invalid(view, now, f"the spec cannot be used: {view.spec_error}")
    spec = view.spec
    run, slot, schedule = current
    p = _Pass(view, spec, observed, config, now, run, status=PipelineStatus(), stages={}, slot=slot)
    _start_or_continue_run(p)
    p.record(schedule=schedule)
    if schedule is not None and (wait := seconds_until(schedule.next_run_at, now)) is not None:
        p.requeue.append(max(1.0, wait))
    # Jobs of any other run are left from a superseded or earlier run: their outputs stay on the volume,
    # the Jobs go, so the number of objects per pipeline stays bounded.
    p.delete.extend(j.name for j in observed.jobs if j.run != run and not j.deleting)
    _ensure_artifacts_claim(p)
    _ensure_plan_config_map(p)
    _handle_retry(p)
    if _run_finished(p):
        _apply_ttl(p)
    elif not _precondition_problem(p) and not _failed_stage(p):
        _suspend_or_resume(p)
        if p.state != "suspended" and not _deadline_passed(p):
            _walk_stages(p)
    return _finish(p)


# ---- run identity ---------------------------------------------------------------------------------


def _start_or_continue_run(p: _Pass) -> None:
    old = p.view.status
    if old.run_id == p.run:
        p.status = old
        p.stages = dict(old.stages)
        return
    history = list(old.history)
    if old.run_id and not old.finished_at:
        failed = any(s.outcome == FAILED for s in old.stages.values())
        history.insert(0, RunRecord(run_id=old.run_id, outcome="Failed" if failed else "Superseded", started_at=old.started_at, finished_at=p.stamp))
        p.event("Normal", Reason.SUPERSEDED, f"run {old.run_id} superseded by run {p.run} ({_trigger(p)})")
    p.event("Normal", Reason.RUN_STARTED, f"run {p.run} started for generation {p.view.generation} ({_trigger(p)})")
    p.status = PipelineStatus(
        conditions=old.conditions, last_succeeded_run=old.last_succeeded_run, run_id=p.run, run_generation=p.view.generation,
        rerun_token=p.view.rerun_token, retry_token=p.view.retry_token, started_at=p.stamp,
        output_path=manifests.run_dir(p.spec, p.view.name, p.run), history=history[: p.spec.keep_runs],
    )
    p.stages = {}


def _trigger(p: _Pass) -> str:
    """Why a new run starts, in words a user reads in an Event."""
    old = p.view.status
    if old.run_id is None:
        return "the pipeline is new"
    if (p.view.rerun_token or None) != (old.rerun_token or None):
        return "the trainpipe.io/rerun token changed"
    if p.spec.schedule is not None and (old.schedule.slot if old.schedule else None) != p.slot:
        return f"the schedule fired ({p.spec.schedule.cron} {p.spec.schedule.time_zone})"
    return "the spec changed what a run computes"


def _ensure_artifacts_claim(p: _Pass) -> None:
    if p.spec.artifacts.claim_name is None and not p.observed.artifacts_claim_exists:
        p.create.append(manifests.artifacts_claim_manifest(p.spec, p.owner, p.config))


def _ensure_plan_config_map(p: _Pass) -> None:
    """Keep `<pipeline>-plan` equal to the plan the status recorded (restores it if deleted or edited)."""
    ref = p.status.plan
    if ref is None:
        return
    wanted = ObservedPlan(run=p.run, digest=ref.digest, path=ref.path, units=dict(ref.units))
    if p.observed.plan != wanted:
        p.upsert.append(manifests.plan_config_map(p.owner, p.run, ref.digest, ref.path, dict(ref.units)))


# ---- retry, completion, TTL, preconditions --------------------------------------------------------


def _failed_stage(p: _Pass) -> bool:
    for stage in STAGE_ORDER:
        s = p.stages.get(stage.value)
        if s is not None and s.outcome == FAILED:
            p.stop("failed", s.reason or Reason.STAGE_FAILED.value, s.message or f"stage {stage.value} failed")
            return True
    return False


def _handle_retry(p: _Pass) -> None:
    """A new `trainpipe.io/retry` token resumes a failed run at its failed stage, with attempt+1 Jobs."""
    token = p.view.retry_token
    if not token or token == p.status.retry_token:
        return
    p.record(retry_token=token)
    failed = next((st for st in STAGE_ORDER if (s := p.stages.get(st.value)) is not None and s.outcome == FAILED), None)
    if failed is None:
        return  # nothing failed: the token is recorded so that it does not fire later
    old = p.stages[failed.value]
    p.stages[failed.value] = StageStatus(attempt=old.attempt + 1)
    p.record(finished_at=None, started_at=p.stamp)  # a retry opens a new activeDeadlineSeconds window
    p.delete.extend(j.name for j in p.run_jobs() if j.stage is failed and j.attempt <= old.attempt and not j.deleting)
    p.event("Normal", Reason.RETRYING, f"retrying stage {failed.value} of run {p.run} as attempt {old.attempt + 1}: units with outputs are not rerun")


def _run_finished(p: _Pass) -> bool:
    return all(p.stages.get(s.value) is not None and p.stages[s.value].outcome == SUCCEEDED for s in STAGE_ORDER)


def _apply_ttl(p: _Pass) -> None:
    p.stop("done", Reason.SUCCEEDED, _success_message(p))
    ttl = p.spec.ttl_seconds_after_finished
    finished = parse_iso(p.status.finished_at)
    if ttl is None or finished is None:
        return
    left = (finished - p.now.replace(tzinfo=None)).total_seconds() + ttl
    if left > 0:
        p.requeue.append(left)
        return
    # Only Jobs: the outputs on the volume and the status record of each stage stay.
    p.delete.extend(j.name for j in p.run_jobs() if not j.deleting)


def _precondition_problem(p: _Pass) -> bool:
    if p.observed.missing_claims:
        names = ", ".join(p.observed.missing_claims)
        p.stop("invalid", Reason.INVALID_SPEC,
               f"PersistentVolumeClaim {names} not found in namespace {p.view.namespace}: create it, or fix spec.data.volume.claimName / spec.artifacts.claimName")
        return True
    if manifests.image_of(p.spec, Stage.RANK, p.config) is None:
        p.stop("invalid", Reason.INVALID_SPEC, "no image for the rank, select, plan and cpu Jobs: set spec.images.cpu, or start the operator with --cpu-image")
        return True
    return False


def _deadline_passed(p: _Pass) -> bool:
    deadline = p.spec.active_deadline_seconds
    started = parse_iso(p.status.started_at)
    if deadline is None or started is None:
        return False
    left = (started - p.now.replace(tzinfo=None)).total_seconds() + deadline
    if left > 0:
        p.requeue.append(left)
        return False
    current = next((s for s in STAGE_ORDER if (p.stages.get(s.value) or StageStatus()).outcome != SUCCEEDED), Stage.REPORT)
    message = f"run exceeded activeDeadlineSeconds={deadline} during stage {current.value}; its Jobs were stopped"
    old = p.stages.get(current.value) or StageStatus()
    p.stages[current.value] = old.model_copy(update={"outcome": FAILED, "reason": Reason.DEADLINE_EXCEEDED.value, "message": message,
                                                     "finished_at": p.stamp, "active": 0})
    p.delete.extend(j.name for j in p.run_jobs() if not j.complete and not j.failed_condition and not j.deleting)
    p.event("Warning", Reason.DEADLINE_EXCEEDED, message)
    p.stop("failed", Reason.DEADLINE_EXCEEDED, message)
    return True


def _suspend_or_resume(p: _Pass) -> None:
    jobs = p.run_jobs()
    if p.spec.suspend:
        p.suspend.extend(j.name for j in jobs if not j.suspended and not j.complete and not j.failed_condition and not j.deleting)
        was = p.view.status.condition(ConditionType.SUSPENDED)
        if was is None or was.status != "True":
            p.event("Normal", Reason.SUSPENDED, f"run {p.run} suspended: no new Jobs, running ones suspended")
        p.stop("suspended", Reason.SUSPENDED, "spec.suspend is true: set it to false to continue the same run")
        return
    p.resume.extend(j.name for j in jobs if j.suspended and j.suspended_by_operator and not j.deleting)


# ---- stages ---------------------------------------------------------------------------------------


def _intents(p: _Pass, stage: Stage, attempt: int) -> list[JobIntent] | tuple[Reason, str]:
    """The Jobs a stage needs (its row's fan-out), or why they cannot be created yet (reason, message)."""
    row = STAGES[stage]
    if row.fan_out is FanOut.SINGLE:
        return [JobIntent(stage, None, attempt, 1)]
    if row.fan_out is FanOut.PER_TARGET:
        n = p.status.selected_targets
        if n is None:
            return Reason.STAGE_FAILED, "rank finished without reporting how many targets it kept; retry the run (trainpipe.io/retry)"
        return [JobIntent(stage, None, attempt, n)] if n else []
    ref = p.status.plan
    if ref is None:
        return Reason.STAGE_FAILED, "the plan stage finished but its digest and unit counts are unknown; retry the run (trainpipe.io/retry)"
    out = [JobIntent(stage, fam, attempt, n, ref.digest) for fam, n in ref.units.items() if n > 0 and FAMILY_STAGE.get(fam) is stage]
    if out and manifests.image_of(p.spec, stage, p.config) is None:
        units, pool = sum(i.completions for i in out), row.pool.value
        return Reason.INVALID_SPEC, (f"the plan has {units} {stage.value} units but there is no {pool} image: set spec.images.{pool} "
                f"(the cpu image also works, explicitly), or start the operator with --{pool}-image")
    return out


def _count(jobs: list[ObservedJob], intents: list[JobIntent], names: list[str]) -> dict[str, int]:
    by_name = {j.name: j for j in jobs}
    pending = active = succeeded = failed = 0
    for intent, name in zip(intents, names):
        job = by_name.get(name)
        if job is None:
            pending += intent.completions
            continue
        done = min(job.succeeded, intent.completions)
        bad = min(job.failed_units, intent.completions - done)
        # Only a Ready pod runs: one still pulling its image or creating its container (or stuck doing so)
        # counts as pending, so an image that cannot be pulled is never shown as running.
        running = min(job.ready, job.active, intent.completions - done - bad)
        succeeded, failed, active = succeeded + done, failed + bad, active + running
        pending += max(0, intent.completions - done - bad - running)
    return {"pending": pending, "active": active, "succeeded": succeeded, "failed": failed}


def _walk_stages(p: _Pass) -> None:
    """Ensure the current stage's Jobs; on its completion record it and go on to the next in the same pass."""
    for stage in STAGE_ORDER:
        old = p.stages.get(stage.value) or StageStatus()
        if old.outcome == SUCCEEDED:
            continue
        intents = _intents(p, stage, old.attempt)
        if isinstance(intents, tuple):
            reason, problem = intents
            # Not an outcome: fixing the spec (an image) or a retry lets the same run go on.
            p.stages[stage.value] = old.model_copy(update={"reason": reason.value, "message": problem})
            p.stop("invalid" if reason is Reason.INVALID_SPEC else "failed", reason, problem)
            return
        if not intents:  # nothing to do in this stage (e.g. a plan without GPU families)
            p.stages[stage.value] = old.model_copy(update={"outcome": SUCCEEDED, "started_at": old.started_at or p.stamp, "finished_at": p.stamp})
            continue
        names = [job_name(p.view.name, p.run, i.stage, i.family, i.attempt) for i in intents]
        jobs = [j for j in p.run_jobs() if j.stage is stage and j.attempt == old.attempt]
        present = {j.name: j for j in jobs}
        for intent, name in zip(intents, names):
            job = present.get(name)
            if job is None:
                p.create.append(manifests.job(p.spec, p.owner, p.run, intent, p.config, suspend=bool(p.spec.queue_name)))
            elif job.deleting:
                p.requeue.append(DELETION_POLL_SECONDS)  # re-created once it is gone
        counts = _count(jobs, intents, names)
        started: str = old.started_at or p.stamp
        if old.started_at is None:
            p.event("Normal", Reason.JOBS_CREATED, f"stage {stage.value}: {len(intents)} Job(s), {sum(i.completions for i in intents)} unit(s)")
        current = old.model_copy(update={**counts, "started_at": started, "reason": None, "message": None})
        mine = [present[n] for n in names if n in present and not present[n].deleting]
        if len(mine) == len(names) and all(j.complete for j in mine):
            unreadable = _record_outputs(p, stage, mine)
            if unreadable:
                p.stages[stage.value] = current.model_copy(update={"outcome": FAILED, "reason": Reason.STAGE_FAILED.value, "finished_at": p.stamp,
                                                                   "message": unreadable})
                p.event("Warning", Reason.STAGE_FAILED, unreadable)
                p.stop("failed", Reason.STAGE_FAILED, unreadable)
                return
            p.stages[stage.value] = current.model_copy(update={"outcome": SUCCEEDED, "finished_at": p.stamp})
            p.finished.append((stage.value, SUCCEEDED, _seconds(started, p.stamp), len(mine)))
            p.event("Normal", Reason.STAGE_SUCCEEDED, f"stage {stage.value} of run {p.run} succeeded ({counts['succeeded']} unit(s))")
            continue
        broken = [j for j in mine if j.failed_condition]
        if broken:
            cause, message = _failure_message(p, stage, broken)
            p.stages[stage.value] = current.model_copy(update={"outcome": FAILED, "reason": cause, "finished_at": p.stamp, "message": message})
            p.finished.append((stage.value, FAILED, _seconds(started, p.stamp), len(broken)))
            p.event("Warning", Reason.STAGE_FAILED, message)
            p.stop("failed", cause, message)
            return
        p.stages[stage.value] = current
        progress = (f"stage {stage.value}: {counts['succeeded']}/{sum(i.completions for i in intents)} units done, "
                    f"{counts['active']} running, {counts['pending']} pending")
        trouble = _stuck(p, stage, mine) or _retrying(p, stage, mine)
        if trouble:
            cause, note = trouble
            p.stop("running", cause, f"{progress}; {note}")
            p.stages[stage.value] = current.model_copy(update={"reason": cause, "message": note})
        else:
            p.stop("running", Reason.STAGE_RUNNING, progress)
        return
    # Every stage succeeded in this pass.
    record = RunRecord(run_id=p.run, outcome="Succeeded", started_at=p.status.started_at, finished_at=p.stamp)
    p.record(finished_at=p.stamp, history=[record, *p.status.history][: p.spec.keep_runs],
             last_succeeded_run=RunRef(run_id=p.run, models_path=f"{manifests.run_dir(p.spec, p.view.name, p.run)}/models", finished_at=p.stamp))
    p.event("Normal", Reason.SUCCEEDED, f"run {p.run} succeeded; report at {manifests.run_dir(p.spec, p.view.name, p.run)}/report.html")
    p.stop("done", Reason.SUCCEEDED, _success_message(p))
    if p.spec.ttl_seconds_after_finished is not None:
        p.requeue.append(float(p.spec.ttl_seconds_after_finished))


def _record_outputs(p: _Pass, stage: Stage, jobs: list[ObservedJob]) -> str | None:
    """What a finished Job of a reporting stage told us (its pod's termination message); a problem message if unreadable."""
    model = STAGES[stage].report
    if model is None or getattr(p.status, model.status_field) is not None:
        return None
    messages = [pod.message for pod in p.observed.pods_of(jobs[0].name) if pod.phase == "Succeeded"]
    report = next((r for m in messages if isinstance(r := termination_report(m, model), model)), None)
    if isinstance(report, RankReport):
        p.record(**{model.status_field: report.selected})
        return None
    if not isinstance(report, PlanReport):
        return f"the {stage.value} Job {jobs[0].name} succeeded but its pod left no readable termination message ({model.expects})"
    plan = report
    if plan.run_id not in (None, p.run):
        return f"the plan Job wrote a plan for run {plan.run_id}, not {p.run}"
    ref = PlanRef(digest=plan.plan_digest, path=f"{manifests.run_dir(p.spec, p.view.name, p.run)}/{plan.path}", units=dict(plan.units))
    p.record(plan=ref)
    p.upsert.append(manifests.plan_config_map(p.owner, p.run, ref.digest, ref.path, dict(ref.units)))
    return None


def _failure_message(p: _Pass, stage: Stage, broken: list[ObservedJob]) -> tuple[str, str]:
    """(reason, message) of a failed stage: the kubelet's reason when it names the cause (OOMKilled), else ours."""
    job = broken[0]
    what = f"stage {stage.value}{_family(job)}"
    pods = [pod for pod in p.observed.pods_of(job.name) if pod.phase == "Failed"]
    if job.failed_indexes:
        pods = [pod for pod in pods if pod.index in set(job.failed_indexes)] or pods
        what += f", index {','.join(str(i) for i in job.failed_indexes[:5])}"
    retry = f"then `kubectl annotate tp {p.view.name} trainpipe.io/retry=<token>`"
    killed = next((pod for pod in reversed(pods) if pod.reason in KILLED_BY_KUBELET), None)
    if killed is not None:
        return killed.reason, f"{what} failed in Job {job.name}: {_kill_note(p, stage, job, killed)}, {retry}"
    detail = next((pod.message.splitlines()[-1] for pod in reversed(pods) if pod.message), "")
    exit_code = next((pod.exit_code for pod in reversed(pods) if pod.exit_code is not None), None)
    tail = f": {detail}" if detail else ""
    code = f" (exit {exit_code})" if exit_code is not None else ""
    return Reason.STAGE_FAILED.value, f"{what} failed in Job {job.name}{code}{tail} [{job.failed_condition}]; fix the cause, {retry}"


def _kill_note(p: _Pass, stage: Stage, job: ObservedJob, pod: ObservedPod) -> str:
    """`OOMKilled: raise <the spec field that set the limit>` (the family's override when it has one)."""
    settings = manifests.settings_of(p.spec, stage)
    families = getattr(settings, "families", {}) or {}
    if job.family is not None and job.family in families:
        field, limits = f"stages.{stage.value}.families.{job.family}.limits.memory", families[job.family].limits
    else:
        field, limits = f"stages.{stage.value}.resources.limits.memory", settings.resources.limits
    now = f" (now {limits['memory']})" if "memory" in limits else " (none set: the node's memory was exhausted)"
    return f"{pod.reason}: raise {field}{now}"


def _family(job: ObservedJob) -> str:
    return f", family {job.family}" if job.family else ""


def _unit(pod: ObservedPod) -> str:
    return f"unit {pod.index}" if pod.index is not None else "the unit"


def _stuck(p: _Pass, stage: Stage, jobs: list[ObservedJob]) -> tuple[str, str] | None:
    """Why the stage's pods cannot start, with the unit named: a container the kubelet cannot start
    (ErrImagePull, ImagePullBackOff, CreateContainerConfigError, ...: its own reason), else the scheduler's."""
    names = {j.name for j in jobs}
    pending = [pod for pod in p.observed.pods if pod.job in names and pod.phase == "Pending"]
    for pod in pending:
        if pod.waiting:
            job = next(j for j in jobs if j.name == pod.job)
            return pod.waiting.split(":", 1)[0], f"{_unit(pod)} of stage {stage.value}{_family(job)} cannot start (pod {pod.name}): {pod.waiting}"
    unschedulable = [pod for pod in pending if pod.unschedulable]
    if unschedulable:
        return Reason.UNSCHEDULABLE.value, f"{len(unschedulable)} pod(s) of Job {unschedulable[0].job} cannot be scheduled: {unschedulable[0].unschedulable}"
    return None


def _retrying(p: _Pass, stage: Stage, jobs: list[ObservedJob]) -> tuple[str, str] | None:
    """A unit the kubelet killed (OOMKilled) while its Job still retries it: shown before the retries run out."""
    for job in jobs:
        if job.failed == 0:
            continue
        killed = next((pod for pod in p.observed.pods_of(job.name) if pod.phase == "Failed" and pod.reason in KILLED_BY_KUBELET), None)
        if killed is not None:
            return killed.reason, f"{_unit(killed)} of stage {stage.value}{_family(job)} was {_kill_note(p, stage, job, killed)}; retrying"
    return None


def _seconds(start: str | None, end: str) -> float:
    a, b = parse_iso(start), parse_iso(end)
    return (b - a).total_seconds() if a and b else 0.0


def _success_message(p: _Pass) -> str:
    return f"run {p.run} succeeded; models in {manifests.run_dir(p.spec, p.view.name, p.run)}/models"


# ---- status ---------------------------------------------------------------------------------------


_DISPLAY = {"done": "Done", "failed": "Failed", "invalid": "Failed", "suspended": "Suspended"}


def _finish(p: _Pass) -> Decision:
    gen = p.view.generation
    prev = p.view.status.conditions
    stamp = p.stamp
    state, reason, message = p.state, p.reason, p.message
    ready = set_condition(prev, ConditionType.READY, "True" if state == "done" else "False", reason, message, gen, stamp)
    reconciling = set_condition(prev, ConditionType.RECONCILING, "True" if state == "running" else "False",
                                reason if state == "running" else state.capitalize(), message if state == "running" else "", gen, stamp)
    stalled = set_condition(prev, ConditionType.STALLED, "True" if state in ("failed", "invalid") else "False",
                            reason if state in ("failed", "invalid") else "NotStalled", message if state in ("failed", "invalid") else "", gen, stamp)
    suspended = set_condition(prev, ConditionType.SUSPENDED, "True" if state == "suspended" else "False",
                              Reason.SUSPENDED.value if state == "suspended" else Reason.NOT_SUSPENDED.value, "", gen, stamp)
    current = next((s.value for s in STAGE_ORDER if (p.stages.get(s.value) or StageStatus()).outcome != SUCCEEDED), None)
    totals = _progress(p)
    status = PipelineStatus.model_validate({
        **dict(p.status),
        "observed_generation": gen,
        "conditions": [ready, reconciling, stalled, suspended],
        "stage": _DISPLAY.get(state, current),
        "progress": totals,
        "stages": {k: v for k, v in sorted(p.stages.items(), key=lambda kv: STAGE_ORDER.index(Stage(kv[0])))},
        "message": message or None,
    })
    return Decision(
        status=status, create=tuple(p.create), upsert=tuple(p.upsert), delete_jobs=tuple(dict.fromkeys(p.delete)),
        suspend_jobs=tuple(p.suspend), resume_jobs=tuple(p.resume), events=tuple(p.events), finished_stages=tuple(p.finished),
        requeue_after=min(p.requeue) if p.requeue else None,
    )


def _progress(p: _Pass) -> str:
    """`succeeded/known` units of the run, by each stage's fan-out: 1, a unit per kept target, a unit per
    planned model; a stage whose size is not known yet counts none."""
    known: dict[Stage, int] = {}
    ref, selected = p.status.plan, p.status.selected_targets
    for stage, row in STAGES.items():
        if row.fan_out is FanOut.SINGLE:
            known[stage] = 1
        elif row.fan_out is FanOut.PER_TARGET and selected is not None:
            known[stage] = selected
        elif row.fan_out is FanOut.PER_PLAN_UNIT and ref is not None:
            known[stage] = sum(n for fam, n in ref.units.items() if FAMILY_STAGE.get(fam) is stage)
    done = 0
    for stage in STAGE_ORDER:
        s = p.stages.get(stage.value)
        if s is not None:
            done += known.get(stage, s.total) if s.outcome == SUCCEEDED else s.succeeded
    return f"{done}/{sum(known.values())}"


def _invalid(view: PipelineView, now: datetime, message: str) -> Decision:
    stamp = iso(now)
    prev = view.status.conditions
    gen = view.generation
    reason = Reason.INVALID_SPEC.value
    status = view.status.model_copy(update={
        "observed_generation": gen, "stage": "Failed", "message": message[:MAX_MESSAGE],
        "conditions": [
            set_condition(prev, ConditionType.READY, "False", reason, message, gen, stamp),
            set_condition(prev, ConditionType.RECONCILING, "False", "Invalid", "", gen, stamp),
            set_condition(prev, ConditionType.STALLED, "True", reason, message, gen, stamp),
            set_condition(prev, ConditionType.SUSPENDED, "False", Reason.NOT_SUSPENDED.value, "", gen, stamp),
        ],
    })
    already = view.status.condition(ConditionType.STALLED)
    news = already is None or already.status != "True" or already.message != message
    return Decision(status=status, events=(EventIntent("Warning", reason, message[:MAX_MESSAGE]),) if news else ())


