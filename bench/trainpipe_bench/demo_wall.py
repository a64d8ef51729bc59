"""Wall time of the demo pipeline, whole and per stage, for several builds side by side: `python -m trainpipe_bench.demo_wall`.

Each variant is a command prefix that runs `trainpipe` (e.g. another checkout's virtualenv); the demo's own
arguments and a fresh output folder are appended. Variants run alternately, one at a time, so a noisy shared
machine slows them alike; the table gives medians. A stage's time is the gap between its record's
`finished_at` and the previous one's (rank's from the command's start), so it includes the worker start-ups.
"""

from __future__ import annotations

import argparse
import json
import shlex
import statistics
import subprocess
import tempfile
import time
from datetime import datetime
from pathlib import Path

STAGES = ("rank", "select", "plan", "cpu", "gpu")
DEMO_ARGS = ("run", "--auto-targets", "--auto-features", "--families", "lightgbm", "xgboost", "catboost", "mlp", "lstm")


def stage_seconds(run_dir: Path, started: float) -> dict[str, float]:
    """Seconds each stage took, from the run folder's stage records (missing stages are left out)."""
    out, previous = {}, started
    for stage in STAGES:
        path = run_dir / ".trainpipe" / f"{stage}.json"
        if not path.exists():
            continue
        finished = datetime.fromisoformat(json.loads(path.read_text())["finished_at"]).timestamp()
        out[stage], previous = finished - previous, finished
    return out


def run_once(prefix: str, data_dir: Path, out_dir: Path) -> dict[str, float]:
    cmd = [*shlex.split(prefix), *DEMO_ARGS, "--data-dir", str(data_dir), "--output-dir", str(out_dir)]
    started = time.time()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.time() - started
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    return {"total": wall, **stage_seconds(out_dir, started)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m trainpipe_bench.demo_wall", description=__doc__.splitlines()[0])
    parser.add_argument("--variant", action="append", required=True, metavar="NAME=PREFIX",
                        help="a build to time: NAME=command prefix that runs trainpipe (repeat for each build)")
    parser.add_argument("--data-dir", type=Path, default=Path("data/example"))
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args(argv)
    variants = dict(v.split("=", 1) for v in args.variant)
    times: dict[str, list[dict[str, float]]] = {name: [] for name in variants}
    with tempfile.TemporaryDirectory(prefix="demo-wall-") as tmp:
        for i in range(args.repeats):
            for name, prefix in variants.items():
                result = run_once(prefix, args.data_dir.resolve(), Path(tmp) / f"{name}-{i}")
                times[name].append(result)
                print(f"# {name} #{i + 1}: " + ", ".join(f"{k} {v:.1f} s" for k, v in result.items()), flush=True)
    cols = ["total", *STAGES]
    print(f"\n| build | {' | '.join(c + ' s (median)' for c in cols)} | runs (total s) |")
    print("| --- |" + " ---: |" * (len(cols) + 1))
    for name, runs in times.items():
        medians = [statistics.median(r[c] for r in runs) if all(c in r for r in runs) else float("nan") for c in cols]
        print(f"| {name} | " + " | ".join(f"{m:.1f}" for m in medians) + " | " + ", ".join(f"{r['total']:.0f}" for r in runs) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
