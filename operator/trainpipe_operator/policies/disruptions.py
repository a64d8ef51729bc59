"""Units the cluster took away (evicted, preempted, lost with their node): counted per unit, capped per unit.

The Jobs' podFailurePolicy ignores a pod with a DisruptionTarget condition, so such a pod never uses up
its unit's retries; without a bound, a unit on a node that keeps being drained would run forever. The
Job cannot count these (it ignores them), and an evicted pod is deleted soon after, so each pass adds
the disrupted pods it sees to the stage's status (`StageStatus.evictions`), which outlives them. A pod
that came and went between two passes goes uncounted: the cap is a bound on what was seen.
"""

from __future__ import annotations

from collections.abc import Iterable

from trainpipe.contract.status import Reason, StageStatus
from trainpipe.kube.pods import ObservedPod
from trainpipe_operator import manifests
from trainpipe_operator.observed import ObservedJob
from trainpipe_operator.policies.passes import FAILED, Pass
from trainpipe_operator.policies.status import seconds_between


def unit_key(pod: ObservedPod) -> str:
    """`<Job>/<index>` of an Indexed Job's pod, `<Job>` of another: the Job's name carries its attempt."""
    return pod.job if pod.index is None else f"{pod.job}/{pod.index}"


def record_evictions(seen: dict[str, list[str]], pods: Iterable[ObservedPod], cap: int) -> dict[str, list[str]]:
    """`seen` with the disrupted pods among `pods` added, once each, at most `cap` + 1 per unit (one past the cap
    is all the decision needs; the list stays small in status)."""
    out = {key: list(names) for key, names in seen.items()}
    for pod in pods:
        if not pod.disruption or not pod.job:
            continue
        names = out.setdefault(unit_key(pod), [])
        if pod.name not in names and len(names) <= cap:
            names.append(pod.name)
    return out


def over_cap(evictions: dict[str, list[str]], cap: int) -> tuple[str, list[str]] | None:
    """The first unit (by key) evicted more than `cap` times, with its pods; None when none was."""
    return next(((key, names) for key, names in sorted(evictions.items()) if len(names) > cap), None)


def count_evictions(p: Pass, stage: str, current: StageStatus, jobs: list[ObservedJob]) -> StageStatus:
    """`current` with the disrupted pods of the stage's `jobs` counted in."""
    cap = manifests.settings_of(p.spec, stage).max_evictions_per_unit
    pods = [pod for job in jobs for pod in p.observed.pods_of(job.name)]
    return current.model_copy(update={"evictions": record_evictions(current.evictions, pods, cap)})


def evicted_too_often(p: Pass, stage: str, current: StageStatus, jobs: list[ObservedJob]) -> bool:
    """Past the stage's maxEvictionsPerUnit for one unit: fail the stage, naming the unit and its pods, and stop its Jobs."""
    cap = manifests.settings_of(p.spec, stage).max_evictions_per_unit
    found = over_cap(current.evictions, cap)
    if found is None:
        return False
    key, names = found
    job_name, _, index = key.partition("/")
    job = next((j for j in jobs if j.name == job_name), None)
    unit = f"unit {index}" if index else "the unit"
    family = f", family {job.family}" if job is not None and job.family else ""
    last = next((pod.disruption for j in jobs for pod in p.observed.pods_of(j.name) if pod.name == names[-1] and pod.disruption), "")
    message = (f"{unit} of stage {stage}{family} was taken away {len(names)} times (pods {', '.join(names)}"
               f"{'; last: ' + last if last else ''}), more than stages.{stage}.maxEvictionsPerUnit={cap}; its Jobs were stopped. "
               "Its nodes keep being drained, preempted or lost: check them (kubectl get events) and the pipeline's priorityClassName, "
               "then retry the run (trainpipe.io/retry)")
    p.stages[stage] = current.model_copy(update={"outcome": FAILED, "reason": Reason.EVICTED_TOO_OFTEN.value, "finished_at": p.stamp,
                                                 "message": message, "active": 0})
    p.delete.extend(j.name for j in jobs if not j.deleting)
    p.finished.append((stage, FAILED, seconds_between(current.started_at, p.stamp), len(jobs)))
    p.event("Warning", Reason.EVICTED_TOO_OFTEN, message)
    p.stop("failed", Reason.EVICTED_TOO_OFTEN, message)
    return True
