"""The periodic resync: a LIST of every pipeline the operator serves, fed to the watch-fed store
(cache.py) and the watch-stall check (health.py), and the pipelines it puts back in the work queue.
Run by the reconciler (runtime.py) beside its workers.

Level-triggered safety net: every pipeline is looked at at least once a period, events or not, and a
version the LIST shows that no watch event brought is looked at now. A pipeline that had a pass this
period already is left alone: passing it again only lengthens the queue busy pipelines wait in.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from trainpipe.contract.names import API_GROUP, API_VERSION, KIND
from trainpipe.kube.client import Kube, pipelines_path
from trainpipe_operator.cache import ChildCache, Key
from trainpipe_operator.health import WatchHealth
from trainpipe_operator.metrics import Metrics
from trainpipe_operator.workqueue import WorkQueue

log = logging.getLogger("trainpipe.operator")


def due(listed: Iterable[Key], missed: set[Key], passed: Mapping[Key, float], now: float, period: float) -> list[Key]:
    """The listed pipelines to pass now: those the LIST showed news of, and those without a pass
    (started at monotonic `passed[key]`) in the last `period` seconds."""
    return [key for key in listed if key in missed or now - passed.get(key, float("-inf")) >= period]


@dataclass
class Resync:
    kube: Kube
    cache: ChildCache
    queue: WorkQueue[Key]
    health: WatchHealth
    metrics: Metrics
    namespaces: tuple[str, ...] = ()
    resynced: asyncio.Event = field(default_factory=asyncio.Event)  # the first LIST is in: /readyz may say ready
    _passed: dict[Key, float] = field(default_factory=dict)  # monotonic start of each pipeline's last pass

    def passing(self, key: Key) -> None:
        """A pass of `key` starts now."""
        self._passed[key] = time.monotonic()

    def forget(self, key: Key) -> None:
        self._passed.pop(key, None)

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

    async def run(self, period: float) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                versions, missed = await loop.run_in_executor(None, self.list_pipelines)
                self.health.listed(versions, loop.time())
                self.metrics.watch_stalled.set(1 if self.health.stalled(loop.time()) else 0)
                for key in due(versions, missed, self._passed, time.monotonic(), period):
                    self.queue.add(key)
                self.resynced.set()
            except Exception as exc:  # noqa: BLE001 — the next period tries again; liveness reports a lasting failure
                log.warning("resync failed: %s", exc)
            await asyncio.sleep(period)
