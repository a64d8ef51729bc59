#!/usr/bin/env python3
"""Scale benchmark on the local control plane: N pipelines at once, the operator against an ideal script.

Usage: hack/scale-bench.py [--pipelines 50 200] [--repeat K] [--workers 4] [--api-qps Q] [--api-burst B] [--operator-arg FLAG=VALUE]... [--fresh-cluster DIR]
                           [--out BENCHMARKS.md] [--plot docs/bench-scale.png] [--no-write]
(without --fresh-cluster the local cluster must be up: make cluster-up; `make bench-scale` runs the full set.)

For each N, two phases run one after the other, K times with --repeat K (the order alternating, so a
drift of the machine falls on both sides); the ratio reported is the median of the K side-by-side
ratios, and the other figures are those of the pair with that ratio. With --fresh-cluster DIR (what `make bench-scale`
passes) each phase gets a local control plane of its own, started in DIR and deleted after it: a
long-lived API server grows slower per write over a phase (see `Bench.control_plane`), so the second
phase would pay for the first. Without it, each phase runs in a fresh namespace of the running local
cluster that is deleted (and waited for) before the next phase starts, so the cluster is left as found:

* operator: the operator runs as its own process with its ServiceAccount's RBAC (as in
  hack/operator-bench.py) and N TrainingPipelines are created at once. Each pipeline keeps 5 targets
  and trains 4 CPU and 2 GPU families on a 5-job plan: 1 rank + 5 select + 1 plan + 20 CPU + 10 GPU
  units + 1 report = 38 pods in 10 Jobs. Every pod is completed by the executor without running (skip
  label); the rank and plan pods hand back the termination messages real ones write, the plan's made
  from the typed contract models, so the fan-out comes from a real plan and its digest.
* ideal: no operator and no TrainingPipeline. A script creates the same manifests (the operator's
  pure builder, ownerReferences removed since no owner exists), in the same order, with the same
  number of concurrent workers, each stage's Jobs as soon as the previous stage's Jobs are Complete.

What is reported: wall time until every pipeline is Ready (operator) or every report Job is Complete
(ideal) and their ratio; hand-off latency (a stage's last Job Complete → the next stage's first Job
created), as seen by one watcher, so both ends carry the same watch delay; the operator's API requests
per pipeline by verb and resource from the API server's audit log (events apart) with the server-side
latency of its reads, and whether every (group, resource, verb) it used is one the chart's RBAC grants
(helm/trainpipe/files/operator-rules.yaml, read at the end of the run), with what it grants unused, its
denied requests and its Secrets requests; its peak RSS (VmHWM); the largest TrainingPipeline object seen
in any watch event.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import urllib3
from prometheus_client.parser import text_string_to_metric_families

REPO = Path(__file__).resolve().parents[1]

from trainpipe.contract.families import FAMILY_STAGE  # noqa: E402
from trainpipe.contract.names import API_GROUP, API_VERSION, KIND, LABEL_PIPELINE, LABEL_STAGE, Route, Stage, TaskType, TrainingType  # noqa: E402
from trainpipe.contract.pipeline import PipelineSpec, TrainingPipeline  # noqa: E402
from trainpipe.contract.plan import PlanSummary, TrainingJob, TrainingPlan, TrainingPlanMetadata, plan_digest  # noqa: E402
from trainpipe.contract.reports import PlanReport, RankReport  # noqa: E402
from trainpipe.contract.runs import run_id  # noqa: E402
from trainpipe.contract.stages import STAGES  # noqa: E402
from trainpipe.contract.units import unit_counts  # noqa: E402
from trainpipe_localcluster import (  # noqa: E402
    BATCH,
    CORE,
    CRD_FILE,
    OPERATOR_NAMESPACE,
    OPERATOR_SERVICE_ACCOUNT,
    ApiError,
    Cluster,
    Kube,
    OperatorProcess,
    auditlog,
    pipelines_path,
    wait_for,
)
from trainpipe_localcluster.executor import SKIP_LABEL as SKIP  # noqa: E402
from trainpipe_localcluster.executor import SKIP_MESSAGE_ANNOTATION as SKIP_MESSAGE  # noqa: E402
from trainpipe_operator import manifests  # noqa: E402
from trainpipe_operator.main import build_parser, config_from  # noqa: E402
from trainpipe_operator.manifests import JobIntent, Owner  # noqa: E402

CPU_FAMILIES = ("lightgbm", "xgboost", "catboost", "ngboost")
GPU_FAMILIES = ("mlp", "lstm")
TARGETS = 5
OPERATOR_USER = f"system:serviceaccount:{OPERATOR_NAMESPACE}:{OPERATOR_SERVICE_ACCOUNT}"
MB = 1024 * 1024


# ---- the workload -------------------------------------------------------------------------------


def seeded_plan() -> TrainingPlan:
    """A 5-job cross-sectional plan over 5 targets with 4 CPU and 2 GPU families, built from the contract models."""
    families = [*CPU_FAMILIES, *GPU_FAMILIES]
    jobs = [TrainingJob(job_id=f"cs_fwd_ret_{h}d", target=f"fwd_ret_{h}d", symbol=None, route=Route.CROSS_SECTIONAL,
                        training_type=TrainingType.CROSS_SECTIONAL, task=TaskType.REGRESSION, model_families=families,
                        features=[f"f{i:02d}" for i in range(24)], priority=0, estimated_samples=10_000, reason="scale benchmark")
            for h in (1, 2, 5, 10, 20)]
    meta = TrainingPlanMetadata(generated_at="2026-01-01T00:00:00Z", run_id="scale-bench", code_version="bench", config_digest="bench",
                                data_digest="bench", routing_plan_path="globals/routing/routing_plan.json", model_families=families,
                                model_families_requested=families)
    summary = PlanSummary(total_jobs=len(jobs), by_route={Route.CROSS_SECTIONAL.value: len(jobs)}, by_type={TrainingType.CROSS_SECTIONAL.value: len(jobs)},
                          by_priority={"0": len(jobs)}, total_cs_jobs=len(jobs), total_symbol_jobs=0, total_blocked=0)
    return TrainingPlan(metadata=meta, jobs=jobs, summary=summary)


@dataclass(frozen=True)
class Workload:
    """One pipeline's spec (wire form) and what its stages fan out to."""

    spec: dict[str, Any]
    selected: int
    digest: str
    units: dict[str, int]

    @staticmethod
    def build() -> Workload:
        plan = seeded_plan()
        digest, units = plan_digest(plan), unit_counts(plan)
        rank = RankReport(selected=TARGETS, ranked=TARGETS)
        report = PlanReport(plan_digest=digest, units=units, jobs=len(plan.jobs), path="globals/training_plan/master_training_plan.json")
        messages = {Stage.RANK: rank.model_dump_json(by_alias=True, exclude_none=True),
                    Stage.PLAN: report.model_dump_json(by_alias=True, exclude_none=True)}
        stages: dict[str, Any] = {}
        for stage in STAGES.order:
            meta: dict[str, Any] = {"labels": {SKIP: "true"}}
            if stage in messages:
                meta["annotations"] = {SKIP_MESSAGE: messages[stage]}
            # Tiny requests: the benchmark measures the control plane, not how many pods 4 simulated nodes hold.
            stages[stage] = {"podMetadata": meta, "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}}}
        # The local cluster has two simulated GPUs; GPU pods still go to the GPU pool's nodes (toleration).
        stages[Stage.GPU.value]["gpusPerPod"] = 0
        spec = {"training": {"families": [*CPU_FAMILIES, *GPU_FAMILIES]}, "targets": {"topN": TARGETS},
                "images": {"cpu": "ghcr.io/trainpipe/jobs-cpu:bench", "gpu": "ghcr.io/trainpipe/jobs-gpu:bench"}, "stages": stages}
        return Workload(spec=spec, selected=TARGETS, digest=digest, units=units)

    def manifest(self, name: str) -> dict[str, Any]:
        manifest = {"apiVersion": f"{API_GROUP}/{API_VERSION}", "kind": KIND, "metadata": {"name": name}, "spec": self.spec}
        TrainingPipeline.model_validate(manifest)
        return manifest

    def intents(self) -> dict[str, list[JobIntent]]:
        """The Jobs of each stage, as decide sizes them from the rank and plan reports."""
        out: dict[str, list[JobIntent]] = {}
        for stage in STAGES.order:
            if stage in (Stage.CPU, Stage.GPU):
                out[stage] = [JobIntent(stage, fam, 0, n, self.digest) for fam, n in self.units.items() if FAMILY_STAGE[fam] == stage]
            else:
                out[stage] = [JobIntent(stage, None, 0, self.selected if stage == Stage.SELECT else 1)]
        return out

    @property
    def pods(self) -> int:
        return sum(i.completions for intents in self.intents().values() for i in intents)

    @property
    def jobs(self) -> int:
        return sum(len(intents) for intents in self.intents().values())


# ---- watching -----------------------------------------------------------------------------------


def _true(obj: dict[str, Any], ctype: str) -> bool:
    return any(c.get("type") == ctype and c.get("status") == "True" for c in (obj.get("status") or {}).get("conditions") or [])


def _refuse_stalled(watcher: Watcher) -> bool:
    """Raise when a pipeline of the phase is Stalled: waiting the phase's whole timeout would only hide why."""
    if watcher.stalled:
        name, message = next(iter(watcher.stalled.items()))
        raise RuntimeError(f"{len(watcher.stalled)} pipelines Stalled, {name} first: {message}")
    return False


class Watcher:
    """Monotonic times of Job creation and completion per (pipeline, stage), pipeline Ready, and the largest pipeline object."""

    def __init__(self, kube: Kube, namespace: str, on_complete: Callable[[str, str], None] | None = None) -> None:
        self.kube, self.ns, self.on_complete = kube, namespace, on_complete
        self.added: dict[tuple[str, str], list[float]] = defaultdict(list)
        self.completed: dict[tuple[str, str], list[float]] = defaultdict(list)
        self.ready: dict[str, float] = {}
        self.stalled: dict[str, str] = {}  # a pipeline that will not get Ready: the phase stops at once, saying why
        self.largest = 0
        self._seen_complete: set[str] = set()
        self._known: set[str] = set()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._watch, args=(p, h), daemon=True) for p, h in (
            (f"{BATCH}/namespaces/{namespace}/jobs", self._on_job), (pipelines_path(namespace), self._on_pipeline))]
        for t in self._threads:
            t.start()

    def _watch(self, path: str, handler: Callable[[str, dict[str, Any], float], None]) -> None:
        rv = self.kube.get(path, limit=1)["metadata"]["resourceVersion"]
        while not self._stop.is_set():
            try:
                for event in self.kube.watch(path, rv, timeout_seconds=10):
                    obj = event["object"]
                    rv = obj["metadata"].get("resourceVersion", rv)
                    if event["type"] in ("ADDED", "MODIFIED"):
                        handler(event["type"], obj, time.monotonic())
            except ApiError as err:  # 410 Gone: what changed meanwhile comes from a fresh LIST, timed now
                print(f"watch {path}: {err}; listing again", file=sys.stderr)
                rv = self._relist(path, handler)
            except Exception as err:  # noqa: BLE001 — the API server went away (restarted by a fault test): watch on from rv
                print(f"watch {path}: {err!r}; watching again", file=sys.stderr)
                time.sleep(1.0)

    def _relist(self, path: str, handler: Callable[[str, dict[str, Any], float], None]) -> str:
        while True:
            try:
                listed = self.kube.get(path)
                break
            except Exception as err:  # noqa: BLE001
                print(f"list {path}: {err!r}; retrying", file=sys.stderr)
                time.sleep(1.0)
        for obj in listed["items"]:
            handler("MODIFIED", obj, time.monotonic())
        return str(listed["metadata"]["resourceVersion"])

    def _on_job(self, kind: str, obj: dict[str, Any], at: float) -> None:
        labels = obj["metadata"].get("labels") or {}
        key = (labels.get(LABEL_PIPELINE, ""), labels.get(LABEL_STAGE, ""))
        name = obj["metadata"]["name"]
        fire = False
        with self._lock:
            if name not in self._known:  # ADDED, or first seen in a LIST after a lost watch
                self._known.add(name)
                self.added[key].append(at)
            if _true(obj, "Complete") and name not in self._seen_complete:
                self._seen_complete.add(name)
                self.completed[key].append(at)
                fire = True
        if fire and self.on_complete is not None:
            self.on_complete(*key)

    def _on_pipeline(self, kind: str, obj: dict[str, Any], at: float) -> None:
        size = len(json.dumps(obj, separators=(",", ":")))
        with self._lock:
            self.largest = max(self.largest, size)
            if _true(obj, "Ready"):
                self.ready.setdefault(obj["metadata"]["name"], at)
            elif _true(obj, "Stalled"):
                self.stalled.setdefault(obj["metadata"]["name"], (obj.get("status") or {}).get("message") or "")

    def stop(self) -> None:
        self._stop.set()

    def handoffs(self) -> list[float]:
        """Per pipeline and stage boundary: the next stage's first Job created − this stage's last Job Complete."""
        out = []
        stages = list(STAGES.order)
        with self._lock:
            for pipeline in {p for p, _ in self.added}:
                for before, after in zip(stages, stages[1:]):
                    done, nxt = self.completed.get((pipeline, before)), self.added.get((pipeline, after))
                    if done and nxt:
                        out.append(min(nxt) - max(done))
        return out

    def first_jobs(self, since: float) -> list[float]:
        with self._lock:
            return [min(t) - since for (_, stage), t in self.added.items() if stage == Stage.RANK.value]


