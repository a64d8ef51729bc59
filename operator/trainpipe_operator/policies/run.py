"""Which run, and whether it may go on: its start or continuation, retry, completion and TTL, suspend, preconditions."""

from __future__ import annotations

from trainpipe.contract.names import Stage
from trainpipe.contract.stages import STAGES
from trainpipe.contract.status import ConditionType, PipelineStatus, Reason, RunRecord, StageStatus
from trainpipe.contract.timestamps import parse_stamp
from trainpipe_operator import manifests
from trainpipe_operator.observed import ObservedPlan
from trainpipe_operator.policies.passes import FAILED, SUCCEEDED, Pass
from trainpipe_operator.policies.status import final_words


def start_or_continue_run(p: Pass) -> None:
    old = p.view.status
    if old.run_id == p.run:
        p.status = old
        p.stages = dict(old.stages)
        return
    history = list(old.history)
    if old.run_id and not old.finished_at:
        failed = any(s.outcome == FAILED for s in old.stages.values())
        history.insert(0, RunRecord(run_id=old.run_id, outcome="Failed" if failed else "Superseded", started_at=old.started_at, finished_at=p.stamp))
        p.event("Normal", Reason.SUPERSEDED, f"run {old.run_id} superseded by run {p.run} ({trigger_of(p)})")
    p.event("Normal", Reason.RUN_STARTED, f"run {p.run} started for generation {p.view.generation} ({trigger_of(p)})")
    p.status = PipelineStatus(
        conditions=old.conditions, last_succeeded_run=old.last_succeeded_run, run_id=p.run, run_generation=p.view.generation,
        rerun_token=p.view.rerun_token, retry_token=p.view.retry_token, started_at=p.stamp,
        output_path=manifests.run_dir(p.spec, p.owner, p.run), spec_digest=manifests.spec_digest(p.spec), history=history[: p.spec.keep_runs],
    )
    p.stages = {}


def trigger_of(p: Pass) -> str:
    """Why a new run starts, in words a user reads in an Event."""
    old = p.view.status
    if old.run_id is None:
        return "the pipeline is new"
    if (p.view.rerun_token or None) != (old.rerun_token or None):
        return "the trainpipe.io/rerun token changed"
    if p.spec.schedule is not None and (old.schedule.slot if old.schedule else None) != p.slot:
        return f"the schedule fired ({p.spec.schedule.cron} {p.spec.schedule.time_zone})"
    return "the spec changed what a run computes"


def ensure_artifacts_claim(p: Pass) -> None:
    if p.spec.artifacts.claim_name is None and p.spec.artifacts.uri is None and not p.observed.artifacts_claim_exists:
        p.create.append(manifests.artifacts_claim_manifest(p.spec, p.owner, p.config))


def ensure_plan_config_map(p: Pass) -> None:
    """Keep `<pipeline>-plan` equal to the plan the status recorded (restores it if deleted or edited)."""
    ref = p.status.plan
    if ref is None:
        return
    wanted = ObservedPlan(run=p.run, digest=ref.digest, path=ref.path, units=dict(ref.units))
    if p.observed.plan != wanted:
        p.upsert.append(manifests.plan_config_map(p.owner, p.run, ref.digest, ref.path, dict(ref.units)))


def handle_retry(p: Pass) -> None:
    """A new `trainpipe.io/retry` token resumes a failed run at its failed stage, with attempt+1 Jobs."""
    token = p.view.retry_token
    if not token or token == p.status.retry_token:
        return
    p.record(retry_token=token)
    failed = next((st for st in STAGES.order if (s := p.stages.get(st)) is not None and s.outcome == FAILED), None)
    if failed is None:
        return  # nothing failed: the token is recorded so that it does not fire later
    old = p.stages[failed]
    p.stages[failed] = StageStatus(attempt=old.attempt + 1)
    p.record(finished_at=None, started_at=p.stamp)  # a retry opens a new activeDeadlineSeconds window
    p.delete.extend(j.name for j in p.run_jobs() if j.stage == failed and j.attempt <= old.attempt and not j.deleting)
    p.event("Normal", Reason.RETRYING, f"retrying stage {failed} of run {p.run} as attempt {old.attempt + 1}: units with outputs are not rerun")


def run_finished(p: Pass) -> bool:
    """Every stage succeeded, or the run ended after rank for want of evidence."""
    if p.status.no_evidence is not None and p.status.finished_at is not None:
        return True
    return all(p.stages.get(s) is not None and p.stages[s].outcome == SUCCEEDED for s in STAGES.order)


def apply_ttl(p: Pass) -> None:
    p.stop("done", *final_words(p))
    ttl = p.spec.ttl_seconds_after_finished
    finished = parse_stamp(p.status.finished_at)
    if ttl is None or finished is None:
        return
    left = (finished - p.now).total_seconds() + ttl
    if left > 0:
        p.requeue.append(left)
        return
    # Only Jobs: the outputs on the volume and the status record of each stage stay.
    p.delete.extend(j.name for j in p.run_jobs() if not j.deleting)


def precondition_problem(p: Pass) -> bool:
    if p.observed.missing_claims:
        names = ", ".join(p.observed.missing_claims)
        p.stop("invalid", Reason.INVALID_SPEC,
               f"PersistentVolumeClaim {names} not found in namespace {p.view.namespace}: create it, or fix spec.data.volume.claimName / spec.artifacts.claimName")
        return True
    if manifests.image_of(p.spec, Stage.RANK, p.config) is None:
        p.stop("invalid", Reason.INVALID_SPEC, "no image for the rank, select, plan and cpu Jobs: set spec.images.cpu, or start the operator with --cpu-image")
        return True
    return False


def suspend_or_resume(p: Pass) -> None:
    jobs = p.run_jobs()
    if p.spec.suspend:
        p.suspend.extend(j.name for j in jobs if not j.suspended and not j.complete and not j.failed_condition and not j.deleting)
        was = p.view.status.condition(ConditionType.SUSPENDED)
        if was is None or was.status != "True":
            p.event("Normal", Reason.SUSPENDED, f"run {p.run} suspended: no new Jobs, running ones suspended")
        p.stop("suspended", Reason.SUSPENDED, "spec.suspend is true: set it to false to continue the same run")
        return
    p.resume.extend(j.name for j in jobs if j.suspended and j.suspended_by_operator and not j.deleting)
