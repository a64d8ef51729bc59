"""How often a pipeline's status may be written when only its running counts moved.

A status write is the API server's dearest request from this operator (its schema, fields and
watchers); with hundreds of pipelines running, count updates would be most of them. A stage starting,
ending or failing is never held, so pacing only makes counts older, never hand-offs.
"""

from __future__ import annotations

import time
from collections.abc import Hashable
from dataclasses import dataclass, field


def progress_hold(running: int, floor: float, rate: float) -> float:
    """Seconds a pipeline's status holds back a change of running counts: `floor`, or longer when
    `running` pipelines at that pace would write more than `rate` such updates a second in all."""
    return max(floor, running / rate) if rate > 0 else floor


@dataclass
class StatusPacing:
    floor: float = 10.0  # seconds after a pipeline's last status write before counts alone may be written
    rate: float = 1.0  # count-only writes a second across all running pipelines, at most
    _written: dict[Hashable, float] = field(default_factory=dict)  # monotonic time of each pipeline's last status write
    _running: set[Hashable] = field(default_factory=set)  # pipelines whose last pass left a run in progress

    def hold(self) -> float:
        return progress_hold(len(self._running), self.floor, self.rate)

    def hold_left(self, key: Hashable) -> float:
        """Seconds until `key`'s status may take a change of running counts alone (≤ 0: now)."""
        return self.hold() - (time.monotonic() - self._written.get(key, float("-inf")))

    def passed(self, key: Hashable, *, running: bool, wrote: bool) -> None:
        """What a pass of `key` left: a run in progress or not, and whether it wrote the status."""
        if running:
            self._running.add(key)
        else:
            self._running.discard(key)
        if wrote:
            self._written[key] = time.monotonic()

    def forget(self, key: Hashable) -> None:
        self._written.pop(key, None)
        self._running.discard(key)
