"""The kubelet's words that the operator and `trainpipe status` both read from a pod's container statuses.

A container waiting for any other reason than a normal start cannot start (ErrImagePull,
ImagePullBackOff, CreateContainerConfigError, ...); a container the kubelet ended for one of
KILLED_BY_KUBELET died of its limits, not of the stage command's own failure.
"""

from __future__ import annotations

STARTING_REASONS = frozenset({"ContainerCreating", "PodInitializing"})
KILLED_BY_KUBELET = frozenset({"OOMKilled"})
