"""How many CPUs this process may use, for every thread count the jobs set; called by the runner and the training stages.

In a pod, `os.cpu_count()` is the node's core count, not the container's share: a pod limited to 2 CPUs
on a 64-core node would start 64 OpenMP threads and be throttled to a crawl. The operator passes the
container's CPU limit as TRAINPIPE_CPUS (downward API `limits.cpu`, divisor 1: the kubelet rounds it up
to whole CPUs, and sets the node's allocatable CPUs when the container has no limit).
"""

from __future__ import annotations

import os

from trainpipe.contract.exitcodes import CommandFailure, ExitCode
from trainpipe.contract.names import CPUS_ENV


class CpuSettingError(ValueError, CommandFailure):
    """TRAINPIPE_CPUS is set to something that is not a whole number."""

    exit_code = ExitCode.INVALID_SPEC


def cpus_from(env_value: str | None, cpu_count: int | None, affinity: int | None) -> int:
    """CPUs to use: the TRAINPIPE_CPUS value when it is ≥ 1, else the machine's count; never more than the affinity mask allows.

    A value below 1 counts as unset: the kubelet writes 0 for a zero limit, which means "no share", not "no CPUs".
    """
    chosen = cpu_count or 1
    if env_value is not None and env_value.strip():
        try:
            value = int(env_value.strip())
        except ValueError:
            raise CpuSettingError(f"{CPUS_ENV}={env_value!r} is not a whole number of CPUs; set an integer ≥ 1 or unset it") from None
        if value >= 1:
            chosen = value
    if affinity is not None and affinity >= 1:
        # taskset/cpuset pinning: threads beyond the allowed cores only contend with each other.
        chosen = min(chosen, affinity)
    return max(1, chosen)


def available_cpus() -> int:
    """`cpus_from` for this process: TRAINPIPE_CPUS, `os.cpu_count()` and `os.sched_getaffinity` where the OS has it."""
    try:
        affinity: int | None = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # macOS and Windows have no affinity call
        affinity = None
    return cpus_from(os.environ.get(CPUS_ENV), os.cpu_count(), affinity)
