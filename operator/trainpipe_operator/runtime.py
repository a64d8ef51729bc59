"""The reconcile loop: worker tasks taking pipeline keys from the work queue (workqueue.py), one pass
each (observe → decide → act), and a periodic resync.

Events only say "look at pipeline X again"; the queue folds a burst of them into one pass and never
runs two passes of one pipeline at once; the blocking Kubernetes client runs in threads so the event
loop that kopf's watches live on never stalls. How often a status may carry only new counts is the
pacing's (pacing.py).
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
from trainpipe.kube.client import Kube, pipelines_path
from trainpipe_operator.act import StatusConflict, act, post_event
from trainpipe_operator.cache import Change, ChildCache
from trainpipe_operator.config import OperatorConfig
from trainpipe_operator.decide import decide
from trainpipe_operator.health import WatchHealth
from trainpipe_operator.metrics import Metrics
from trainpipe_operator.observe import observe, read_pipeline
from trainpipe_operator.pacing import StatusPacing
from trainpipe_operator.workqueue import WorkQueue

log = logging.getLogger("trainpipe.operator")
Key = tuple[str, str]


@dataclass
class Reconciler:
    """Take a pipeline's key from the queue, observe, decide, act, and requeue it when the decision or
    the status pacing asks; the queue, the cache and the pacing are machinery of their own."""

    kube: Kube
    config: OperatorConfig
    metrics: Metrics
    health: WatchHealth
    namespaces: tuple[str, ...] = ()
    workers: int = 4
    # A watch event's pass waits this long, so the burst a Job's pods make (each start and finish
    # changes the Job) folds into one pass instead of one pass per event.
    batch_seconds: float = 0.25
    pacing: StatusPacing = field(default_factory=StatusPacing)
    queue: WorkQueue[Key] = field(default_factory=WorkQueue)
    cache: ChildCache = field(default_factory=ChildCache)
    _passed: dict[Key, float] = field(default_factory=dict)  # monotonic start of each pipeline's last pass
    # Events are posted by one thread of their own, in order: a pass never waits on them, and a
    # lost Event is only logged (post_event), so nothing a pass decides depends on them.
    _events: ThreadPoolExecutor = field(default_factory=lambda: ThreadPoolExecutor(max_workers=1, thread_name_prefix="events"))
    resynced: asyncio.Event = field(default_factory=asyncio.Event)
    logged_in: asyncio.Event = field(default_factory=asyncio.Event)  # kopf's watches have credentials
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)

    def notify(self, key: Key) -> None:
        """A watch event about `key`: a pass within `batch_seconds`, one for all the events until then."""
        if self.batch_seconds > 0:
            self.queue.add_after(key, self.batch_seconds)
        else:
            self.queue.add(key)

    def changed(self, key: Key, change: Change) -> None:
        """A watch event's `change` to what `key`'s pass reads: none needs no pass; a Job's running
        counts wait until the status may take them (the pacing's hold after its last write), since
        the pass would hold them until then anyway, and at hundreds of pipelines those events would
        be most of the passes, queued ahead of the passes that start the next stage."""
        if change is Change.STATE:
            self.notify(key)
        elif change is Change.COUNTS:
            self.queue.add_after(key, max(self.batch_seconds, self.pacing.hold() - self.pacing.since_written(key)))

    def reconcile_once(self, key: Key) -> float | None:
        """One observe → decide → act pass (blocking; runs in a worker thread). Returns when to look again."""
        started = time.perf_counter()
        self._passed[key] = time.monotonic()
        self.metrics.reconcile_passes.labels(read="cache" if self.cache.fresh(key) else "api").inc()
        try:
            found = read_pipeline(self.kube, self.cache, key)
            if found is None:
                self.metrics.record_status(key, None)
                self.pacing.forget(key)
                self._passed.pop(key, None)
                return None
            obj, view = found
            now = self.clock()
            current = view.current_run(now)  # once, so that observe and decide agree on the run (a scheduled run's slot)
            observed = observe(self.kube, self.cache, view, now, current)
            decision = decide(view, observed, self.config, now, current)
            since, hold = self.pacing.since_written(key), self.pacing.hold()
            held = act(self.kube, obj, view, decision, self.metrics, self.cache, hold_progress=since < hold,
                       post=lambda *event: self._events.submit(post_event, *event))
            again = [t for t in (decision.requeue_after, observed.recheck_after, hold - since if held else None) if t is not None]
            reconciling = decision.status.condition(ConditionType.RECONCILING)
            self.pacing.passed(key, running=reconciling is not None and reconciling.status == "True",
                               wrote=not held and decision.status != view.status)
            if not held:
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
                self.queue.forget(key)
                if again is not None:
                    self.queue.add_after(key, max(0.1, again))
            except StatusConflict:
                self.cache.unprime(key)
                self.queue.add(key)  # another writer changed status under us: recompute from a fresh read now
            except Exception as exc:  # noqa: BLE001 — any API or transport error: retry the key with back-off
                delay = self.queue.failed(key)
                self.metrics.reconcile_errors.inc()
                self.cache.unprime(key)  # whatever went wrong, the next pass reads the API server in full
                log.warning("%s/%s: reconcile failed (%s); retrying in %.1fs", *key, exc, delay)
                self.queue.add_after(key, delay)
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
                        self.queue.add(key)
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