# ---- the audit log ------------------------------------------------------------------------------


@dataclass
class Requests:
    """The operator's requests in one namespace, by (verb, resource label), events apart; and all of them
    (events too, and its cluster-scoped ones) against the chart's RBAC rules."""

    writes: Counter[tuple[str, str]]
    reads: Counter[tuple[str, str]]  # get and list (watches are long-running: one each, not per pass)
    events: Counter[str]  # Events by verb (create for a new one, patch for a repeat counted on an old one)
    read_ms: dict[tuple[str, str], list[float]]  # server-side latency of each read
    privileges: auditlog.Privileges

    @staticmethod
    def of(log: Path, mark: auditlog.AuditMark, namespace: str) -> Requests:
        writes: Counter[tuple[str, str]] = Counter()
        reads: Counter[tuple[str, str]] = Counter()
        events: Counter[str] = Counter()
        latencies: dict[tuple[str, str], list[float]] = defaultdict(list)
        mine: list[auditlog.Request] = []
        for segment, offset in mark.segments(log):
            for r in auditlog.read(segment, offset, user=lambda u: u == OPERATOR_USER):
                if r.namespace not in (namespace, ""):
                    continue
                mine.append(r)
                if r.namespace == namespace and r.resource == "events":
                    events[r.verb] += 1
                if r.namespace != namespace or r.resource == "events":
                    continue
                if r.is_write:
                    writes[(r.verb, r.label)] += 1
                elif r.verb in ("get", "list"):
                    reads[(r.verb, r.label)] += 1
            for key, values in read_latencies(segment, offset, namespace).items():
                latencies[key] += values
        return Requests(writes, reads, events, dict(latencies), auditlog.Privileges.of(mine, auditlog.chart_rules()))


