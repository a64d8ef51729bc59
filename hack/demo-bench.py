#!/usr/bin/env python3
"""The demo pipeline on the real node beside the simulated one: wall times into BENCHMARKS.md (`make bench-demo`).

For each mode the local cluster is started afresh (`localcluster/down.sh`, then `up.sh` with
TRAINPIPE_REAL_NODE=require or off), `hack/demo-cluster.sh` runs the demo end to end, and the
pipeline's own clock (status.startedAt → finishedAt, and each stage's) is read back. On the real node
the operator and every CPU-side stage run in real containers from the images in the cluster's registry
(the script builds and pushes them first; that time is reported apart); on the simulated nodes every pod
is a host process of the pod executor. The GPU stage runs on a simulated GPU node in both.

Usage: hack/demo-bench.py [--repeat N] [--out BENCHMARKS.md] [--no-write]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
STATE = Path(os.environ.get("TRAINPIPE_CLUSTER_DIR", REPO / ".cache" / "cluster"))
STAGES = ("rank", "select", "plan", "cpu", "gpu", "report")
MODES = {"real node": "require", "simulated nodes": "off"}


def _seconds(a: str | None, b: str | None) -> float | None:
    if not a or not b:
        return None
    fmt = "%Y-%m-%dT%H:%M:%SZ"
    return (dt.datetime.strptime(b, fmt) - dt.datetime.strptime(a, fmt)).total_seconds()


def run_mode(real_node: str) -> dict[str, object]:
    env = os.environ | {"TRAINPIPE_CLUSTER_DIR": str(STATE), "TRAINPIPE_REAL_NODE": real_node}
    subprocess.run([str(REPO / "localcluster" / "down.sh")], env=env, check=True, capture_output=True)
    subprocess.run([str(REPO / "localcluster" / "up.sh")], env=env, check=True, stdout=subprocess.DEVNULL)
    started = time.monotonic()
    demo = subprocess.run([str(REPO / "hack" / "demo-cluster.sh")], env=env, capture_output=True, text=True, check=False)
    wall = time.monotonic() - started
    if demo.returncode != 0:
        raise SystemExit(f"demo-cluster.sh failed with TRAINPIPE_REAL_NODE={real_node}:\n{demo.stderr[-4000:]}")
    kubectl = sorted((Path.home() / ".cache/trainpipe/tools").glob("kubernetes-*/bin/kubectl"))[-1]
    obj = json.loads(subprocess.run([str(kubectl), "--kubeconfig", str(STATE / "kubeconfig"), "get", "tp", "demo", "-n", "trainpipe-demo",
                                     "-o", "json"], capture_output=True, text=True, check=True).stdout)
    status = obj["status"]
    pushed = next((line for line in demo.stderr.splitlines() if "pushed" in line), "")
    return {"wall": wall, "pipeline": _seconds(status.get("startedAt"), status.get("finishedAt")),
            "stages": {s: _seconds((status["stages"].get(s) or {}).get("startedAt"), (status["stages"].get(s) or {}).get("finishedAt"))
                       for s in STAGES}, "progress": status.get("progress"), "pushed": pushed}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=1, help="runs per mode (medians are reported)")
    parser.add_argument("--out", type=Path, default=REPO / "BENCHMARKS.md")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)
    results: dict[str, list[dict[str, object]]] = {m: [] for m in MODES}
    for _ in range(args.repeat):
        for mode, switch in MODES.items():  # side by side, alternating
            results[mode].append(run_mode(switch))
            print(f"{mode}: {results[mode][-1]}", file=sys.stderr)
    subprocess.run([str(REPO / "localcluster" / "down.sh")], env=os.environ | {"TRAINPIPE_CLUSTER_DIR": str(STATE)}, check=False,
                   capture_output=True)

    def med(mode: str, key: str, stage: str | None = None) -> str:
        values = [r["stages"][stage] if stage else r[key] for r in results[mode]]  # type: ignore[index]
        values = [v for v in values if v is not None]
        return f"{statistics.median(values):.0f}" if values else "-"

    lines = [
        "## The demo pipeline in real containers beside the simulated nodes (make demo-cluster)",
        "",
        f"Measured by `hack/demo-bench.py --repeat {args.repeat}` on {dt.date.today()}, {os.cpu_count()} cores, "
        f"{platform.python_version()}; medians of {args.repeat} run(s) per mode, modes alternating. "
        "`examples/cluster-pipeline.yaml`: 3 symbols, 2 targets, 8 features, lightgbm + xgboost (CPU) and mlp (GPU stage, "
        "on a simulated GPU node in both modes). Each mode starts a fresh cluster; the pipeline's seconds come from its "
        "status (whole seconds).",
        "",
        "| | demo script wall (s) | pipeline startedAt→finishedAt (s) | " + " | ".join(STAGES) + " |",
        "| --- | --- | --- | " + " | ".join("---" for _ in STAGES) + " |",
    ]
    for mode in MODES:
        lines.append(f"| {mode} | {med(mode, 'wall')} | {med(mode, 'pipeline')} | " + " | ".join(med(mode, '', s) for s in STAGES) + " |")
    lines += ["", "On the real node the demo script also builds (from the build cache when it holds them) and pushes the operator and jobs-cpu images, and the "
              "node pulls jobs-cpu (1.9 GB unpacked) once per fresh cluster: that is in the script's wall time, not the pipeline's."]
    text = "\n".join(lines)
    print(text)
    if not args.no_write:
        subprocess.run([sys.executable, str(REPO / "hack" / "write-section.py"), str(args.out), "demo"], input=text, text=True, check=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
