"""How a stage command stops when its pod is deleted or evicted; used by the CLI and the training worker.

The kubelet sends SIGTERM and, after the pod's grace period, SIGKILL. Python's default for SIGTERM
kills the process where it stands, so `finally` blocks never run: an atomic write's temp file stays
beside its destination and the worker subprocess of a training unit is orphaned. Here SIGTERM raises
`Terminated` in the main thread instead, which unwinds like an exception: temp files are removed,
children are stopped, and the command exits with 143 (128 + SIGTERM, what a shell reports).
`Terminated` derives from BaseException so that `except Exception` in a stage never swallows it.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

EXIT_TERMINATED = 128 + signal.SIGTERM


class Terminated(BaseException):
    """SIGTERM arrived: the pod is going away; unwind and exit with EXIT_TERMINATED."""


def _raise(signum: int, _frame: FrameType | None) -> None:
    raise Terminated(f"received {signal.Signals(signum).name}: the pod was deleted or evicted")


@contextmanager
def sigterm_raises() -> Iterator[None]:
    """Within the block, SIGTERM raises Terminated in the main thread; the previous handler comes back after."""
    previous = signal.signal(signal.SIGTERM, _raise)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
