"""A pod as the operator and `trainpipe status`/`logs` read it: one frozen view parsed from the API dict.

Pure (the contract only): the operator's `decide` side reads these, and the CLI renders them. Which
container's end stands for the pod's, and when a pod waits on the scheduler or the kubelet, is
decided here once, so the operator's conditions and the CLI's page never disagree about a pod.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from trainpipe.contract.kubelet import KILLED_BY_KUBELET, KUBELET_EVICTED, cannot_start
from trainpipe.contract.names import LABEL_FAMILY, LABEL_STAGE, NO_FAMILY

# The Indexed Job's completion index of a pod: the unit a training or select pod ran.
JOB_INDEX_ANNOTATION = "batch.kubernetes.io/job-completion-index"
# The Job controller's label naming a pod's Job (the unprefixed one on clusters before 1.27).
JOB_NAME_LABELS = ("batch.kubernetes.io/job-name", "job-name")


@dataclass(frozen=True)
class ObservedPod:
    name: str
    job: str  # "" for a pod no Job made
    index: int | None
    phase: str
    exit_code: int | None = None
    message: str = ""  # the container's termination message (what the stage command wrote)
    unschedulable: str | None = None  # the scheduler's reason a Pending pod is not placed
    reason: str = ""  # the kubelet's reason the container ended (OOMKilled, Error, ...)
    waiting: str = ""  # "<reason>: <message>" of a Pending pod's container that cannot start (ErrImagePull, ...)
    stage: str = ""  # the trainpipe.io/stage label
    family: str | None = None  # the trainpipe.io/family label, None for a stage without families
    status_message: str = ""  # the pod's own status.message (an eviction, a node that went away)
    disruption: str = ""  # "<reason>: <message>" of its DisruptionTarget condition: evicted, preempted, its node taken away
    node: str = ""  # the node it was placed on ("" while unscheduled)
    ready: bool = False  # its Ready condition is True: a Running pod that is not Ready has lost its node (no stage pod has a readiness probe)
    pod_reason: str = ""  # the pod's own status.reason: "Evicted" when the kubelet stopped it (a scratch volume over its sizeLimit, node pressure)

    @property
    def evicted_by_kubelet(self) -> bool:
        """The kubelet stopped it for what it used (a volume over its sizeLimit, the node short of disk or
        memory): a failure of the unit, which its Job's retries count (no DisruptionTarget condition)."""
        return self.pod_reason == KUBELET_EVICTED and not self.disruption

    @property
    def said(self) -> str:
        """What the pod left about its end: its termination message, led by the kubelet's reason when
        the kubelet killed it (an OOMKilled container writes no message of its own)."""
        if self.reason in KILLED_BY_KUBELET:
            return self.reason + (f": {self.message}" if self.message else "")
        return self.message


def parse_pod(obj: Mapping[str, Any]) -> ObservedPod:
    meta, status = obj.get("metadata") or {}, obj.get("status") or {}
    labels = meta.get("labels") or {}
    index = (meta.get("annotations") or {}).get(JOB_INDEX_ANNOTATION)
    phase = status.get("phase") or "Pending"  # the API server sets Pending on create: a pod without a phase is that new
    term = ended(status)
    family = labels.get(LABEL_FAMILY)
    return ObservedPod(
        name=meta["name"], job=next((labels[k] for k in JOB_NAME_LABELS if labels.get(k)), ""),
        index=int(index) if index is not None and str(index).isdigit() else None, phase=phase,
        exit_code=term.get("exitCode"), message=(term.get("message") or "").strip(), reason=term.get("reason") or "",
        unschedulable=unschedulable(status) if phase == "Pending" else None,
        waiting=cannot_start(status) if phase == "Pending" else "",
        stage=labels.get(LABEL_STAGE, ""), family=None if family in (None, NO_FAMILY) else family,
        status_message=status.get("message") or "",
        disruption=disruption(status),
        node=str((obj.get("spec") or {}).get("nodeName") or ""),
        ready=any(c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or []),
        pod_reason=status.get("reason") or "",
    )


def disruption(status: Mapping[str, Any]) -> str:
    """Why the cluster is taking the pod away (its DisruptionTarget condition, True), or "": the Eviction API,
    the scheduler's preemption, a NoExecute taint, the kubelet under node pressure, the pod GC of a lost node."""
    for cond in status.get("conditions") or []:
        if cond.get("type") == "DisruptionTarget" and cond.get("status") == "True":
            reason, message = cond.get("reason") or "Disrupted", cond.get("message") or ""
            return f"{reason}: {message}" if message else reason
    return ""


def ended(status: Mapping[str, Any]) -> Mapping[str, Any]:
    """The `terminated` state that stands for the pod's end ({} when none).

    The stage command's container (the last main container that terminated, its current state before
    its last one) when it ran; else an init container that failed, since that kept the command from
    starting. An init container that succeeded says nothing of the stage: taken for the pod's end,
    a running pod would show "exit 0".
    """
    def terminated(statuses: Any) -> list[Mapping[str, Any]]:
        return [term for cs in statuses or [] if (term := (cs.get("state") or {}).get("terminated") or (cs.get("lastState") or {}).get("terminated"))]

    main = terminated(status.get("containerStatuses"))
    if main:
        return main[-1]
    failed_init = [term for term in terminated(status.get("initContainerStatuses")) if term.get("exitCode") not in (0, None)]
    return failed_init[-1] if failed_init else {}


def unschedulable(status: Mapping[str, Any]) -> str | None:
    """The scheduler's reason when the pod's PodScheduled condition is False.

    Only a Pending pod waits on the scheduler (parse_pod asks only for those): the condition stays
    False on a pod that ended before it was placed (its Job's deadline, a deletion), which waits for
    nothing any more."""
    for cond in status.get("conditions") or []:
        if cond.get("type") == "PodScheduled" and cond.get("status") == "False":
            return str(cond.get("message") or cond.get("reason") or "not scheduled")
    return None
