"""Why a run stops or waits: a failed stage, the deadline, a unit the kubelet killed or cannot start (in its words)."""

from __future__ import annotations

import re
from collections.abc import Mapping

from trainpipe.contract.kubelet import KILLED_BY_KUBELET
from trainpipe.contract.stages import STAGES
from trainpipe.contract.status import ConditionType, Reason, StageStatus
from trainpipe.contract.timestamps import parse_stamp
from trainpipe.kube.pods import ObservedPod
from trainpipe_operator import manifests
from trainpipe_operator.observed import ObservedJob, podless
from trainpipe_operator.policies.passes import FAILED, MAX_MESSAGE, SUCCEEDED, Pass
from trainpipe_operator.refusals import create_failure_field, describe, pod_create_refused


def failed_stage(p: Pass) -> bool:
    for stage in STAGES.order:
        s = p.stages.get(stage)
        if s is not None and s.outcome == FAILED:
            p.stop("failed", s.reason or Reason.STAGE_FAILED.value, s.message or f"stage {stage} failed")
            return True
    return False


def deadline_passed(p: Pass) -> bool:
    deadline = p.spec.active_deadline_seconds
    started = parse_stamp(p.status.started_at)
    if deadline is None or started is None:
        return False
    left = (started - p.now).total_seconds() + deadline
    if left > 0:
        p.requeue.append(left)
        return False
    current = next((s for s in STAGES.order if (p.stages.get(s) or StageStatus()).outcome != SUCCEEDED), STAGES.order[-1])
    message = f"run exceeded activeDeadlineSeconds={deadline} during stage {current}; its Jobs were stopped"
    old = p.stages.get(current) or StageStatus()
    p.stages[current] = old.model_copy(update={"outcome": FAILED, "reason": Reason.DEADLINE_EXCEEDED.value, "message": message,
                                                     "finished_at": p.stamp, "active": 0})
    p.delete.extend(j.name for j in p.run_jobs() if not j.complete and not j.failed_condition and not j.deleting)
    p.event("Warning", Reason.DEADLINE_EXCEEDED, message)
    p.stop("failed", Reason.DEADLINE_EXCEEDED, message)
    return True


def failure_message(p: Pass, stage: str, broken: list[ObservedJob]) -> tuple[str, str]:
    """(reason, message) of a failed stage: the kubelet's reason when it names the cause (OOMKilled), else ours."""
    job = broken[0]
    what = f"stage {stage}{family_phrase(job)}"
    pods = [pod for pod in p.observed.pods_of(job.name) if pod.phase == "Failed"]
    if job.failed_indexes:
        pods = [pod for pod in pods if pod.index in set(job.failed_indexes)] or pods
        what += f", index {','.join(str(i) for i in job.failed_indexes[:5])}"
    retry = f"then `kubectl annotate tp {p.view.name} trainpipe.io/retry=<token>`"
    killed = next((pod for pod in reversed(pods) if pod.reason in KILLED_BY_KUBELET), None)
    if killed is not None:
        return killed.reason, f"{what} failed in Job {job.name}: {kill_note(p, stage, job, killed)}, {retry}"
    evicted = next((pod for pod in reversed(pods) if pod.evicted_by_kubelet), None)
    if evicted is not None:
        return Reason.EVICTED.value, f"{what} failed in Job {job.name}: {evict_note(p, stage, job, evicted)}, {retry}"
    detail = next((pod.message.splitlines()[-1] for pod in reversed(pods) if pod.message), "")
    exit_code = next((pod.exit_code for pod in reversed(pods) if pod.exit_code is not None), None)
    tail = f": {detail}" if detail else ""
    code = f" (exit {exit_code})" if exit_code is not None else ""
    return Reason.STAGE_FAILED.value, f"{what} failed in Job {job.name}{code}{tail} [{job.failed_condition}]; fix the cause, {retry}"


def limits_of(p: Pass, stage: str, job: ObservedJob) -> tuple[str, Mapping[str, object]]:
    """(the spec path of the limits a unit of `job` ran with, those limits): the family's override when it has one."""
    settings = manifests.settings_of(p.spec, stage)
    families = getattr(settings, "families", {}) or {}
    if job.family is not None and job.family in families:
        return f"stages.{stage}.families.{job.family}.limits", families[job.family].limits
    return f"stages.{stage}.resources.limits", settings.resources.limits


