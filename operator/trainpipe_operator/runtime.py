"""The reconcile loop: worker tasks taking pipeline keys from the work queue (workqueue.py), one pass
each (observe → decide → act), and requeueing them; the periodic resync (resync.py) runs beside them.

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

from trainpipe.contract.status import ConditionType
from trainpipe.kube.client import Kube
from trainpipe_operator.act import CreateRefused, StatusConflict, act, post_event
from trainpipe_operator.cache import ChildCache, Key
from trainpipe_operator.config import OperatorConfig
from trainpipe_operator.decide import decide
from trainpipe_operator.health import WatchHealth
from trainpipe_operator.metrics import Metrics
from trainpipe_operator.observe import observe, read_pipeline
from trainpipe_operator.observed import CREATE_GRACE_SECONDS
from trainpipe_operator.pacing import StatusPacing
from trainpipe_operator.refusals import describe, refusal_of
from trainpipe_operator.resync import Resync
from trainpipe_operator.wakeups import Wakeups
from trainpipe_operator.workqueue import WorkQueue

log = logging.getLogger("trainpipe.operator")


@dataclass
class Reconciler:
    """Take a pipeline's key from the queue, observe, decide, act, and requeue it when the decision or
    the status pacing asks; the queue, the store (cache), the pacing, the wake-ups and the resync are
    machinery of their own."""

    kube: Kube
    config: OperatorConfig
    metrics: Metrics
    health: WatchHealth
    namespaces: tuple[str, ...] = ()
    workers: int = 4
    batch_seconds: float = 0.25  # how long a watch event's pass waits for the events after it (Wakeups)
    pacing: StatusPacing = field(default_factory=StatusPacing)
    queue: WorkQueue[Key] = field(default_factory=WorkQueue)
    cache: ChildCache = field(default_factory=ChildCache)
    # Events are posted by one thread of their own, in order: a pass never waits on them, and a
    # lost Event is only logged (post_event), so nothing a pass decides depends on them.
    _events: ThreadPoolExecutor = field(default_factory=lambda: ThreadPoolExecutor(max_workers=1, thread_name_prefix="events"))
    logged_in: asyncio.Event = field(default_factory=asyncio.Event)  # kopf's watches have credentials
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)
    resync: Resync = field(init=False)
    wakeups: Wakeups = field(init=False)

    def __post_init__(self) -> None:
        self.resync = Resync(self.kube, self.cache, self.queue, self.health, self.metrics, self.namespaces)
        self.wakeups = Wakeups(self.queue, self.pacing, self.batch_seconds)

    def reconcile_once(self, key: Key) -> float | None:
        """One observe → decide → act pass (blocking; runs in a worker thread). Returns when to look again."""
        started = time.perf_counter()
        self.resync.passing(key)
        self.metrics.reconcile_passes.labels(read="cache" if self.cache.fresh(key) else "api").inc()
        try:
            found = read_pipeline(self.kube, self.cache, key)
            if found is None:
                self.metrics.record_status(key, None)
                self.pacing.forget(key)
                self.resync.forget(key)
                return None
            obj, view = found
            now = self.clock()
            current = view.current_run(now)  # once, so that observe and decide agree on the run (a scheduled run's slot)
            observed = observe(self.kube, self.cache, view, now, current)
            decision = decide(view, observed, self.config, now, current)
            wait = self.pacing.hold_left(key)
            try:
                held = act(self.kube, obj, view, decision, self.metrics, self.cache, hold_progress=wait > 0,
                           post=lambda *event: self._events.submit(post_event, *event))
            except CreateRefused as refused:
                self.refused(key, view.generation, refused, now)
                return 0.0  # the next pass Stalls the pipeline with the API server's words
            reconciling = decision.status.condition(ConditionType.RECONCILING)
            self.pacing.passed(key, running=reconciling is not None and reconciling.status == "True",
                               wrote=not held and decision.status != view.status)
            if not held:
                self.metrics.record_status(key, decision.status)
            # A Job whose pods are refused never changes, so no watch event would bring the pass that reads why
            # (observe's FailedCreate read): a pass that created Jobs comes back once they have stood that long.
            created = CREATE_GRACE_SECONDS if any(m["kind"] == "Job" for m in decision.create) else None
            return min((t for t in (decision.requeue_after, observed.recheck_after, wait if held else None, created) if t is not None), default=None)
        finally:
            self.metrics.reconcile_seconds.observe(time.perf_counter() - started)

    def refused(self, key: Key, generation: int, refused: CreateRefused, now: datetime) -> None:
        """Remember a refused create for the pipeline's generation and run; counted, logged once per try."""
        err = refused.error
        refusal = refusal_of(refused.manifest, err.status, err.reason, err.message, err.fields, generation=generation,
                             dry_run=refused.dry_run, at=now, before=self.cache.refusal(key))
        self.cache.refused(key, refusal)
        self.metrics.create_refusals.labels(kind=refusal.kind, dry_run=str(refusal.dry_run).lower()).inc()
        log.warning("%s/%s: %s", *key, describe(refusal))

    async def work(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            key = await self.queue.take()
            try:
                again = await loop.run_in_executor(None, self.reconcile_once, key)
                self.queue.forget(key)
                if again is not None:
                    self.queue.requeue(key, max(0.1, again))
                else:
                    self.queue.cancel_requeue(key)
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

    async def run(self, period: float) -> None:
        tasks = [asyncio.create_task(self.work(), name=f"reconcile-{i}") for i in range(self.workers)]
        tasks.append(asyncio.create_task(self.resync.run(period), name="resync"))
        try:
            await asyncio.gather(*tasks)
        finally:
            for task in tasks:
                task.cancel()
            self._events.shutdown(wait=False, cancel_futures=True)  # Events still queued at exit are not worth waiting for
