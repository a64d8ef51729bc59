"""The stages in order: each one's Jobs from its row's fan-out, their counts, and the hand-off to the next when they finish."""

from __future__ import annotations

from trainpipe.contract.families import FAMILY_STAGE
from trainpipe.contract.reports import HtmlReport, PlanReport, RankReport, StageReport
from trainpipe.contract.stages import STAGES, FanOut
from trainpipe.contract.status import PlanRef, Reason, ReportRef, RunRecord, RunRef, StageStatus
from trainpipe_operator import manifests
from trainpipe_operator.manifests import JobIntent
from trainpipe_operator.naming import AGGREGATE, GROUPS, job_name
from trainpipe_operator.observed import ObservedJob
from trainpipe_operator.policies.disruptions import count_evictions, evicted_too_often
from trainpipe_operator.policies.failures import (
    create_failed,
    failure_message,
    kubelet_retrying,
    on_lost_node,
    why_stuck,
)
from trainpipe_operator.policies.passes import FAILED, SUCCEEDED, Pass
from trainpipe_operator.policies.status import no_evidence_message, seconds_between, success_message

# How soon to look again while a Job we need to re-create is still being deleted.
DELETION_POLL_SECONDS = 2.0
# A stage whose pod was gone before its report was read runs again this many times: its outputs are on
# the volume (the rerun finds them cached and only reports), so only the report is recomputed.
REPORT_RERUNS = 1


def termination_report(text: str, model: type[StageReport]) -> StageReport | None:
    """The report a successful stage command wrote to its termination log (its last line), or None."""
    try:
        return model.model_validate_json(text.strip().splitlines()[-1]) if text.strip() else None
    except ValueError:
        return None


def stage_intents(p: Pass, stage: str, attempt: int) -> list[JobIntent] | tuple[Reason, str]:
    """The Jobs a stage needs (its row's fan-out), or why they cannot be created yet (reason, message)."""
    row = STAGES[stage]
    previous = p.view.previous_run(p.run) if row.compares_previous_run else None
    groups = getattr(p.spec.stages.of(stage), "target_groups", 1)
    if row.fan_out is FanOut.SINGLE and groups > 1:
        return group_intents(p, stage, attempt, groups)
    if row.fan_out is FanOut.SINGLE:
        return [JobIntent(stage, None, attempt, 1, keep=() if row.computes else p.view.runs_kept(), previous_run=previous)]
    if row.fan_out is FanOut.PER_TARGET:
        n = p.status.selected_targets
        if n is None:
            return Reason.STAGE_FAILED, "rank finished without reporting how many targets it kept; retry the run (trainpipe.io/retry)"
        return [JobIntent(stage, None, attempt, n, previous_run=previous)] if n else []
    ref = p.status.plan
    if ref is None:
        return Reason.STAGE_FAILED, "the plan stage finished but its digest and unit counts are unknown; retry the run (trainpipe.io/retry)"
    out = [JobIntent(stage, fam, attempt, n, ref.digest) for fam, n in ref.units.items() if n > 0 and FAMILY_STAGE.get(fam) == stage]
    if out and manifests.image_of(p.spec, stage, p.config) is None:
        units, pool = sum(i.completions for i in out), row.pool.value
        return Reason.INVALID_SPEC, (f"the plan has {units} {stage} units but there is no {pool} image: set spec.images.{pool} "
                f"(the cpu image also works, explicitly), or start the operator with --{pool}-image")
    return out


def group_intents(p: Pass, stage: str, attempt: int, groups: int) -> list[JobIntent]:
    """A stage run in groups (stages.rank.targetGroups): an Indexed Job of a unit per group, then, once every
    group is done, the small Job that merges their parts and reports what the single Job would have."""
    units = JobIntent(stage, GROUPS, attempt, groups, indexed=True)
    scored = any(j.stage == stage and j.family == GROUPS and j.attempt == attempt and j.complete and not j.deleting for j in p.run_jobs())
    return [units, JobIntent(stage, AGGREGATE, attempt, 1, indexed=False)] if scored else [units]


