"""The reconcile loop: a de-duplicating work queue of pipeline keys, worker tasks, resync and requeue timers.

Events only say "look at pipeline X again"; the queue folds a burst of them into one pass, never runs
two passes of one pipeline at once, and runs the blocking Kubernetes client in threads so the event
loop that kopf's watches live on never stalls.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime

from trainpipe.contract.names import API_GROUP, API_VERSION, KIND
from trainpipe.contract.status import ConditionType
from trainpipe_operator.act import StatusConflict, act, post_event
from trainpipe_operator.cache import Change, ChildCache
from trainpipe_operator.config import OperatorConfig
from trainpipe_operator.decide import decide
from trainpipe_operator.health import WatchHealth
from trainpipe_operator.kubeapi import Kube, pipelines_path
from trainpipe_operator.metrics import Metrics
from trainpipe_operator.observe import observe, read_pipeline

log = logging.getLogger("trainpipe.operator")
Key = tuple[str, str]
# Back-off after a failed pass (API errors, conflicts), doubling up to the cap.
ERROR_BACKOFF = (0.5, 1.0, 2.0, 5.0, 10.0, 30.0)


@dataclass
class ReconcileQueue:
    """Keys waiting for a pass; a key queued while its pass runs is run once more afterwards."""

    _queue: asyncio.Queue[Key] = field(default_factory=asyncio.Queue)
    _waiting: set[Key] = field(default_factory=set)
    _running: set[Key] = field(default_factory=set)
    _again: set[Key] = field(default_factory=set)

    def add(self, key: Key) -> None:
        if key in self._running:
            self._again.add(key)
        elif key not in self._waiting:
            self._waiting.add(key)
            self._queue.put_nowait(key)

    async def take(self) -> Key:
        key = await self._queue.get()
        self._waiting.discard(key)
        self._running.add(key)
        return key

    def done(self, key: Key) -> None:
        self._running.discard(key)
        if key in self._again:
            self._again.discard(key)
            self.add(key)

    def __len__(self) -> int:
        return len(self._waiting)


def progress_hold(running: int, floor: float, rate: float) -> float:
    """Seconds a pipeline's status holds back a change of running counts: `floor`, or longer when
    `running` pipelines at that pace would write more than `rate` such updates a second in all.

    A status write is the API server's dearest request from this operator (its schema, fields and
    watchers); with hundreds running, a fixed floor leaves count updates a large share of all writes. A
    stage starting, ending or failing is never held, so this only makes counts older, not hand-offs.
    """
    return max(floor, running / rate) if rate > 0 else floor


@dataclass
class Reconciler:
    kube: Kube
    config: OperatorConfig
    metrics: Metrics
    health: WatchHealth
    namespaces: tuple[str, ...] = ()
    workers: int = 4
    # A status that only moves running counts waits this long after the pipeline's last status write,
    # or longer at more than progress_rate × progress_seconds running pipelines (`progress_hold`).
    progress_seconds: float = 10.0
    progress_rate: float = 1.0
    # A watch event's pass waits this long, so the burst a Job's pods make (each start and finish
    # changes the Job) folds into one pass instead of one pass per event.
    batch_seconds: float = 0.25
    queue: ReconcileQueue = field(default_factory=ReconcileQueue)
    cache: ChildCache = field(default_factory=ChildCache)
    _failures: dict[Key, int] = field(default_factory=dict)
    _timers: dict[Key, asyncio.TimerHandle] = field(default_factory=dict)
    _status_written: dict[Key, float] = field(default_factory=dict)  # monotonic time of each pipeline's last status write
    _running: set[Key] = field(default_factory=set)  # pipelines whose last pass left a run in progress
    _passed: dict[Key, float] = field(default_factory=dict)  # monotonic start of each pipeline's last pass
    # Events are posted by one thread of their own, in order: a pass never waits on them, and a
    # lost Event is only logged (post_event), so nothing a pass decides depends on them.
    _events: ThreadPoolExecutor = field(default_factory=lambda: ThreadPoolExecutor(max_workers=1, thread_name_prefix="events"))
    resynced: asyncio.Event = field(default_factory=asyncio.Event)
    logged_in: asyncio.Event = field(default_factory=asyncio.Event)  # kopf's watches have credentials
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)

    def enqueue(self, key: Key) -> None:
        self.queue.add(key)

    def notify(self, key: Key) -> None:
        """A watch event about `key`: a pass within `batch_seconds`, one for all the events until then."""
        if self.batch_seconds > 0:
            self.later(key, self.batch_seconds)
        else:
            self.enqueue(key)

    def changed(self, key: Key, change: Change) -> None:
        """A watch event's `change` to what `key`'s pass reads: none needs no pass; a Job's running
        counts wait until the status may take them (`hold()` after its last write), since
        the pass would hold them until then anyway. At hundreds of pipelines those events were most
        of the passes, and the queue they made delayed the passes that start the next stage."""
        if change is Change.STATE:
            self.notify(key)
        elif change is Change.COUNTS:
            self.later(key, max(self.batch_seconds, self.hold() - self._since_status(key)))

    def hold(self) -> float:
        return progress_hold(len(self._running), self.progress_seconds, self.progress_rate)

    def _since_status(self, key: Key) -> float:
        """Seconds since the operator last wrote `key`'s status (infinite when it never has)."""
        return time.monotonic() - self._status_written.get(key, float("-inf"))

    def later(self, key: Key, delay: float) -> None:
        """Look at `key` again after `delay` seconds (deadlines, TTLs, back-off); the earliest wins."""
        loop = asyncio.get_running_loop()
        when = loop.time() + delay
        current = self._timers.get(key)
        if current is not None and not current.cancelled() and current.when() <= when:
            return
        if current is not None:
            current.cancel()
        self._timers[key] = loop.call_at(when, self._fire, key)

    def _fire(self, key: Key) -> None:
        self._timers.pop(key, None)
        self.enqueue(key)

    def reconcile_once(self, key: Key) -> float | None:
        """One observe → decide → act pass (blocking; runs in a worker thread). Returns when to look again."""
        started = time.perf_counter()
        self._passed[key] = time.monotonic()
        self.metrics.reconcile_passes.labels(read="cache" if self.cache.fresh(key) else "api").inc()
        try:
            found = read_pipeline(self.kube, self.cache, key)
            if found is None:
                self.metrics.record_status(key, None)
                self._status_written.pop(key, None)
                self._running.discard(key)
                self._passed.pop(key, None)
                return None
            obj, view = found
            now = self.clock()
            current = view.current_run(now)  # once, so that observe and decide agree on the run (a scheduled run's slot)
            observed = observe(self.kube, self.cache, view, now, current)
            decision = decide(view, observed, self.config, now, current)
            since, hold = self._since_status(key), self.hold()
            held = act(self.kube, obj, view, decision, self.metrics, self.cache, hold_progress=since < hold,
                       post=lambda *event: self._events.submit(post_event, *event))
            again = [t for t in (decision.requeue_after, observed.recheck_after, hold - since if held else None) if t is not None]
            reconciling = decision.status.condition(ConditionType.RECONCILING)
            if reconciling is not None and reconciling.status == "True":
                self._running.add(key)
            else:
                self._running.discard(key)
            if not held:
                if decision.status != view.status:
                    self._status_written[key] = time.monotonic()
                self.metrics.record_status(key, decision.status)
            return min(again) if again else None
        finally:
            self.metrics.reconcile_seconds.observe(time.perf_counter() - started)

    async def work(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            key = await self.queue.take()
            try:
                again = await loop.run_in_executor(None, self.reconcile_once, key)
                self._failures.pop(key, None)
                if again is not None:
                    self.later(key, max(0.1, again))
            except StatusConflict:
                self.cache.unprime(key)
                self.enqueue(key)  # another writer changed status under us: recompute from a fresh read now
            except Exception as exc:  # noqa: BLE001 — any API or transport error: retry the key with back-off
                n = self._failures.get(key, 0)
                self._failures[key] = n + 1
                delay = ERROR_BACKOFF[min(n, len(ERROR_BACKOFF) - 1)]
                self.metrics.reconcile_errors.inc()
                self.cache.unprime(key)  # whatever went wrong, the next pass reads the API server in full
                log.warning("%s/%s: reconcile failed (%s); retrying in %.1fs", *key, exc, delay)
                self.later(key, delay)
            finally:
                self.queue.done(key)

    def list_pipelines(self) -> tuple[dict[Key, str], set[Key]]:
        """Every pipeline the operator serves with its resourceVersion, and those the LIST showed a
        version of that no watch event had brought (blocking)."""
        out: dict[Key, str] = {}
        missed: set[Key] = set()
        for ns in self.namespaces or (None,):
            for item in self.kube.get(pipelines_path(ns))["items"]:
                meta = item["metadata"]
                key = (meta["namespace"], meta["name"])
                out[key] = meta.get("resourceVersion", "")
                # A LIST's items carry no kind; the cached object is also the body of the next status PUT.
                if self.cache.put_pipeline({"apiVersion": f"{API_GROUP}/{API_VERSION}", "kind": KIND, **item}):  # makes good a missed event
                    missed.add(key)
        return out, missed

    async def resync(self, period: float) -> None:
        """Level-triggered safety net: every pipeline is looked at at least every `period` seconds, events or not."""
        loop = asyncio.get_running_loop()
        while True:
            try:
                versions, missed = await loop.run_in_executor(None, self.list_pipelines)
                self.health.listed(versions, loop.time())
                self.metrics.watch_stalled.set(1 if self.health.stalled(loop.time()) else 0)
                now = time.monotonic()
                for key in versions:
                    # A pipeline with a pass this period already was looked at; passing it again
                    # only adds to the queue the busy pipelines wait in.
                    if key in missed or now - self._passed.get(key, float("-inf")) >= period:
                        self.enqueue(key)
                self.resynced.set()
            except Exception as exc:  # noqa: BLE001 — the next period tries again; liveness reports a lasting failure
                log.warning("resync failed: %s", exc)
            await asyncio.sleep(period)

    async def run(self, period: float) -> None:
        tasks = [asyncio.create_task(self.work(), name=f"reconcile-{i}") for i in range(self.workers)]
        tasks.append(asyncio.create_task(self.resync(period), name="resync"))
        try:
            await asyncio.gather(*tasks)
        finally:
            for task in tasks:
                task.cancel()
            self._events.shutdown(wait=False, cancel_futures=True)  # Events still queued at exit are not worth waiting for