def kill_note(p: Pass, stage: str, job: ObservedJob, pod: ObservedPod) -> str:
    """`OOMKilled: raise <the spec field that set the limit>` (the family's override when it has one)."""
    field, limits = limits_of(p, stage, job)
    now = f" (now {limits['memory']})" if "memory" in limits else " (none set: the node's memory was exhausted)"
    return f"{pod.reason}: raise {field}.memory{now}"


def evict_note(p: Pass, stage: str, job: ObservedJob, pod: ObservedPod) -> str:
    """`Evicted (pod P): <the kubelet's words>; raise <the spec field behind the limit>`.

    The kubelet evicts a pod whose scratch (/tmp, an emptyDir) outgrows its sizeLimit, or whose ephemeral
    storage outgrows its limit. Unlike a drain or node pressure it sets no DisruptionTarget condition, so
    the Job counts it as a failure of the unit: its retries are used up and its index fails, not its siblings."""
    said = pod.status_message.strip().rstrip(".") or "the kubelet evicted it"
    if "EmptyDir" in said:
        scratch = manifests.settings_of(p.spec, stage).scratch_size_limit
        fix = f"; raise stages.{stage}.scratchSizeLimit (now {scratch}) or make the unit write less to /tmp"
    elif "ephemeral" in said.lower():
        fix = f"; raise {limits_of(p, stage, job)[0]}.ephemeral-storage"
    else:
        fix = "; the node was short of memory or disk (kubectl describe node " + (pod.node or "<its node>") + ")"
    return f"{unit_phrase(pod)} {Reason.EVICTED.value} (pod {pod.name}): {said}{fix}"


def family_phrase(job: ObservedJob) -> str:
    return f", family {job.family}" if job.family else ""


def unit_phrase(pod: ObservedPod) -> str:
    return f"unit {pod.index}" if pod.index is not None else "the unit"


def why_stuck(p: Pass, stage: str, jobs: list[ObservedJob]) -> tuple[str, str] | None:
    """Why the stage's pods cannot start, with the unit named: a container the kubelet cannot start
    (ErrImagePull, ImagePullBackOff, CreateContainerConfigError, ...: its own reason), else the scheduler's."""
    names = {j.name for j in jobs}
    pending = [pod for pod in p.observed.pods if pod.job in names and pod.phase == "Pending"]
    for pod in pending:
        if pod.waiting:
            job = next(j for j in jobs if j.name == pod.job)
            return pod.waiting.split(":", 1)[0], f"{unit_phrase(pod)} of stage {stage}{family_phrase(job)} cannot start (pod {pod.name}): {pod.waiting}"
    unschedulable = [pod for pod in pending if pod.unschedulable]
    if unschedulable:
        first = unschedulable[0]
        job = next(j for j in jobs if j.name == first.job)
        more = f" and {len(unschedulable) - 1} more" if len(unschedulable) > 1 else ""
        return Reason.UNSCHEDULABLE.value, (f"{unit_phrase(first)}{more} of stage {stage}{family_phrase(job)} cannot be scheduled "
                                            f"(Job {first.job}, {len(unschedulable)} pod(s)): {first.unschedulable}")
    return None


# The taint that tells Kubernetes a NotReady node is gone for good: its pods are then deleted (they carry
# DisruptionTarget, which the Jobs' podFailurePolicy ignores) and their units start on other nodes.
OUT_OF_SERVICE_TAINT = "node.kubernetes.io/out-of-service=nodeshutdown:NoExecute"