def ensure_spec(p: Pass) -> None:
    """The run's spec ConfigMap, unless seen: created before the first Job that mounts it ("already exists" is success)."""
    if p.observed.spec_map_exists:
        return
    spec_map = manifests.spec_config_map(p.spec, p.owner, p.run)
    if all(m["metadata"]["name"] != spec_map["metadata"]["name"] for m in p.create):
        p.create.append(spec_map)


def count_units(jobs: list[ObservedJob], intents: list[JobIntent], names: list[str]) -> dict[str, int]:
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


def walk_stages(p: Pass) -> None:
    """Ensure the current stage's Jobs; on its completion record it and go on to the next in the same pass."""
    for stage in STAGES.order:
        old = p.stages.get(stage) or StageStatus()
        if old.outcome == SUCCEEDED:
            continue
        if p.status.no_evidence is not None:  # rank found nothing worth training: the run ends before the next stage
            end_without_evidence(p)
            return
        intents = stage_intents(p, stage, old.attempt)
        if isinstance(intents, tuple):
            reason, problem = intents
            # Not an outcome: fixing the spec (an image) or a retry lets the same run go on.
            p.stages[stage] = old.model_copy(update={"reason": reason.value, "message": problem})
            p.stop("invalid" if reason is Reason.INVALID_SPEC else "failed", reason, problem)
            return
        if not intents:  # nothing to do in this stage (e.g. a plan without GPU families)
            p.stages[stage] = old.model_copy(update={"outcome": SUCCEEDED, "started_at": old.started_at or p.stamp, "finished_at": p.stamp})
            continue
        names = [job_name(p.view.name, p.run, i.stage, i.family, i.attempt) for i in intents]
        jobs = [j for j in p.run_jobs() if j.stage == stage and j.attempt == old.attempt]
        present = {j.name: j for j in jobs}
        for intent, name in zip(intents, names):
            job = present.get(name)
            if job is None:
                if STAGES[stage].computes:
                    ensure_spec(p)
                p.create.append(manifests.job(p.spec, p.owner, p.run, intent, p.config, suspend=bool(p.spec.queue_name)))
            elif job.deleting:
                p.requeue.append(DELETION_POLL_SECONDS)  # re-created once it is gone
        counts = count_units(jobs, intents, names)
        started: str = old.started_at or p.stamp
        if old.started_at is None:
            p.event("Normal", Reason.JOBS_CREATED, f"stage {stage}: {len(intents)} Job(s), {sum(i.completions for i in intents)} unit(s)")
        current = old.model_copy(update={**counts, "started_at": started, "reason": None, "message": None})
        mine = [present[n] for n in names if n in present and not present[n].deleting]
        current = count_evictions(p, stage, current, mine)
        if len(mine) == len(names) and all(j.complete for j in mine):
            unreadable = record_outputs(p, stage, mine)
            if unreadable and report_lost(p, mine) and old.report_reruns < REPORT_RERUNS:
                rerun_for_report(p, stage, old, mine)
                return
            if unreadable:
                p.stages[stage] = current.model_copy(update={"outcome": FAILED, "reason": Reason.STAGE_FAILED.value, "finished_at": p.stamp,
                                                                   "message": unreadable})
                p.event("Warning", Reason.STAGE_FAILED, unreadable)
                p.stop("failed", Reason.STAGE_FAILED, unreadable)
                return
            p.stages[stage] = current.model_copy(update={"outcome": SUCCEEDED, "finished_at": p.stamp})
            p.finished.append((stage, SUCCEEDED, seconds_between(started, p.stamp), len(mine)))
            p.event("Normal", Reason.STAGE_SUCCEEDED, f"stage {stage} of run {p.run} succeeded ({counts['succeeded']} unit(s))")
            continue
        if evicted_too_often(p, stage, current, mine):
            return
        broken = [j for j in mine if j.failed_condition]
        if broken:
            cause, message = failure_message(p, stage, broken)
            p.stages[stage] = current.model_copy(update={"outcome": FAILED, "reason": cause, "finished_at": p.stamp, "message": message})
            p.finished.append((stage, FAILED, seconds_between(started, p.stamp), len(broken)))
            p.event("Warning", Reason.STAGE_FAILED, message)
            p.stop("failed", cause, message)
            return
        p.stages[stage] = current
        progress = (f"stage {stage}: {counts['succeeded']}/{sum(i.completions for i in intents)} units done, "
                    f"{counts['active']} running, {counts['pending']} pending")
        refused_pods = create_failed(p, stage, mine)
        trouble = on_lost_node(p, stage, mine) or why_stuck(p, stage, mine) or refused_pods or kubelet_retrying(p, stage, mine)
        # A refused create is a Stall of its own, with the API server's words (failures.refused); not a start timeout.
        if p.observed.refusal is None and start_timed_out(p, stage, current, mine, trouble):
            return
        if refused_pods:
            cause, note = refused_pods
            p.stop("stuck", cause, f"{progress}; {note}")
            p.stages[stage] = current.model_copy(update={"reason": cause, "message": note})
        elif trouble:
            cause, note = trouble
            p.stop("running", cause, f"{progress}; {note}")
            p.stages[stage] = current.model_copy(update={"reason": cause, "message": note})
        else:
            p.stop("running", Reason.STAGE_RUNNING, progress)
        return
    # Every stage succeeded in this pass.
    record = RunRecord(run_id=p.run, outcome="Succeeded", started_at=p.status.started_at, finished_at=p.stamp)
    p.record(finished_at=p.stamp, history=[record, *p.status.history][: p.spec.keep_runs],
             last_succeeded_run=RunRef(run_id=p.run, models_path=f"{manifests.run_dir(p.spec, p.owner, p.run)}/models", finished_at=p.stamp))
    p.event("Normal", Reason.SUCCEEDED, f"run {p.run} succeeded; report at {manifests.run_dir(p.spec, p.owner, p.run)}/report.html")
    p.stop("done", Reason.SUCCEEDED, success_message(p))
    if p.spec.ttl_seconds_after_finished is not None:
        p.requeue.append(float(p.spec.ttl_seconds_after_finished))


