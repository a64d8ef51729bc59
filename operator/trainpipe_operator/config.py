"""Settings of one operator process (flags and environment), passed to `decide` as plain data."""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_ARTIFACTS_SIZE = "10Gi"


@dataclass(frozen=True)
class OperatorConfig:
    cpu_image: str | None = None  # default image of rank/select/plan/cpu/report Jobs
    gpu_image: str | None = None  # default image of GPU Jobs; none and none in the spec = GPU work is an error
    artifacts_size: str = DEFAULT_ARTIFACTS_SIZE
    resync_seconds: float = 30.0
