"""Prometheus metrics of the operator, in a registry of its own (tests build as many as they like)."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from trainpipe.contract.status import ConditionType, PipelineStatus


@dataclass
class Metrics:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        r = self.registry
        self.pipelines = Gauge("trainpipe_pipelines", "Pipelines by condition that is True", ["condition"], registry=r)
        self.stage_seconds = Histogram("trainpipe_stage_duration_seconds", "Wall time of a stage, first Job created to last Job finished",
                                       ["stage", "outcome"], buckets=(1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 7200, 21600), registry=r)
        self.jobs_created = Counter("trainpipe_jobs_created_total", "Jobs the operator created", ["stage"], registry=r)
        self.jobs_finished = Counter("trainpipe_jobs_finished_total", "Jobs of finished stages, by outcome", ["stage", "outcome"], registry=r)
        self.reconcile_seconds = Histogram("trainpipe_reconcile_duration_seconds", "One observe → decide → act pass",
                                           buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10), registry=r)
        self.reconcile_passes = Counter("trainpipe_reconcile_passes_total",
                                        "Passes, by where they read the pipeline and its children: the operator's cache or the API server (in full)",
                                        ["read"], registry=r)
        self.status_writes = Counter("trainpipe_status_writes_total",
                                     "Status writes, by what changed: only running counts, or the state (a stage, condition or reason)",
                                     ["change"], registry=r)
        self.create_refusals = Counter("trainpipe_create_refusals_total",
                                       "Creates the API server refused with a 4xx (the pipeline Stalls and tries again after a back-off)",
                                       ["kind", "dry_run"], registry=r)
        # Every kind the operator creates, at zero: a series that exists before the first refusal lets a
        # dashboard's rate() and an alert on it work from the start.
        for kind in ("Job", "ConfigMap", "PersistentVolumeClaim"):
            for dry_run in ("false", "true"):
                self.create_refusals.labels(kind=kind, dry_run=dry_run)
        self.watch_events = Counter("trainpipe_watch_events_total", "Watch events the operator decoded, by kind of object", ["kind"], registry=r)
        for kind in ("TrainingPipeline", "Job", "ConfigMap"):
            self.watch_events.labels(kind=kind)
        self.reconcile_errors = Counter("trainpipe_reconcile_errors_total", "Passes that raised (retried with backoff)", registry=r)
        self.watch_stalled = Gauge("trainpipe_watch_stalled", "1 while the pipeline watch lags behind a fresh LIST", registry=r)
        self._conditions: dict[tuple[str, str], set[str]] = {}
        self._lock = threading.Lock()  # reconcile passes run in worker threads

    def record_status(self, key: tuple[str, str], status: PipelineStatus | None) -> None:
        """Remember which conditions are True for one pipeline (None: it is gone) and refresh the gauge."""
        with self._lock:
            if status is None:
                self._conditions.pop(key, None)
            else:
                self._conditions[key] = {c.type for c in status.conditions if c.status == "True"}
            for ctype in ConditionType:
                self.pipelines.labels(condition=ctype.value).set(sum(1 for true in self._conditions.values() if ctype.value in true))