def on_lost_node(p: Pass, stage: str, jobs: list[ObservedJob]) -> tuple[str, str] | None:
    """Units of the stage whose pods run on a node that stopped reporting Ready, with the node, the units and the way out."""
    troubles = {n.name: n for n in p.observed.lost_nodes}
    by_name = {j.name: j for j in jobs}
    stranded = [pod for pod in p.observed.pods if pod.job in by_name and pod.phase == "Running" and not pod.ready and pod.node in troubles]
    if not stranded:
        return None
    node = troubles[stranded[0].node]
    here = [pod for pod in stranded if pod.node == node.name]
    units = ", ".join(f"{unit_phrase(pod)}{family_phrase(by_name[pod.job])} (pod {pod.name})" for pod in here[:5])
    more = f" and {len(here) - 5} more" if len(here) > 5 else ""
    nodes = len({pod.node for pod in stranded})
    others = f"; {nodes - 1} other node(s) too" if nodes > 1 else ""
    return Reason.NODE_NOT_READY.value, (
        f"{node.describe()}: {units}{more} of stage {stage} ran there{others}. They go on if the node comes back; if it is gone "
        f"for good, mark it out of service (kubectl taint nodes {node.name} {OUT_OF_SERVICE_TAINT}) and they rerun on other "
        "nodes without using up their retries")


def kubelet_retrying(p: Pass, stage: str, jobs: list[ObservedJob]) -> tuple[str, str] | None:
    """A unit the kubelet killed (OOMKilled) or evicted (its scratch full) while its Job still retries it: shown before the retries run out."""
    for job in jobs:
        if job.failed == 0:
            continue
        killed = next((pod for pod in p.observed.pods_of(job.name) if pod.phase == "Failed" and pod.reason in KILLED_BY_KUBELET), None)
        if killed is not None:
            return killed.reason, f"{unit_phrase(killed)} of stage {stage}{family_phrase(job)} was {kill_note(p, stage, job, killed)}; retrying"
        evicted = next((pod for pod in p.observed.pods_of(job.name) if pod.phase == "Failed" and pod.evicted_by_kubelet), None)
        if evicted is not None:
            return Reason.EVICTED.value, f"stage {stage}{family_phrase(job)}: {evict_note(p, stage, job, evicted)}; retrying"
    return None


def create_failed(p: Pass, stage: str, jobs: list[ObservedJob]) -> tuple[str, str] | None:
    """A Job of the stage without a pod whose pods the Job controller cannot create (its FailedCreate Event), with the unit named."""
    standing = {j.name: j for j in jobs if podless(j, p.run)}
    failure = next((f for f in p.observed.create_failures if f.job in standing and pod_create_refused(f.message)), None)
    if failure is None:
        return None
    job = standing[failure.job]
    # An Indexed Job's pods are named <job>-<index>-<suffix>: the message names the unit that way.
    index = re.search(rf'pods? "{re.escape(job.name)}-(\d+)-', failure.message) if job.indexed else None
    unit = f"unit {index.group(1)}" if index else "the unit" if job.completions == 1 else "units"
    tries = f", {failure.count} tries" if failure.count > 1 else ""
    return Reason.FAILED_CREATE.value, (f"{unit} of stage {stage}{family_phrase(job)} cannot be created (Job {job.name}{tries}): "
                                        f"{failure.message}; fix {create_failure_field(failure.message, stage)}")


def refused(p: Pass) -> bool:
    """Stall on the API server's refusal of one of the run's creates (this generation's), and create
    nothing more until its back-off ends; a spec edit clears it (observe drops it)."""
    refusal = p.observed.refusal
    if refusal is None:
        return False
    stage = refusal.stage
    families = getattr(manifests.settings_of(p.spec, stage), "families", {}) if stage is not None and stage in STAGES else {}
    message = describe(refusal, per_family=bool(refusal.family and refusal.family in (families or {})))
    wait = (refusal.retry_at - p.now).total_seconds()
    if wait > 0:
        p.create.clear()
        p.upsert.clear()
        p.events = [e for e in p.events if e.reason != Reason.JOBS_CREATED.value]  # nothing was created
        p.requeue.append(wait)
    if refusal.stage in p.stages:
        p.stages[refusal.stage] = p.stages[refusal.stage].model_copy(update={"reason": Reason.CREATE_REFUSED.value, "message": message})
    stalled = p.view.status.condition(ConditionType.STALLED)
    if stalled is None or stalled.status != "True" or stalled.message != message[:MAX_MESSAGE]:  # once per refusal
        p.event("Warning", Reason.CREATE_REFUSED, message)
    p.stop("invalid", Reason.CREATE_REFUSED, message)
    return True