def end_without_evidence(p: Pass) -> None:
    """Rank kept no target for want of evidence: the run ends Ready, trained nothing, and lastSucceededRun stays where it was.

    Its report is already in the run folder (rank wrote it); no later stage runs, so no model of this run
    can be taken for one that learned something.
    """
    record = RunRecord(run_id=p.run, outcome="NoEvidence", started_at=p.status.started_at, finished_at=p.stamp)
    p.record(finished_at=p.stamp, history=[record, *p.status.history][: p.spec.keep_runs])
    p.event("Normal", Reason.NO_EVIDENCE, f"run {p.run} trained nothing: {p.status.no_evidence}")
    p.stop("done", Reason.NO_EVIDENCE, no_evidence_message(p))
    if p.spec.ttl_seconds_after_finished is not None:
        p.requeue.append(float(p.spec.ttl_seconds_after_finished))


def start_timed_out(p: Pass, stage: str, current: StageStatus, jobs: list[ObservedJob], trouble: tuple[str, str] | None) -> bool:
    """Stall a stage none of whose units has started within its startTimeoutSeconds (and stop its Jobs); else look again then.

    A pod that never starts (an image that cannot be pulled, a node that never fits it, a quota of zero)
    would otherwise keep the run "running" forever. Jobs a queue holds suspended are waiting their turn, not stuck.
    """
    if current.succeeded or current.failed or current.active or any(j.suspended for j in jobs):
        return False
    if trouble is not None and trouble[0] == Reason.NODE_NOT_READY.value:
        return False  # its units started: they are not counted running only because their node stopped reporting
    timeout = manifests.settings_of(p.spec, stage).start_timeout_seconds
    waited = seconds_between(current.started_at, p.stamp)
    if waited < timeout:
        p.requeue.append(timeout - waited)
        return False
    why = f": {trouble[1]}" if trouble else " (no reason from the scheduler or the kubelet yet)"
    message = (f"stage {stage}: no pod started within stages.{stage}.startTimeoutSeconds={timeout}{why}; its Jobs were stopped. "
               "Fix the cause, then retry the run (trainpipe.io/retry)")
    p.stages[stage] = current.model_copy(update={"outcome": FAILED, "reason": Reason.START_TIMEOUT.value, "finished_at": p.stamp,
                                                 "message": message, "pending": 0})
    p.delete.extend(j.name for j in jobs if not j.deleting)
    p.finished.append((stage, FAILED, waited, len(jobs)))
    p.event("Warning", Reason.START_TIMEOUT, message)
    p.stop("failed", Reason.START_TIMEOUT, message)
    return True