def read_latencies(log: Path, offset: int, namespace: str) -> dict[tuple[str, str], list[float]]:
    """Milliseconds from request received to response complete of the operator's get/list requests in `namespace`.

    auditlog.Request keeps no timestamps, so this reads them from the same lines: they show whether a
    read (the pod LIST, say) grows with the number of objects in the namespace.
    """
    out: dict[tuple[str, str], list[float]] = defaultdict(list)
    user, ns = OPERATOR_USER.encode(), f'"namespace":"{namespace}"'.encode()
    with open(log, "rb") as fh:
        fh.seek(offset if log.stat().st_size >= offset else 0)
        for line in fh:
            if user not in line or ns not in line or b'"stage":"ResponseComplete"' not in line:  # cheap before parsing
                continue
            event = json.loads(line)
            if event.get("verb") in ("get", "list") and event.get("requestReceivedTimestamp") and event.get("stageTimestamp"):
                ref = event.get("objectRef") or {}
                label = ref.get("resource", "") + (f".{ref['apiGroup']}" if ref.get("apiGroup") else "") + (f"/{ref['subresource']}" if ref.get("subresource") else "")
                out[(event["verb"], label)].append((_stamp(event["stageTimestamp"]) - _stamp(event["requestReceivedTimestamp"])) * 1000)
    return dict(out)


