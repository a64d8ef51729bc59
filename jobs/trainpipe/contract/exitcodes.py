"""Exit codes of every `trainpipe` stage command: what a pod's exit status tells the operator (and a podFailurePolicy).

Codes 2–9 mean the same command would fail again on the same inputs, so a Job fails at once instead of
burning its retries; 1 (a unit's own failure), 143 (SIGTERM: the pod was deleted or evicted) and the
kernel's kills (OOM kill 137) are retried.
"""

from __future__ import annotations

from enum import IntEnum
from typing import ClassVar


class ExitCode(IntEnum):
    OK = 0
    UNIT_FAILED = 1  # the work itself failed (a model raised, a worker died): retried within the Job's backoff
    INVALID_SPEC = 2  # flags or manifest do not make a valid spec (argparse uses 2 as well)
    BAD_DATA = 3  # a data file is missing, unreadable or malformed; the message names file and column
    MISSING_INPUT = 4  # an upstream stage's artefacts are not on the volume (run that stage first)
    GATE_CLOSED = 5  # the GPU stage was asked to start while CPU units of the plan are not done
    STALE_PLAN = 6  # the plan on the volume is not the one this pod was created for (digest or run differs)
    EMPTY_PLAN = 7  # routing left nothing to train and the spec does not allow an empty plan
    NO_SPACE = 8  # the volume is full or over quota: the same write fails until space is freed
    FOLDER_OWNED = 9  # the pipeline folder's owner record names another pipeline (namespace, name or UID): nothing is written there
    TERMINATED = 143  # SIGTERM (128 + 15): the pod was deleted or evicted mid-work; nothing half-written is left

    @property
    def retriable(self) -> bool:
        return self in (ExitCode.UNIT_FAILED, ExitCode.TERMINATED)


# Exit codes a Job's podFailurePolicy turns into "fail now" (FailJob / FailIndex) instead of a retry.
PERMANENT_EXIT_CODES: tuple[int, ...] = tuple(int(c) for c in ExitCode if c is not ExitCode.OK and not c.retriable)


class CommandFailure(Exception):
    """Mixed into every failure a stage command knows, with the code it exits with (what the operator's
    podFailurePolicy reads). Any other exception is a bug: it keeps its traceback and exits 1."""

    exit_code: ClassVar[ExitCode]