def record_report(p: Pass, report: HtmlReport | None) -> None:
    """Keep what the report Job said: its page, its model count, and whether MLflow has the run.

    Its words are a courtesy, unlike rank's and plan's (the next stage is sized by those): the page is
    in the run folder either way, so a pod gone or silent is recorded as saying nothing, never a failure.
    """
    page = report.path if report is not None else "report.html"
    p.record(report=ReportRef(path=f"{manifests.run_dir(p.spec, p.owner, p.run)}/{page}", models=None if report is None else report.models,
                              tracking=None if report is None else report.tracking))
    tracking = None if report is None else report.tracking
    if tracking is not None and tracking.state != "tracked":
        # Training is done and kept; only the MLflow record is missing, and the user should know.
        p.event("Warning", Reason.NOT_TRACKED, f"run {p.run} was not tracked in MLflow: {tracking.reason or 'no reason given'}")


def report_lost(p: Pass, jobs: list[ObservedJob]) -> bool:
    """No pod of the finished Jobs is left to read (deleted, garbage-collected, its node gone), as opposed to a pod whose message is wrong."""
    return not any(p.observed.pods_of(j.name) for j in jobs)


def rerun_for_report(p: Pass, stage: str, old: StageStatus, jobs: list[ObservedJob]) -> None:
    """Run the stage again as a new attempt: its pod finds its outputs cached and writes the report once more."""
    message = (f"the {stage} Job {jobs[0].name} succeeded but its pod was gone before its report was read; "
               f"running {stage} again (attempt {old.attempt + 1}): it reuses its outputs and only reports")
    p.stages[stage] = StageStatus(attempt=old.attempt + 1, report_reruns=old.report_reruns + 1, started_at=old.started_at or p.stamp,
                                  reason=Reason.REPORT_LOST.value, message=message)
    p.delete.extend(j.name for j in jobs if not j.deleting)
    p.requeue.append(DELETION_POLL_SECONDS)
    p.event("Warning", Reason.REPORT_LOST, message)
    p.stop("running", Reason.REPORT_LOST, message)


def record_outputs(p: Pass, stage: str, jobs: list[ObservedJob]) -> str | None:
    """What a finished Job of a reporting stage told us (its pod's termination message); a problem message if unreadable."""
    model = STAGES[stage].report
    if model is None or getattr(p.status, model.status_field) is not None:
        return None
    # The last Job's pods first: a stage run in groups reports from its merging Job, not from its units.
    messages = [pod.message for job in reversed(jobs) for pod in p.observed.pods_of(job.name) if pod.phase == "Succeeded"]
    report = next((r for m in messages if isinstance(r := termination_report(m, model), model)), None)
    if isinstance(report, RankReport):
        p.record(**{model.status_field: report.selected}, no_evidence=report.no_evidence)
        return None
    if model is HtmlReport:
        record_report(p, report if isinstance(report, HtmlReport) else None)
        return None
    if not isinstance(report, PlanReport):
        return f"the {stage} Job {jobs[-1].name} succeeded but its pod left no readable termination message ({model.expects})"
    plan = report
    if plan.run_id not in (None, p.run):
        return f"the plan Job wrote a plan for run {plan.run_id}, not {p.run}"
    ref = PlanRef(digest=plan.plan_digest, path=f"{manifests.run_dir(p.spec, p.owner, p.run)}/{plan.path}", units=dict(plan.units))
    p.record(plan=ref)
    p.upsert.append(manifests.plan_config_map(p.owner, p.run, ref.digest, ref.path, dict(ref.units)))
    return None