def _stamp(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


# ---- phases -------------------------------------------------------------------------------------


@dataclass
class Phase:
    kind: str  # operator | ideal
    pipelines: int
    wall: float = 0.0
    handoffs: list[float] = field(default_factory=list)
    first: list[float] = field(default_factory=list)
    requests: Requests | None = None
    hwm_kb: int | None = None
    largest: int = 0
    passes: int = 0
    pass_seconds: float = 0.0
    status_writes: dict[str, float] = field(default_factory=dict)  # the operator's own count, by what changed
    cleanup: float = 0.0
    total: float = 0.0
    cpu: dict[str, float] = field(default_factory=dict)  # CPU seconds from the first create to the last pipeline done, by process
    threads: int = 0  # the ideal script's creating threads
    watch_events: dict[str, float] = field(default_factory=dict)  # watch events the operator decoded, by kind
    profile: Path | None = None  # the flame graph py-spy drew of this phase


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        versions = dict(line.split("=", 1) for line in (REPO / "hack" / "versions.env").read_text().splitlines() if "=" in line and not line.startswith("#"))
        tools_root = Path(os.environ.get("TRAINPIPE_TOOLS", Path.home() / ".cache/trainpipe/tools"))
        self.tools = {c: tools_root / f"{c}-{versions[f'{c.upper()}_VERSION'].strip()}" for c in ("kubernetes", "etcd", "kwok", "helm")}
        self.fresh = args.fresh_cluster.resolve() if args.fresh_cluster else None  # kwokctl runs the binaries from the paths it is given
        if not self.fresh:  # else each phase attaches to the control plane it starts
            self.attach(Path(os.environ.get("TRAINPIPE_CLUSTER_DIR", REPO / ".cache" / "cluster")))
        self.work = Workload.build()
        self.profiled: set[int] = set()
        # The operator as the chart deploys it: the scheduling flags of the rendered Deployment.
        self.operator_args = chart_operator_args(self.tools["helm"] / "bin" / "helm")
        if args.workers is not None:
            self.operator_args = [a for a in self.operator_args if not a.startswith("--workers=")] + [f"--workers={args.workers}"]
        if args.api_qps:
            self.operator_args.append(f"--api-qps={args.api_qps}")
        if args.api_burst:
            self.operator_args.append(f"--api-burst={args.api_burst}")
        self.operator_args += args.operator_arg

    def attach(self, state: Path) -> None:
        self.state = state
        self.kube = Kube(self.state / "kubeconfig")
        self.cluster = Cluster(kubeconfig=self.state / "kubeconfig", state=self.state, tools=self.tools, kube=self.kube, started_here=False)
        self.audit = auditlog.log_path(self.state)

    def _cluster_script(self, name: str) -> None:
        env = os.environ | {"TRAINPIPE_CLUSTER_DIR": str(self.fresh), "VENV": str(Path(sys.executable).parents[1])}
        subprocess.run([str(REPO / "localcluster" / name)], env=env, check=True, stdout=subprocess.DEVNULL)

    @contextlib.contextmanager
    def control_plane(self, phase: Phase) -> Iterator[None]:
        """With --fresh-cluster: a control plane started for this phase alone and deleted after it.

        The API server's CPU per write roughly doubles over a phase of 200 pipelines (its heap and
        etcd's history grow; measured 15 → 30 ms per status PUT), so on one long-lived control plane
        whichever phase runs second pays for the first. A fresh one per phase compares like with like.
        """
        if not self.fresh:
            yield
            return
        self._cluster_script("down.sh")  # a stale one from an interrupted run
        self._cluster_script("up.sh")
        try:  # a failure while setting up (a CRD slow to be Established on a loaded machine) takes it down too
            self.attach(self.fresh)
            self.cluster.install_operator_access(self.state / "bench-scale.kubeconfig")  # the same objects in both phases
            settle()
            yield
        finally:
            started = time.monotonic()
            self._cluster_script("down.sh")
            phase.cleanup = time.monotonic() - started

    def namespace(self, kind: str) -> str:
        ns = f"bench-scale-{kind}-{secrets.token_hex(3)}"
        self.kube.create(f"{CORE}/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
        wait_for("default ServiceAccount", lambda: self.kube.exists(f"{CORE}/namespaces/{ns}/serviceaccounts/default"), timeout=30)
        return ns

    def drop(self, ns: str) -> float:
        """Delete the namespace and wait until it is gone (its pods and Jobs too), so the next phase starts on a quiet cluster."""
        started, path = time.monotonic(), f"{CORE}/namespaces/{ns}"

        def gone() -> bool:
            try:
                self.kube.delete(path)  # again after a failed try; a namespace already Terminating just answers 200
                return False
            except ApiError as err:
                if err.status == 404:
                    return True
                if err.status < 500:
                    raise
            except (OSError, urllib3.exceptions.HTTPError):  # the API server is restarting
                pass
            return False

        wait_for(f"namespace {ns} deleted", gone, timeout=self.args.timeout, interval=2.0)
        return time.monotonic() - started

    @contextlib.contextmanager
    def scratch_namespace(self, kind: str, phase: Phase) -> Iterator[str]:
        """A fresh namespace for one phase, deleted afterwards (also when the phase fails) so the cluster is left as found."""
        with self.control_plane(phase):
            ns = self.namespace(kind)
            try:
                yield ns
            finally:
                if not self.fresh:
                    phase.cleanup = self.drop(ns)

    def names(self, n: int) -> list[str]:
        return [f"p{i:03d}" for i in range(n)]

    def run_operator(self, n: int, checkout: Path | None = None) -> Phase:
        """The operator phase; with `checkout`, that checkout's operator code (the same flags) as the baseline phase."""
        phase, begun = Phase("baseline" if checkout else "operator", n), time.monotonic()
        with self.scratch_namespace("op", phase) as ns:
            # A baseline runs with its own CRD: the API server's defaults of newer fields would be refused by its older model.
            crd = (checkout or REPO) / CRD_FILE.relative_to(REPO)
            kubeconfig = self.cluster.install_operator_access(self.state / "bench-scale.kubeconfig", crd=crd)
            env = {"PYTHONPATH": f"{checkout / 'jobs'}:{checkout / 'operator'}"} if checkout else None
            operator = OperatorProcess(kubeconfig, self.state / "bench-scale-operator.log", namespaces=[ns], extra_args=self.operator_args,
                                       env=env).start()
            mark = auditlog.AuditMark.now(self.audit)
            watcher = Watcher(self.kube, ns)
            time.sleep(1.0)
            try:
                started, cpu = time.monotonic(), CpuMeter(operator.pid, self.processes())
                profiler = None if checkout else self.profiler(operator.pid, n)
                for name in self.names(n):
                    _create(self.kube, pipelines_path(ns), self.work.manifest(name))
                wait_for(f"{n} pipelines Ready", lambda: len(watcher.ready) == n or _refuse_stalled(watcher), timeout=self.args.timeout, interval=0.5)
                phase.cpu = cpu.used()
                phase.wall = max(watcher.ready.values()) - started
                if profiler is not None:
                    phase.profile = profiler.stop()
                phase.hwm_kb = _vm(operator.pid, "VmHWM")
                metrics = {(s.name, tuple(s.labels.items())): s.value for f in text_string_to_metric_families(operator.get("/metrics")[1]) for s in f.samples}
                phase.passes = int(metrics.get(("trainpipe_reconcile_duration_seconds_count", ()), 0))
                phase.pass_seconds = metrics.get(("trainpipe_reconcile_duration_seconds_sum", ()), 0.0)
                phase.status_writes = {change: metrics.get(("trainpipe_status_writes_total", (("change", change),)), 0.0) for change in ("state", "counts")}
                phase.watch_events = {dict(labels)["kind"]: value for (name, labels), value in metrics.items() if name == "trainpipe_watch_events_total"}
            finally:
                watcher.stop()
                operator.stop()
            phase.handoffs, phase.first, phase.largest = watcher.handoffs(), watcher.first_jobs(started), watcher.largest
            time.sleep(2.0)  # the audit backend writes asynchronously
            phase.requests = Requests.of(self.audit, mark, ns) if self.audit.exists() else None
        phase.total = time.monotonic() - begun
        return phase

    def processes(self) -> dict[int, str]:
        """The pod executor and this script by pid, for the CPU table (both run on every phase)."""
        pidfile = self.state / "executor.pid"
        named = {os.getpid(): "bench script"}
        if pidfile.exists():
            named[int(pidfile.read_text().strip())] = "executor"
        return named

    def profiler(self, pid: int, n: int) -> Profiler | None:
        """py-spy on the operator for the first operator phase at each N, when --profile asks for it."""
        if self.args.profile is None or n in self.profiled:
            return None
        self.profiled.add(n)
        return Profiler.start(pid, self.args.profile / f"operator-flame-{n}.svg")

    def sweep(self, n: int) -> dict[int, Phase]:
        """One ideal phase per thread count: the best script is the one with the shortest wall."""
        return {threads: self.run_ideal(n, threads) for threads in self.args.ideal_threads}

    def run_pair(self, n: int, ideal_first: bool, threads: int) -> tuple[Phase, Phase]:
        skip = self.args.operator_only
        if ideal_first and not skip:
            ideal = self.run_ideal(n, threads)
            return self.run_operator(n), ideal
        op = self.run_operator(n)
        return op, (self.run_ideal(n, threads) if not skip else Phase("ideal", n, wall=float("nan")))

    def run_ideal(self, n: int, threads: int) -> Phase:
        phase, begun = Phase("ideal", n, threads=threads), time.monotonic()
        with self.scratch_namespace("ideal", phase) as ns:
            spec = PipelineSpec.model_validate(self.work.spec)
            run = run_id(spec)
            config = config_from(build_parser().parse_args([]))
            intents = self.work.intents()
            order = list(STAGES.order)
            left: dict[tuple[str, str], int] = {(p, s): len(intents[s]) for p in self.names(n) for s in order}
            done = threading.Event()
            finished: list[str] = []
            pool = ThreadPoolExecutor(threads)

            errors: list[BaseException] = []

            def create(pipeline: str, stage: str) -> None:
                try:
                    make(pipeline, stage)
                except BaseException as err:  # a pool thread's error would be lost: the phase stops on it
                    errors.append(err)
                    done.set()

            def make(pipeline: str, stage: str) -> None:
                # The run folder's owner record wants a uid; none exists without a TrainingPipeline.
                owner = Owner(ns, pipeline, f"bench-ideal-{pipeline}")
                # The first stage also needs the claim and the run's spec ConfigMap its pods mount, as the operator makes them.
                first = [manifests.artifacts_claim_manifest(spec, owner, config), manifests.spec_config_map(spec, owner, run)]
                objects = first if stage == order[0] else []
                objects += [manifests.job(spec, owner, run, intent, config, suspend=False) for intent in intents[stage]]
                collections = {"Job": f"{BATCH}/namespaces/{ns}/jobs", "ConfigMap": f"{CORE}/namespaces/{ns}/configmaps",
                               "PersistentVolumeClaim": f"{CORE}/namespaces/{ns}/persistentvolumeclaims"}
                for obj in objects:
                    obj["metadata"].pop("ownerReferences", None)  # no owner exists here; the garbage collector would delete them
                    _create(self.kube, collections[obj["kind"]], obj)

            def on_complete(pipeline: str, stage: str) -> None:
                key = (pipeline, stage)
                if key not in left:
                    return
                left[key] -= 1
                if left[key]:
                    return
                i = order.index(stage)
                if i + 1 < len(order):
                    pool.submit(create, pipeline, order[i + 1])
                else:
                    finished.append(pipeline)
                    if len(finished) == n:
                        done.set()

            watcher = Watcher(self.kube, ns, on_complete)
            time.sleep(1.0)
            try:
                started, cpu = time.monotonic(), CpuMeter(None, self.processes())
                for name in self.names(n):
                    pool.submit(create, name, order[0])
                wait_for(f"{n} ideal runs complete", done.is_set, timeout=self.args.timeout, interval=0.5)
                if errors:
                    raise RuntimeError(f"the ideal script failed to create: {errors[0]!r}") from errors[0]
                phase.cpu = cpu.used()
                phase.wall = max(max(t) for (_, s), t in watcher.completed.items() if s == order[-1].value) - started
            finally:
                watcher.stop()
                pool.shutdown(wait=True, cancel_futures=True)
            phase.handoffs, phase.first = watcher.handoffs(), watcher.first_jobs(started)
        phase.total = time.monotonic() - begun
        return phase


# The chart's flags that shape how the operator schedules and writes; the rest (port, images, namespaces,
# service account) the bench sets for its own process.
CHART_FLAGS = ("--resync-seconds=", "--workers=", "--event-batch-seconds=", "--status-progress-seconds=", "--status-progress-rate=",
               "--stall-seconds=", "--api-qps=", "--api-burst=", "--log-level=")


def chart_operator_args(helm: Path) -> list[str]:
    """The operator's scheduling flags as `helm template` renders the chart with its default values."""
    import yaml

    rendered = subprocess.run([str(helm), "template", "bench", str(REPO / "helm" / "trainpipe")], check=True, capture_output=True, text=True).stdout
    for doc in yaml.safe_load_all(rendered):
        if doc and doc.get("kind") == "Deployment":
            args = doc["spec"]["template"]["spec"]["containers"][0].get("args") or []
            return [a for a in args if a.startswith(CHART_FLAGS)]
    raise RuntimeError("helm template rendered no Deployment for helm/trainpipe")


@dataclass
class Profiler:
    """py-spy sampling a running process until stop(), then drawing its flame graph (idle threads left out)."""

    proc: subprocess.Popen[bytes]
    out: Path

    @staticmethod
    def start(pid: int, out: Path) -> Profiler:
        out.parent.mkdir(parents=True, exist_ok=True)
        spy = Path(sys.executable).with_name("py-spy")
        # --nonblocking: the operator is never paused to be read, so the profile does not slow what it measures.
        proc = subprocess.Popen([str(spy), "record", "--pid", str(pid), "--rate", "50", "--nonblocking", "--format", "flamegraph",
                                 "--output", str(out)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        return Profiler(proc, out)

    def stop(self) -> Path | None:
        self.proc.send_signal(signal.SIGINT)  # py-spy writes its output on SIGINT
        try:
            _, err = self.proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return None
        if not self.out.exists():
            print(f"py-spy wrote no profile: {err.decode(errors='replace')[-500:]}", file=sys.stderr)
            return None
        return self.out


def _create(kube: Kube, path: str, obj: dict[str, Any], tries: int = 30) -> None:
    """Create, riding out an API server restart (another engineer's fault test may restart it); 409 means a retry already made it."""
    for attempt in range(tries):
        try:
            kube.create(path, obj)
            return
        except ApiError as err:
            if err.status == 409:
                return
            if err.status < 500 or attempt == tries - 1:
                raise
        except (OSError, urllib3.exceptions.HTTPError):
            if attempt == tries - 1:
                raise
        time.sleep(1.0)


def _vm(pid: int, key: str) -> int | None:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return None


TICK = os.sysconf("SC_CLK_TCK")
# Control-plane processes by their /proc comm (15 characters at most), as the local cluster names them.
COMPONENTS = ("kube-apiserver", "etcd", "kube-controller", "kube-scheduler")
HELPERS = ("executor", "bench script")  # the pod executor (completes the skipped pods) and this script's watcher and creators


class CpuMeter:
    """CPU seconds spent between construction and used(): the whole machine, the operator, each control-plane process.

    On two shared cores the operator's cost is mostly CPU it takes from the control plane, and the
    API-server CPU its requests cause; the ideal phase's figures are the same cluster without it.
    """

    def __init__(self, operator_pid: int | None, named: dict[int, str] | None = None) -> None:
        # Processes known by pid: the operator, the pod executor (a Python process like any other) and this script.
        self.named = {**(named or {}), **({operator_pid: "operator"} if operator_pid else {})}
        self.start = self.sample()

    def sample(self) -> dict[str, float]:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
        out = {"machine": (sum(int(v) for v in fields[:8]) - int(fields[3]) - int(fields[4])) / TICK}  # all but idle and iowait
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                text = stat.read_text()
            except OSError:  # the process exited meanwhile
                continue
            comm, rest = text[text.index("(") + 1:text.rindex(")")], text[text.rindex(")") + 2:].split()
            name = self.named.get(int(stat.parent.name)) or (comm if comm in COMPONENTS else None)
            if name is not None:
                out[name] = out.get(name, 0.0) + (int(rest[11]) + int(rest[12])) / TICK  # utime + stime
        return out

    def used(self) -> dict[str, float]:
        end = self.sample()
        return {k: v - self.start.get(k, 0.0) for k, v in end.items()}


def settle(idle: float = 0.15, window: float = 5.0, limit: float = 90.0) -> None:
    """Wait until the machine is about idle (busy below `idle` of its cores over `window` seconds): a
    control plane just started (and a CRD just installed) builds its caches and API documents for a
    while, work that would otherwise land on whichever phase comes first."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        meter = CpuMeter(None)
        time.sleep(window)
        if meter.used()["machine"] < idle * window * (os.cpu_count() or 1):
            return


# ---- reporting ----------------------------------------------------------------------------------


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))] if ordered else float("nan")


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def median_pair(pairs: list[tuple[Phase, Phase]]) -> tuple[Phase, Phase]:
    """The pair whose operator/ideal ratio is the median of all (the lower of the two middle ones for an even count)."""
    ordered = sorted(pairs, key=lambda pair: pair[0].wall / pair[1].wall)
    return ordered[(len(ordered) - 1) // 2]


def ratio_cell(pairs: list[tuple[Phase, Phase]]) -> str:
    ratios = [op.wall / ideal.wall for op, ideal in pairs]
    if len(ratios) == 1:
        return f"{ratios[0]:.2f}×"
    return f"**{median(ratios):.2f}×** ({', '.join(f'{r:.2f}' for r in ratios)})"


def section(args: argparse.Namespace, operator_args: list[str], work: Workload, runs: list[list[tuple[Phase, Phase]]],
            sweeps: list[dict[int, Phase]], plot: Path | None, bases: dict[int, list[Phase]] | None = None) -> str:
    results = [median_pair(pairs) for pairs in runs]
    command = "hack/scale-bench.py " + " ".join(sys.argv[1:])
    lines = [
        f"## Scale: {', '.join(str(op.pipelines) for op, _ in results)} pipelines at once (local control plane, skipped pods)",
        "",
        f"Command: `make bench-scale` (= `{command.strip()}`"
        + (", each phase on a control plane started for it" if args.fresh_cluster else " on the running local cluster") + "), "
        f"{time.strftime('%Y-%m-%d', time.gmtime())}, {os.cpu_count()} cores; operator flags as the chart renders them: `{' '.join(operator_args)}`.",
        f"Each pipeline: {TARGETS} selected targets, a {TARGETS}-job plan (made with the contract models) × {len(CPU_FAMILIES)} CPU and {len(GPU_FAMILIES)} GPU "
        f"families = {work.jobs} Jobs and {work.pods} pods (1 rank + {TARGETS} select + 1 plan + {sum(v for k, v in work.units.items() if FAMILY_STAGE[k] is Stage.CPU)} CPU "
        f"+ {sum(v for k, v in work.units.items() if FAMILY_STAGE[k] is Stage.GPU)} GPU + 1 report). Pods are completed by the executor without running; "
        "rank and plan pods return the termination messages real ones write, so the operator sizes every Job from the plan. "
        "*Ideal* is the best script one could write without an operator: one watch on Jobs, a pool of creating threads, and the operator's exact "
        "manifests (its builder: the claim, the spec ConfigMap, Jobs with podFailurePolicy, backoffLimitPerIndex and the scratch emptyDir), each "
        "stage's Jobs created as soon as the previous stage's Jobs are Complete. Its thread count is the fastest of "
        f"{', '.join(str(t) for t in args.ideal_threads)} at the first N, used at every N (table below). "
        "Targets: ratio ≤ 1.3×, hand-off p99 ≤ 2 s at 200, peak RSS ≤ 250 MB, object far below 1 MiB.",
        "",
        "| pipelines | pods | wall: operator | wall: ideal (threads) | ratio" + (f" (median of {args.repeat}; each run)" if args.repeat > 1 else "") + " | hand-off median / p99 (operator) | hand-off median / p99 (ideal) "
        "| API writes per pipeline | operator requests/s | peak RSS | largest TrainingPipeline | reconcile passes (mean) |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for (op, ideal), pairs in zip(results, runs):
        writes = sum(op.requests.writes.values()) / op.pipelines if op.requests else float("nan")
        rate = (sum(op.requests.writes.values()) + sum(op.requests.reads.values())) / op.wall if op.requests else float("nan")
        lines.append(
            f"| {op.pipelines} | {op.pipelines * work.pods:,} | {op.wall:.1f} s | {ideal.wall:.1f} s ({ideal.threads}) | {ratio_cell(pairs)} "
            f"| {median(op.handoffs) * 1000:.0f} / {pct(op.handoffs, 99) * 1000:.0f} ms | {median(ideal.handoffs) * 1000:.0f} / {pct(ideal.handoffs, 99) * 1000:.0f} ms "
            f"| {writes:.1f} | {rate:.0f} | {(op.hwm_kb or 0) / 1024:.0f} MB | {op.largest / 1024:.1f} KiB "
            f"| {op.passes:,} ({op.pass_seconds / max(op.passes, 1) * 1000:.0f} ms) |")
    if args.repeat > 1:
        lines += ["", f"Each N ran {args.repeat} times, operator and ideal phases alternating in order; walls and every other figure here "
                  "are those of the run with the median ratio. Wall times of all runs (operator / ideal): "
                  + "; ".join(f"N={pairs[0][0].pipelines}: " + ", ".join(f"{op.wall:.1f} / {ideal.wall:.1f} s" for op, ideal in pairs) for pairs in runs) + "."]
    if any(sweeps):
        counts = list(args.ideal_threads)
        lines += ["", "The ideal script by creating threads (one phase each, before the pairs; the fastest is the one the pairs use):", "",
                  "| pipelines | " + " | ".join(f"{t} threads" for t in counts) + " |", "|---:|" + "---:|" * len(counts)]
        for (op, _), sweep in zip(results, sweeps):
            if sweep:
                lines.append(f"| {op.pipelines} | " + " | ".join(f"{sweep[t].wall:.1f} s" if t in sweep else "" for t in counts) + " |")
    lines += ["", "The operator's API requests per pipeline run (audit log of its ServiceAccount, Events apart; reads with their server-side median latency):", ""]
    keys = sorted({k for op, _ in results if op.requests for k in (*op.requests.writes, *op.requests.reads)}, key=lambda k: (k[0] not in auditlog.WRITE_VERBS, k))
    lines += ["| verb | resource | " + " | ".join(f"N={op.pipelines}" for op, _ in results) + " |", "|---|---|" + "---:|" * len(results)]
    for verb, resource in keys:
        cells = []
        for op, _ in results:
            r = op.requests
            if r is None:
                cells.append("n/a")
                continue
            count = r.writes.get((verb, resource), 0) + r.reads.get((verb, resource), 0)
            ms = r.read_ms.get((verb, resource))
            cells.append(f"{count / op.pipelines:.1f}" + (f" ({median(ms):.1f} ms)" if ms else ""))
        lines.append(f"| {verb} | {resource} | " + " | ".join(cells) + " |")
    for verb in sorted({v for op, _ in results if op.requests for v in op.requests.events}):
        lines.append(f"| {verb} | events | " + " | ".join(f"{op.requests.events.get(verb, 0) / op.pipelines:.1f}" if op.requests else "n/a" for op, _ in results) + " |")
    kinds = sorted({k for op, _ in results for k in op.watch_events})
    for kind in kinds:
        lines.append(f"| watch event decoded | {kind} | " + " | ".join(f"{op.watch_events.get(kind, 0) / op.pipelines:.1f}" for op, _ in results) + " |")
    lines += ["", "Status writes per pipeline run by what changed (the operator's `trainpipe_status_writes_total`; a stage, condition or reason is "
              "written at once, a change of running counts only is held): "
              + "; ".join(f"N={op.pipelines}: " + ", ".join(f"{change} {count / op.pipelines:.1f}" for change, count in op.status_writes.items())
                          for op, _ in results) + "."]
    lines += ["", "CPU seconds used from the first create until every pipeline was done, operator phase / ideal phase "
              f"(/proc; {os.cpu_count()} cores, so a phase can use at most {os.cpu_count()} × its wall time):", ""]
    lines += ["| pipelines | machine | operator | operator per pipeline run | " + " | ".join((*COMPONENTS, *HELPERS)) + " | everything else |",
              "|---:|" + "---:|" * (4 + len(COMPONENTS) + len(HELPERS))]
    for op, ideal in results:
        cells = [f"{op.cpu.get(k, 0.0):.0f}" + (f" / {ideal.cpu.get(k, 0.0):.0f}" if k != "operator" else "") for k in ("machine", "operator", *COMPONENTS, *HELPERS)]
        cells.insert(2, f"{op.cpu.get('operator', 0.0) / op.pipelines:.3f}")
        rest = [p.cpu.get("machine", 0.0) - sum(v for k, v in p.cpu.items() if k != "machine") for p in (op, ideal)]
        lines.append(f"| {op.pipelines} | " + " | ".join(cells) + f" | {rest[0]:.0f} / {rest[1]:.0f} |")
    if bases:
        lines += ["", f"Against the baseline operator (`--baseline-operator {args.baseline_operator}`: that checkout's operator code, the same flags, "
                  "one phase per repeat beside each pair on its own control plane; medians over the repeats):", "",
                  "| pipelines | wall: baseline / this | operator CPU s per pipeline run: baseline / this | requests per run (writes + reads + Events): baseline / this |",
                  "|---:|---:|---:|---:|"]
        for pairs in runs:
            n = pairs[0][0].pipelines
            if n not in bases:
                continue
            ops, old = [op for op, _ in pairs], bases[n]

            def per_run(phases: list[Phase]) -> float:
                return median([p.cpu.get("operator", 0.0) / p.pipelines for p in phases])

            def requests(phases: list[Phase]) -> float:
                return median([(sum(p.requests.writes.values()) + sum(p.requests.reads.values()) + sum(p.requests.events.values())) / p.pipelines
                               for p in phases if p.requests] or [float("nan")])

            lines.append(f"| {n} | {median([p.wall for p in old]):.1f} / {median([p.wall for p in ops]):.1f} s "
                         f"| {per_run(old):.3f} / {per_run(ops):.3f} (**{per_run(old) / max(per_run(ops), 1e-9):.2f}× less**) "
                         f"| {requests(old):.1f} / {requests(ops):.1f} |")
    lines += ["", f"The operator's requests against the chart's RBAC ({auditlog.RULES_FILE.relative_to(REPO)}; events and cluster-scoped requests included):", ""]
    lines += [f"- N={op.pipelines}: " + (op.requests.privileges.summary() if op.requests else "n/a (no audit log)") for op, _ in results]
    lines += ["", "Run time of the benchmark itself (all phases, cleanup included): "
              + ", ".join(f"N={pairs[0][0].pipelines}: {sum(op.total + ideal.total for op, ideal in pairs) / 60:.1f} min" for pairs in runs) + "."]
    flames = [op.profile for pairs in runs for op, _ in pairs if op.profile is not None]
    if flames:
        lines += ["", "Flame graphs of the operator (py-spy, 50 samples/s, without blocking it, through the whole operator phase: "
                  "passes, watch handling and the client): " + ", ".join(f"[N={_flame_n(f)}]({_rel(f, args.out.parent)})" for f in flames) + "."]
    if plot is not None:
        lines += ["", f"![scale benchmark]({plot.relative_to(args.out.parent) if plot.is_relative_to(args.out.parent) else plot})"]
    return "\n".join(lines)


def _flame_n(path: Path) -> str:
    return path.stem.rsplit("-", 1)[-1]


def _rel(path: Path, base: Path) -> str:
    path = path.resolve()
    return str(path.relative_to(base.resolve())) if path.is_relative_to(base.resolve()) else str(path)


def draw(results: list[tuple[Phase, Phase]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(11, 8))
    ns = [op.pipelines for op, _ in results]
    x = range(len(ns))
    ax = axes[0][0]
    ax.bar([i - 0.2 for i in x], [op.wall for op, _ in results], 0.4, label="operator")
    ax.bar([i + 0.2 for i in x], [ideal.wall for _, ideal in results], 0.4, label="ideal script")
    ax.set_xticks(list(x), [f"{n} pipelines" for n in ns])
    ax.set_ylabel("wall time (s)")
    ax.set_title("All pipelines done")
    ax.legend(loc="lower right")
    ax = axes[0][1]
    for (op, ideal), color in zip(results, ("tab:blue", "tab:orange", "tab:green", "tab:red")):
        for phase, style in ((op, "-"), (ideal, "--")):
            values = sorted(phase.handoffs)
            if values:
                ax.plot([v * 1000 for v in values], [(i + 1) / len(values) for i in range(len(values))], style, color=color,
                        label=f"{phase.kind}, {phase.pipelines}")
    ax.axvline(1000, color="grey", linestyle=":", label="target median")
    ax.set_xscale("log")
    ax.set_xlabel("hand-off latency (ms)")
    ax.set_ylabel("fraction of hand-offs")
    ax.set_title("Stage hand-off latency")
    ax.legend(fontsize=8)
    ax = axes[1][0]
    keys = sorted({k for op, _ in results if op.requests for k in op.requests.writes})
    width = 0.8 / max(len(results), 1)
    for j, (op, _) in enumerate(results):
        counts = [op.requests.writes.get(k, 0) / op.pipelines if op.requests else 0 for k in keys]
        ax.barh([i + j * width for i in range(len(keys))], counts, width, label=f"{op.pipelines} pipelines")
    ax.set_yticks([i + width * (len(results) - 1) / 2 for i in range(len(keys))], [f"{v} {r}" for v, r in keys], fontsize=8)
    ax.set_xlabel("API writes per pipeline run")
    ax.set_title("Operator writes (events apart)")
    ax.legend(fontsize=8)
    ax = axes[1][1]
    ax.plot(ns, [(op.hwm_kb or 0) / 1024 for op, _ in results], "o-", label="peak RSS (MB)")
    ax.plot(ns, [op.largest / 1024 for op, _ in results], "s-", label="largest TrainingPipeline (KiB)")
    ax.axhline(250, color="grey", linestyle=":", label="RSS target (250 MB)")
    ax.set_ylim(0, 300)
    ax.set_xlabel("pipelines")
    ax.set_title("Operator memory and object size")
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pipelines", type=int, nargs="+", default=[50, 200], help="Pipelines at once; one operator and one ideal phase per value (× --repeat).")
    parser.add_argument("--repeat", type=int, default=1, help="Operator and ideal phases per N, order alternating; the median ratio is reported.")
    parser.add_argument("--workers", type=int, default=None, help="The operator's --workers (default: the chart's).")
    parser.add_argument("--ideal-threads", type=int, nargs="+", default=[4, 8, 16],
                        help="The ideal script's creating threads: with several, each N first runs one ideal phase per count, and the pairs use the fastest.")
    parser.add_argument("--baseline-operator", type=Path, default=None, metavar="CHECKOUT",
                        help="Also run the operator of another checkout (its jobs/ and operator/ first on PYTHONPATH) once per repeat, "
                             "beside the pair: its CPU and requests per run against this one's.")
    parser.add_argument("--baseline-pipelines", type=int, nargs="+", default=None, metavar="N",
                        help="Run --baseline-operator only at these N (default: every N); at 200 a baseline phase costs about 5 minutes.")
    parser.add_argument("--profile", type=Path, default=None, metavar="DIR",
                        help="py-spy the operator through its first phase at each N; flame graphs to DIR/operator-flame-<N>.svg.")
    parser.add_argument("--api-qps", type=float, default=None, help="The operator's --api-qps (default: unset).")
    parser.add_argument("--api-burst", type=int, default=None, help="The operator's --api-burst (default: unset).")
    parser.add_argument("--operator-arg", action="append", default=[], metavar="FLAG=VALUE",
                        help="One more operator flag, e.g. --operator-arg=--status-progress-rate=1 (repeatable).")
    parser.add_argument("--timeout", type=float, default=3600.0, help="Seconds one phase (or one namespace deletion) may take.")
    parser.add_argument("--out", type=Path, default=REPO / "BENCHMARKS.md")
    parser.add_argument("--plot", type=Path, default=REPO / "docs" / "bench-scale.png")
    parser.add_argument("--no-write", action="store_true", help="Print the section; leave BENCHMARKS.md and the plot alone.")
    parser.add_argument("--fresh-cluster", type=Path, default=None, metavar="DIR",
                        help="Run each phase on a control plane of its own, started in DIR and deleted after it (make bench-scale does); "
                             "default: the running local cluster, each phase in a namespace deleted after it.")
    parser.add_argument("--operator-only", action="store_true", help="Skip the ideal phase (for comparing operator flags); implies --no-write.")
    args = parser.parse_args()
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    # SIGTERM runs the finally blocks too: the operator is stopped and the phase's namespace deleted.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    bench = Bench(args)
    runs, sweeps = [], []
    bases: dict[int, list[Phase]] = {}
    for n in args.pipelines:
        pairs = []
        # The thread sweep runs at the first N only (at 200 it would cost three phases of four minutes):
        # a larger N uses the count that was fastest there.
        first = n == args.pipelines[0]
        sweep = bench.sweep(n) if first and len(args.ideal_threads) > 1 and not args.operator_only else {}
        for count, phase in sweep.items():
            print(f"== {n} pipelines, ideal with {count} threads: {phase.wall:.1f}s", flush=True)
        if sweep:
            threads = min(sweep, key=lambda t: sweep[t].wall)
        elif first:
            threads = args.ideal_threads[0]
        sweeps.append(sweep)
        baseline = args.baseline_operator if args.baseline_pipelines is None or n in args.baseline_pipelines else None
        for r in range(args.repeat):
            print(f"== {n} pipelines × {bench.work.pods} pods" + (f", run {r + 1}/{args.repeat}" if args.repeat > 1 else "") + f"; ideal with {threads} threads", flush=True)
            base = bench.run_operator(n, baseline) if baseline and r % 2 == 1 else None
            op, ideal = bench.run_pair(n, ideal_first=r % 2 == 1, threads=threads)
            if baseline and base is None:
                base = bench.run_operator(n, baseline)
            if base is not None:
                bases.setdefault(n, []).append(base)
                print(f"   baseline operator: all Ready after {base.wall:.1f}s; CPU {base.cpu.get('operator', 0.0):.1f}s "
                      f"(this one {op.cpu.get('operator', 0.0):.1f}s)", flush=True)
            print(f"   operator: all Ready after {op.wall:.1f}s (phase {op.total:.0f}s, cleanup {op.cleanup:.0f}s)", flush=True)
            print("   status writes per pipeline: " + ", ".join(f"{k} {v / n:.1f}" for k, v in op.status_writes.items()), flush=True)
            print(f"   operator RBAC: {op.requests.privileges.summary() if op.requests else 'n/a (no audit log)'}", flush=True)
            print(f"   ideal:    all done after {ideal.wall:.1f}s (phase {ideal.total:.0f}s, cleanup {ideal.cleanup:.0f}s); ratio {op.wall / ideal.wall:.2f}", flush=True)
            print("   CPU s (operator / ideal): " + ", ".join(f"{k} {op.cpu.get(k, 0.0):.0f} / {ideal.cpu.get(k, 0.0):.0f}" for k in ("machine", "operator", *COMPONENTS, *HELPERS)), flush=True)
            if op.watch_events:
                print("   watch events decoded per pipeline: " + ", ".join(f"{k} {v / n:.1f}" for k, v in sorted(op.watch_events.items())), flush=True)
            pairs.append((op, ideal))
        print(f"   N={n} took {sum(op.total + ideal.total for op, ideal in pairs) / 60:.1f} min in all", flush=True)
        runs.append(pairs)
    args.no_write = args.no_write or args.operator_only
    plot = None if args.no_write else args.plot.resolve()
    if plot is not None:
        draw([median_pair(pairs) for pairs in runs], plot)
    body = section(args, bench.operator_args, bench.work, runs, sweeps, plot, bases)
    print(body)
    if not args.no_write:
        subprocess.run([sys.executable, str(REPO / "hack" / "write-section.py"), str(args.out), "scale"], input=body, text=True, check=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
