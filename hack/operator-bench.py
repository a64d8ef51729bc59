#!/usr/bin/env python3
"""Operator hand-off latency on the local control plane; writes the `operator` section of BENCHMARKS.md.

Usage: hack/operator-bench.py [--pipelines N] [--out BENCHMARKS.md]   (the local cluster must be up: make cluster-up)

Starts the operator (its own process, with the RBAC of operator/deploy/rbac.yaml) on a fresh
namespace and creates N pipelines, staggered. Their pods are completed by the executor without
running (skip label, with the termination messages rank and plan would write), so what is measured
is the operator alone: how soon after a pipeline appears its first Job appears, and how soon after
a stage's last Job is Complete the next stage's Jobs appear. One watcher sees all of these events,
so both ends of each interval carry the same watch delay; medians are of every hand-off seen.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]

from trainpipe.contract.names import LABEL_PIPELINE, LABEL_STAGE  # noqa: E402
from trainpipe.contract.stages import STAGES  # noqa: E402
from trainpipe_localcluster import BATCH, CORE, Cluster, Kube, OperatorProcess, pipeline_manifest, pipelines_path, wait_for  # noqa: E402

SKIP = "executor.trainpipe.io/skip"
SKIP_MESSAGE = "executor.trainpipe.io/termination-message"
UNITS = {"lightgbm": 2, "xgboost": 2, "mlp": 2}


def seeded_spec() -> dict[str, Any]:
    """Every stage skipped; rank and plan pods report what real ones would."""
    plan = {"planDigest": "0" * 64, "units": UNITS, "path": "globals/training_plan/master_training_plan.json"}
    messages = {"rank": {"selected": 3}, "plan": plan}
    stages = {}
    for stage in STAGES.order:
        meta: dict[str, Any] = {"labels": {SKIP: "true"}}
        if stage in messages:
            meta["annotations"] = {SKIP_MESSAGE: json.dumps(messages[stage])}
        stages[stage] = {"podMetadata": meta}
    return {"training": {"families": list(UNITS)}, "stages": stages, "data": {"volume": None}}


class Watcher:
    """Times (monotonic) of: pipeline ADDED, Job ADDED, Job first seen Complete — per pipeline and stage."""

    def __init__(self, kube: Kube, namespace: str) -> None:
        self.kube, self.ns = kube, namespace
        self.pipeline_added: dict[str, float] = {}
        self.job_added: dict[str, list[tuple[str, float]]] = {}
        self.job_complete: dict[str, list[tuple[str, float]]] = {}
        self._complete_seen: set[str] = set()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._watch, args=(path, handler), daemon=True) for path, handler in (
            (pipelines_path(namespace), self._on_pipeline), (f"{BATCH}/namespaces/{namespace}/jobs", self._on_job))]
        for t in self._threads:
            t.start()

    def _watch(self, path: str, handler: Any) -> None:
        rv = self.kube.get(path)["metadata"]["resourceVersion"]
        while not self._stop.is_set():
            for event in self.kube.watch(path, rv, timeout_seconds=5):
                rv = event["object"]["metadata"].get("resourceVersion", rv)
                if event["type"] in ("ADDED", "MODIFIED"):  # not BOOKMARK (no labels) or ERROR
                    handler(event["type"], event["object"], time.monotonic())

    def _on_pipeline(self, kind: str, obj: dict[str, Any], at: float) -> None:
        if kind == "ADDED":
            self.pipeline_added.setdefault(obj["metadata"]["name"], at)

    def _on_job(self, kind: str, obj: dict[str, Any], at: float) -> None:
        labels = obj["metadata"]["labels"]
        pipeline, stage, name = labels[LABEL_PIPELINE], labels[LABEL_STAGE], obj["metadata"]["name"]
        if kind == "ADDED":
            self.job_added.setdefault(pipeline, []).append((stage, at))
        complete = any(c["type"] == "Complete" and c["status"] == "True" for c in (obj.get("status") or {}).get("conditions") or [])
        if complete and name not in self._complete_seen:
            self._complete_seen.add(name)
            self.job_complete.setdefault(pipeline, []).append((stage, at))

    def stop(self) -> None:
        self._stop.set()

    def latencies(self) -> tuple[list[float], list[float]]:
        first, handoff = [], []
        for pipeline, created in self.pipeline_added.items():
            added = self.job_added.get(pipeline, [])
            if added:
                first.append(min(t for _, t in added) - created)
            stages = list(STAGES.order)
            for before, after in zip(stages, stages[1:]):
                done = [t for s, t in self.job_complete.get(pipeline, []) if s == before]
                nxt = [t for s, t in added if s == after]
                if done and nxt:
                    handoff.append(min(nxt) - max(done))
        return first, handoff


def summary(values: list[float]) -> str:
    if not values:
        return "no samples"
    ordered = sorted(values)

    def pct(p: float) -> float:
        return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]

    return (f"median {statistics.median(ordered) * 1000:.0f} ms, p90 {pct(90) * 1000:.0f} ms, p99 {pct(99) * 1000:.0f} ms, "
            f"max {ordered[-1] * 1000:.0f} ms (n={len(ordered)})")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pipelines", type=int, default=20)
    parser.add_argument("--stagger", type=float, default=0.5, help="Seconds between pipeline creations.")
    parser.add_argument("--out", type=Path, default=REPO / "BENCHMARKS.md")
    args = parser.parse_args()

    state = Path(os.environ.get("TRAINPIPE_CLUSTER_DIR", REPO / ".cache" / "cluster"))
    versions = dict(line.split("=", 1) for line in (REPO / "hack" / "versions.env").read_text().splitlines() if "=" in line and not line.startswith("#"))
    tools_root = Path(os.environ.get("TRAINPIPE_TOOLS", Path.home() / ".cache/trainpipe/tools"))
    tools = {c: tools_root / f"{c}-{versions[f'{c.upper()}_VERSION'].strip()}" for c in ("kubernetes", "etcd", "kwok", "helm")}
    kube = Kube(state / "kubeconfig")
    cluster = Cluster(kubeconfig=state / "kubeconfig", state=state, tools=tools, kube=kube, started_here=False)
    ns = f"bench-operator-{secrets.token_hex(3)}"
    kube.create(f"{CORE}/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
    wait_for("default ServiceAccount", lambda: kube.exists(f"{CORE}/namespaces/{ns}/serviceaccounts/default"), timeout=30)
    kubeconfig = cluster.install_operator_access(state / "bench-operator.kubeconfig")
    operator = OperatorProcess(kubeconfig, state / "bench-operator.log", namespaces=[ns]).start()
    watcher = Watcher(kube, ns)
    time.sleep(1.0)
    started = time.monotonic()
    try:
        for i in range(args.pipelines):
            kube.create(pipelines_path(ns), pipeline_manifest(f"p{i:03d}", validate=False, **seeded_spec()))
            time.sleep(args.stagger)

        def all_ready() -> bool:
            items = kube.get(pipelines_path(ns))["items"]
            return len(items) == args.pipelines and all(
                any(c["type"] == "Ready" and c["status"] == "True" for c in (p.get("status") or {}).get("conditions") or []) for p in items)

        wait_for(f"{args.pipelines} pipelines Ready", all_ready, timeout=600, interval=1.0)
        wall = time.monotonic() - started
    finally:
        watcher.stop()
        operator.stop()
        kube.delete(f"{CORE}/namespaces/{ns}")
    first, handoff = watcher.latencies()
    command = f"hack/operator-bench.py --pipelines {args.pipelines}"
    body = "\n".join([
        f"## Operator hand-off latency (local control plane, {args.pipelines} pipelines, skipped pods)",
        "",
        f"Command: `make bench-operator` (= `{command}` on the running local cluster), {time.strftime('%Y-%m-%d', time.gmtime())}, {os.cpu_count()} cores.",
        f"Each pipeline: rank → select (3 units) → plan → cpu (lightgbm, xgboost: 2 units each) → gpu (mlp: 2 units) → report; "
        f"pods completed by the executor without running, created {args.stagger}s apart. Target: medians ≤ 1 s.",
        "",
        f"* CR created → first Job created: {summary(first)}",
        f"* a stage's last Job Complete → the next stage's Jobs created: {summary(handoff)}",
        f"* all {args.pipelines} pipelines Ready after {wall:.1f}s",
    ])
    print(body)
    subprocess.run([sys.executable, str(REPO / "hack" / "write-section.py"), str(args.out), "operator"], input=body, text=True, check=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
