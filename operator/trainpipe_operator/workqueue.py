"""A work queue of keys, as controller-runtime's rate-limited delaying queue is for Go controllers.

A key is queued once however often it is added (a burst of events folds into one pass); a key added
while it is being worked on is worked on once more afterwards, never twice at once; `add_after` wakes
a key later, the earliest wake-up winning; and a key whose work failed comes back after a back-off
that grows with each failure in a row. Knows nothing of pipelines.

Two things beyond controller-runtime's queue, both for the moment hundreds of keys arrive at once:

* An urgent add goes ahead of every other waiting key. The reconciler marks the events that can
  move a run on (a Job finished, failed or appeared) urgent; a key that only has its periodic look
  due, or is new, waits behind them. At 200 pipelines created at once, the first passes of the last
  ones were queued ahead of the hand-offs of the first ones: a stage done, the next one created up
  to 13.5 s later (the p99; BENCHMARKS.md, "Scale").
* `requeue` is a pass's own next look, which the next pass replaces: a pass decides again from
  everything it sees, so an older pass's look (10 s after it created Jobs, which a later pass saw
  start) is only an extra pass with nothing to do. Wake-ups from events (`add_after`) are not
  replaced: an event that came during a pass may be news to the pass that follows it.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
# Back-off after a failed pass (API errors, conflicts), doubling up to the cap.
ERROR_BACKOFF = (0.5, 1.0, 2.0, 5.0, 10.0, 30.0)
URGENT, ROUTINE = 0, 1  # the order waiting keys are taken in


class WorkQueue(Generic[K]):
    def __init__(self, backoff: tuple[float, ...] = ERROR_BACKOFF) -> None:
        # (priority, arrival, key); an entry whose key has since been queued more urgently or taken is skipped.
        self._queue: asyncio.PriorityQueue[tuple[int, int, K]] = asyncio.PriorityQueue()
        self._arrival = itertools.count()
        self._waiting: dict[K, int] = {}  # key -> the priority it waits at
        self._running: set[K] = set()
        self._again: dict[K, int] = {}  # keys added while running -> the priority to queue them at afterwards
        self._timers: dict[K, tuple[asyncio.TimerHandle, int]] = {}  # event wake-ups: the earliest one wins
        self._requeues: dict[K, asyncio.TimerHandle] = {}  # a pass's own next look: the latest pass's wins
        self._failures: dict[K, int] = {}
        self._backoff = backoff

    def add(self, key: K, urgent: bool = False) -> None:
        priority = URGENT if urgent else ROUTINE
        if key in self._running:
            self._again[key] = min(priority, self._again.get(key, ROUTINE))
            return
        waiting = self._waiting.get(key)
        if waiting is not None and waiting <= priority:
            return
        self._waiting[key] = priority
        self._queue.put_nowait((priority, next(self._arrival), key))

    def add_after(self, key: K, delay: float, urgent: bool = False) -> None:
        """Add `key` after `delay` seconds (deadlines, TTLs, back-off); an earlier wake-up already set wins
        (and takes this one's urgency)."""
        loop = asyncio.get_running_loop()
        when = loop.time() + delay
        priority = URGENT if urgent else ROUTINE
        current = self._timers.get(key)
        if current is not None and not current[0].cancelled() and current[0].when() <= when:
            if priority < current[1]:
                self._timers[key] = (current[0], priority)
            return
        if current is not None:
            current[0].cancel()
        self._timers[key] = (loop.call_at(when, self._fire, key), priority)

    def requeue(self, key: K, delay: float) -> None:
        """The pass of `key` that just ended wants another in `delay` seconds: replaces what an earlier pass asked."""
        loop = asyncio.get_running_loop()
        current = self._requeues.pop(key, None)
        if current is not None:
            current.cancel()
        self._requeues[key] = loop.call_at(loop.time() + delay, self._fire_requeue, key)

    def cancel_requeue(self, key: K) -> None:
        """The pass that just ended wants no later look of its own."""
        current = self._requeues.pop(key, None)
        if current is not None:
            current.cancel()

    def wakes_at(self, key: K) -> float | None:
        """The loop time `key` is due to be added at, if a wake-up is set."""
        times = [t.when() for t in (self._timers.get(key, (None, 0))[0], self._requeues.get(key)) if t is not None and not t.cancelled()]
        return min(times, default=None)

    def _fire(self, key: K) -> None:
        _, priority = self._timers.pop(key)
        self.add(key, urgent=priority == URGENT)

    def _fire_requeue(self, key: K) -> None:
        self._requeues.pop(key, None)
        self.add(key)

    async def take(self) -> K:
        while True:
            priority, _, key = await self._queue.get()
            if self._waiting.get(key) == priority:  # else a stale entry: the key went ahead at a better priority
                break
        del self._waiting[key]
        self._running.add(key)
        return key

    def done(self, key: K) -> None:
        self._running.discard(key)
        again = self._again.pop(key, None)
        if again is not None:
            self.add(key, urgent=again == URGENT)

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
