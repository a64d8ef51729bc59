"""The kubelet's words that the operator and `trainpipe status` both read from a pod's container statuses.

A container waiting for any other reason than a normal start cannot start (ErrImagePull,
ImagePullBackOff, CreateContainerConfigError, ...); a container the kubelet ended for one of
KILLED_BY_KUBELET died of its limits, not of the stage command's own failure.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

STARTING_REASONS = frozenset({"ContainerCreating", "PodInitializing"})
KILLED_BY_KUBELET = frozenset({"OOMKilled"})
# A pod's status.reason when the kubelet's eviction manager stopped it: an emptyDir over its sizeLimit,
# ephemeral storage over its limit, or the node short of memory or disk.
KUBELET_EVICTED = "Evicted"


def cannot_start(status: Mapping[str, Any]) -> str:
    """`<reason>: <message>` of the first container of a pod's status (init containers first) that the
    kubelet cannot start (ErrImagePull, ImagePullBackOff, ...); "" when every one starts or runs."""
    for cs in list(status.get("initContainerStatuses") or []) + list(status.get("containerStatuses") or []):
        wait = (cs.get("state") or {}).get("waiting") or {}
        if wait.get("reason") and wait["reason"] not in STARTING_REASONS:
            return f"{wait['reason']}: {wait.get('message') or ''}".strip(": ")
    return ""
