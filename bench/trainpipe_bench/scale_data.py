"""`make bench-scale-data`: wall time and each stage's peak RSS on generated panels of 0.5M, 2M and 5M rows (data.rowBudget at work).

Panels are symbols × 5,000 five-minute bars (100, 400 and 1,000 symbols), written as the loader reads
them, `symbol=<SYM>/<SYM>.parquet` with row groups of 500 bars (so a row budget skips groups by their
timestamp statistics), and cached under ~/.cache/trainpipe/scale-data/<rows>-<seed>/. Each stage runs
as its own `trainpipe <stage>` process, as a Job's pod does; its peak RSS is the largest resident set
of that process and its children (os.wait4), the number a pod's memory limit has to hold.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

BARS = 5_000
SIZES = {"0.5M": 100, "2M": 400, "5M": 1_000}  # label → symbols (× 5,000 bars)
ROW_GROUP = 500
N_NOISE = 8
SECTION = "scale-data"
REPO = Path(__file__).resolve().parents[2]


def cache_root() -> Path:
    base = os.environ.get("TRAINPIPE_CACHE") or str(Path.home() / ".cache" / "trainpipe")
    return Path(base) / "scale-data"


# ------------------------------------------------------------------ the panels


def symbol_bars(index: int, bars: int, seed: int) -> pa.Table:
    """One symbol's five-minute bars: past returns and volatility (legitimate), noise, a planted signal `sig`, three targets.

    `sig` predicts the next bar's return with an IC of about 0.06 (real intraday features stay under 0.1,
    and a stronger one would trip the too-good guard); the noise features predict nothing.
    """
    rng = np.random.default_rng([seed, index])
    ts = pd.date_range("2024-01-01", periods=bars, freq="5min", tz="UTC")
    sig = rng.standard_normal(bars)
    vol = 0.001 * np.exp(0.3 * rng.standard_normal() + 0.2 * np.sin(np.arange(bars) / 500))
    ret = vol * (0.06 * sig + rng.standard_normal(bars))  # ret[t]: the return from bar t to t+1, known at t+1
    past = np.r_[np.nan, ret[:-1]]  # the return that ended at t
    columns: dict[str, object] = {"ts": ts, "sig": sig.astype(np.float32)}
    for k in (1, 3, 12):
        columns[f"past_ret_{k}"] = pd.Series(past).rolling(k).sum().to_numpy(dtype=np.float32)
    columns["vol_12"] = pd.Series(past).rolling(12).std().to_numpy(dtype=np.float32)
    for j in range(N_NOISE):
        columns[f"noise_{j}"] = rng.standard_normal(bars).astype(np.float32)
    fwd_1h = pd.Series(ret[::-1]).rolling(12).sum().to_numpy()[::-1]  # ret[t] + … + ret[t+11]
    columns["fwd_ret_5m"] = ret
    columns["fwd_ret_1h"] = fwd_1h
    columns["y_up_5m"] = (ret > 0).astype(np.float64)
    return pa.table(columns)


def generate(label: str, seed: int = 7, root: Path | None = None) -> Path:
    """The panel of this size, generated once per seed (a `.complete` marker makes an interrupted write start over)."""
    symbols = SIZES[label]
    out = (root or cache_root()) / f"{symbols * BARS}-{seed}"
    if (out / ".complete").exists():
        return out
    shutil.rmtree(out, ignore_errors=True)
    for i in range(symbols):
        name = f"S{i:04d}"
        folder = out / f"symbol={name}"
        folder.mkdir(parents=True)
        pq.write_table(symbol_bars(i, BARS, seed), folder / f"{name}.parquet", row_group_size=ROW_GROUP)
    (out / ".complete").write_text(f"{symbols} symbols × {BARS} bars, seed {seed}\n")
    return out


# ------------------------------------------------------------------ one run, stage by stage


def bench_spec(data_dir: Path, row_budget: int | None, seed: int) -> dict:
    """The pipeline: every target and feature ranked, one CPU family, cross-sectional routes only (a symbol lane would train 1,000 models)."""
    data: dict = {"dir": str(data_dir)}
    if row_budget is not None:
        data["rowBudget"] = row_budget
    return {
        "data": data, "seed": seed,
        "targets": {"auto": True, "topN": 2}, "features": {"auto": True, "topM": 8},
        "ranking": {"maxRows": 100_000},
        "selection": {"methods": ["lightgbm_gain", "xgboost_gain", "mutual_info", "permutation"]},
        "routing": {"minSampleSizeSymbol": 10**9, "enableExperimentalLane": False},
        "evidence": {"trainAnyway": True},  # the benchmark measures cost: the run trains whatever the gates say
        "training": {"families": ["lightgbm"]},
    }


STEPS: tuple[tuple[str, list[str]], ...] = (
    ("rank", ["rank"]), ("select", ["select"]), ("plan", ["plan"]), ("train-cpu", ["train", "--stage", "cpu"]), ("report", ["report"]),
)


@dataclass(frozen=True)
class StageRun:
    stage: str
    seconds: float
    peak_mb: float
    cpu_s: float  # user + system CPU of the stage's process tree: what other work on the machine does not inflate


def run_stage(command: list[str], spec_file: Path, out: Path, threads: int) -> StageRun:
    """One `trainpipe <stage>` process; peak RSS and CPU time from wait4: the largest resident set in its process tree, and its CPU seconds."""
    cmd = [sys.executable, "-m", "trainpipe.cli.main", *command, "--spec-file", str(spec_file), "--output-dir", str(out)]
    if command[0] != "report":
        cmd += ["--threads", str(threads)]
    log = out.parent / f"{command[0]}-{command[-1]}.log"
    start = time.perf_counter()
    with log.open("w") as sink:
        proc = subprocess.Popen(cmd, stdout=sink, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - start
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {code}:\n{log.read_text()[-3000:]}")
    return StageRun(command[0] if command[0] != "train" else command[-1], seconds, usage.ru_maxrss / 1024, usage.ru_utime + usage.ru_stime)


def run_size(label: str, seed: int, row_budget: int | None, threads: int, work: Path) -> dict:
    started = time.perf_counter()
    data_dir = generate(label, seed)
    generate_s = time.perf_counter() - started
    out = work / label / "out"
    out.mkdir(parents=True)
    spec_file = work / label / "spec.json"
    spec_file.write_text(json.dumps(bench_spec(data_dir, row_budget, seed)))
    load_before = os.getloadavg()[0]
    stages = [run_stage(command, spec_file, out, threads) for _, command in STEPS]
    from trainpipe.io.layout import Layout

    rankings = json.loads(Layout(out).rankings_json.read_text())
    sample = _search(rankings)
    return {
        "label": label, "row_budget": row_budget, "rows": SIZES[label] * BARS, "symbols": SIZES[label], "rows_read": sample["rowsKept"] if sample else SIZES[label] * BARS,
        "blocks": len(sample["blocks"]) if sample else 0, "generate_s": generate_s, "stages": [s.__dict__ for s in stages],
        "wall_s": sum(s.seconds for s in stages), "cpu_s": sum(s.cpu_s for s in stages), "peak_mb": max(s.peak_mb for s in stages),
        "load": (load_before, os.getloadavg()[0]), "selected": rankings.get("selected"),
    }


def _search(node: object) -> dict | None:
    """The run's PanelSample (the holdout cut's `sample`) inside the rankings file, if the panel was cut down."""
    if isinstance(node, dict):
        if isinstance(node.get("sample"), dict) and "rowsKept" in node["sample"]:
            return node["sample"]
        node = list(node.values())
    if isinstance(node, list):
        for child in node:
            found = _search(child)
            if found is not None:
                return found
    return None


# ------------------------------------------------------------------ report


def section(results: list[dict], threads: int, command: str) -> str:
    from trainpipe.contract.pipeline import DataSpec
    from trainpipe_bench.stage_bench import machine

    default = DataSpec().row_budget
    m = machine()
    stages = [name for name, _ in STEPS]
    lines = [
        "## Panels that outgrow one pod (data.rowBudget)",
        "",
        f"`{command}` on {m['cpu']} ({m['cores']} cores shared with other work, {m['memory_gb']} GB), {threads} threads per stage, "
        f"default row budget {default:,} rows. Generated panels: symbols × {BARS:,} five-minute bars, `symbol=<SYM>/<SYM>.parquet` with "
        f"{ROW_GROUP}-bar row groups; one CPU family (lightgbm), cross-sectional routes, ranking.maxRows 100,000. "
        "Each stage is its own `trainpipe <stage>` process, as in a pod; peak RSS is the largest resident set of the process "
        "and its children (wait4), CPU s its user + system time (the wall time of these 2 shared cores moves with other work; the CPU time much less). A panel over the budget is read as whole timestamp blocks, chosen before any feature is read.",
        "",
        "| rows | symbols | data.rowBudget | rows read | blocks | " + " | ".join(f"{s} s (CPU s)" for s in stages) + " | wall s (CPU s) | "
        + " | ".join(f"{s} peak MiB" for s in stages) + " | load avg (start→end) |",
        "| " + " | ".join(["---:"] * (7 + 2 * len(stages))) + " |",
    ]
    for r in sorted(results, key=lambda r: (r["rows"], r.get("row_budget") or default)):
        secs = " | ".join(f"{s['seconds']:.1f} ({_cpu(s)})" for s in r["stages"])
        peaks = " | ".join(f"{s['peak_mb']:.0f}" for s in r["stages"])
        budget = r.get("row_budget") or default
        lines.append(f"| {r['rows']:,} | {r['symbols']:,} | {budget:,}{'' if budget == default else ' (not the default)'} | {r['rows_read']:,} | {r['blocks']} | {secs} | {r['wall_s']:.1f} ({_cpu(r)}) | {peaks} | "
                     f"{r['load'][0]:.1f}→{r['load'][1]:.1f} |")
    lines += ["", "Goal: every stage ≤ 2 GB at 5M rows with the default budget; wall time growing sub-linearly past the budget "
              "(the rows read stop growing at the budget; what grows is listing and reading the timestamps of more files)."]
    return "\n".join(lines)


def _cpu(run: dict) -> str:
    return f"{run['cpu_s']:.1f}" if "cpu_s" in run else "–"


def add_run_args(parser: argparse.ArgumentParser) -> None:
    """The options both bench-scale-data runs take (locally, and through the operator): one SCALE_DATA_ARGS for both."""
    parser.add_argument("--sizes", nargs="+", choices=list(SIZES), default=list(SIZES), help="Panel sizes (default: all three).")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--row-budget", type=int, default=None, help="data.rowBudget (default: the spec's default).")
    parser.add_argument("--out", type=Path, default=REPO / "BENCHMARKS.md")
    parser.add_argument("--json", type=Path, default=None, help="Also write the raw results here.")
    parser.add_argument("--from-json", type=Path, nargs="+", default=None, help="Write the section from earlier --json results instead of running.")


def read_results(paths: list[Path]) -> list[dict]:
    return [r for path in paths for r in json.loads(path.read_text())]


def make_command(args: argparse.Namespace) -> str:
    """The make command line that reproduces this run's sizes and budget."""
    flags = ([f"--sizes {' '.join(args.sizes)}"] if args.sizes != list(SIZES) else []) + ([f"--row-budget {args.row_budget}"] if args.row_budget else [])
    return "make bench-scale-data" + (f" SCALE_DATA_ARGS='{' '.join(flags)}'" if flags else "")


def write_section(out: Path, name: str, body: str) -> None:
    subprocess.run([sys.executable, str(REPO / "hack" / "write-section.py"), str(out), name], input=body, text=True, check=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m trainpipe_bench.scale_data", description=__doc__.splitlines()[0])
    add_run_args(parser)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--generate-only", action="store_true", help="Only build (or find) the cached panels.")
    args = parser.parse_args(argv)
    if args.from_json:
        write_section(args.out, SECTION, section(read_results(args.from_json), args.threads, "make bench-scale-data (and --row-budget for the rows marked)"))
        return 0
    if args.generate_only:
        for label in args.sizes:
            print(label, generate(label, args.seed))
        return 0
    results = []
    with tempfile.TemporaryDirectory(prefix="trainpipe-scale-") as tmp:
        for label in args.sizes:
            result = run_size(label, args.seed, args.row_budget, args.threads, Path(tmp))
            print(json.dumps(result), flush=True)
            results.append(result)
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=1))
    write_section(args.out, SECTION, section(results, args.threads, make_command(args)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
