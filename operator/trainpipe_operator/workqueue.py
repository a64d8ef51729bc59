"""A work queue of keys, as controller-runtime's rate-limited delaying queue is for Go controllers.

A key is queued once however often it is added (a burst of events folds into one pass); a key added
while it is being worked on is worked on once more afterwards, never twice at once; `add_after` wakes
a key later, the earliest wake-up winning; and a key whose work failed comes back after a back-off
that grows with each failure in a row. Knows nothing of pipelines.

One thing beyond controller-runtime's queue: `requeue` is a pass's own next look, which the next
pass replaces. A pass decides again from everything it sees, so an older pass's look (10 s after it
created Jobs, which a later pass saw start) is only an extra pass with nothing to do. Wake-ups from
events (`add_after`) are not replaced: an event that came during a pass may be news to the pass that
follows it.

Keys are taken first come, first served. Serving the passes that hand a stage on ahead of the first
passes of pipelines created after them was tried: at 50 pipelines created at once it made the last
pipelines start later and finish 3-4 s later (BENCHMARKS.md, "Scale").
"""

from __future__ import annotations

import asyncio
from collections.abc import Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
# Back-off after a failed pass (API errors, conflicts), doubling up to the cap.
ERROR_BACKOFF = (0.5, 1.0, 2.0, 5.0, 10.0, 30.0)


class WorkQueue(Generic[K]):
    def __init__(self, backoff: tuple[float, ...] = ERROR_BACKOFF) -> None:
        self._queue: asyncio.Queue[K] = asyncio.Queue()
        self._waiting: set[K] = set()
        self._running: set[K] = set()
        self._again: set[K] = set()
        self._timers: dict[K, asyncio.TimerHandle] = {}  # event wake-ups: the earliest one wins
        self._requeues: dict[K, asyncio.TimerHandle] = {}  # a pass's own next look: the latest pass's wins
        self._failures: dict[K, int] = {}
        self._backoff = backoff

    def add(self, key: K) -> None:
        if key in self._running:
            self._again.add(key)
        elif key not in self._waiting:
            self._waiting.add(key)
            self._queue.put_nowait(key)

    def add_after(self, key: K, delay: float) -> None:
        """Add `key` after `delay` seconds (deadlines, TTLs, back-off); an earlier wake-up already set wins."""
        loop = asyncio.get_running_loop()
        when = loop.time() + delay
        current = self._timers.get(key)
        if current is not None and not current.cancelled() and current.when() <= when:
            return
        if current is not None:
            current.cancel()
        self._timers[key] = loop.call_at(when, self._fire, key)

    def requeue(self, key: K, delay: float) -> None:
        """The pass of `key` that just ended wants another in `delay` seconds: replaces what an earlier pass asked."""
        loop = asyncio.get_running_loop()
        self.cancel_requeue(key)
        self._requeues[key] = loop.call_at(loop.time() + delay, self._fire_requeue, key)

    def cancel_requeue(self, key: K) -> None:
        """The pass that just ended wants no later look of its own."""
        current = self._requeues.pop(key, None)
        if current is not None:
            current.cancel()

    def wakes_at(self, key: K) -> float | None:
        """The loop time `key` is due to be added at, if a wake-up is set."""
        times = [t.when() for t in (self._timers.get(key), self._requeues.get(key)) if t is not None and not t.cancelled()]
        return min(times, default=None)

    def _fire(self, key: K) -> None:
        self._timers.pop(key, None)
        self.add(key)

    def _fire_requeue(self, key: K) -> None:
        self._requeues.pop(key, None)
        self.add(key)

    async def take(self) -> K:
        key = await self._queue.get()
        self._waiting.discard(key)
        self._running.add(key)
        return key

    def done(self, key: K) -> None:
        self._running.discard(key)
        if key in self._again:
            self._again.discard(key)
            self.add(key)

    def failed(self, key: K) -> float:
        """Count a failure of `key`'s work; the back-off before it is tried again."""
        n = self._failures.get(key, 0)
        self._failures[key] = n + 1
        return self._backoff[min(n, len(self._backoff) - 1)]

    def forget(self, key: K) -> None:
        """`key`'s work succeeded: its next failure starts the back-off afresh."""
        self._failures.pop(key, None)

    def __len__(self) -> int:
        return len(self._waiting)
