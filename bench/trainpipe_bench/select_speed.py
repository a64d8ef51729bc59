"""Wall time and peak memory of the select stage on the 160,000-row panel, for several checkouts side by side: `python -m trainpipe_bench.select_speed`.

Builds the "memory at scale" panel of `stage_bench` once (40 symbols × 4,000 rows, 27 features, 6 targets;
no network), runs rank once, then times select in a fresh process per run (`stage_bench.run_stage_process`),
each run on its own copy of rank's output so no run sees another's selection as "the previous run". A
variant is `name=ROOT`, a checkout whose jobs/ and bench/ folders go first on the child's PYTHONPATH; with
several, the runs alternate (ABAB…) so a shared, noisy machine slows them alike, and the table gives
medians, each variant's ratio to the first, and how far each variant's selections agree with the first's.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from trainpipe.contract.names import Stage
from trainpipe_bench.stage_bench import foxml_scale_data, run_stage_process

N_SYMBOLS = 40  # × 4,000 rows: the 160,000-row panel of BENCHMARKS.md's "Memory at scale"
# The folders of a checkout that hold the importable packages (the Makefile's PYTHONPATH order).
PACKAGE_FOLDERS = ("jobs", "operator", "bench", "localcluster")


@dataclass(frozen=True)
class Variant:
    name: str
    root: Path | None  # None: this process's own PYTHONPATH

    def env(self) -> dict[str, str] | None:
        if self.root is None:
            return None
        path = os.pathsep.join(str(self.root / f) for f in PACKAGE_FOLDERS)
        return {**os.environ, "PYTHONPATH": path}


def parse_variant(text: str) -> Variant:
    """`name=ROOT` → a Variant; the ROOT must hold jobs/trainpipe."""
    name, sep, root = text.partition("=")
    if not sep or not name or not root:
        raise argparse.ArgumentTypeError(f"--variant {text!r}: expected name=PATH (a checkout's root), e.g. base=/work/wt-base")
    path = Path(root).resolve()
    if not (path / "jobs" / "trainpipe").is_dir():
        raise argparse.ArgumentTypeError(f"--variant {text!r}: {path}/jobs/trainpipe not found; give the root of a trainpipe checkout")
    return Variant(name, path)


def scale_spec(data_dir: Path) -> dict:
    """The spec of the "memory at scale" case in stage_bench (kept in step with it by hand: it is the measured case)."""
    return {"data": {"dir": str(data_dir)}, "targets": {"topN": 6}, "features": {"topM": 27}, "seed": 42}


def selections(out: Path) -> dict[str, list[str]]:
    """Each target's selected features, best first, as the select stage wrote them."""
    found = {}
    for path in sorted((out / "selection").glob("*/selected_features.json")) if (out / "selection").is_dir() else []:
        raw = json.loads(path.read_text())
        found[raw["target"]] = list(raw["features"])
    return found


def jaccard(a: list[str], b: list[str]) -> float:
    union = set(a) | set(b)
    return len(set(a) & set(b)) / len(union) if union else 1.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m trainpipe_bench.select_speed", description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, required=True, help="Where the 160,000-row panel is (built there when it holds no parquet).")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--variant", type=parse_variant, action="append", default=[],
                        help="name=ROOT of a checkout to time (repeatable; the first is the baseline of the ratios). Default: this checkout.")
    parser.add_argument("--keep", type=Path, help="Keep each variant's last output folder here (to compare feature scores).")
    args = parser.parse_args(argv)
    variants: list[Variant] = args.variant or [Variant("this", None)]

    data_dir = args.data_dir.resolve()
    if not any(data_dir.rglob("*.parquet")):
        foxml_scale_data(data_dir, n_symbols=N_SYMBOLS)
        print(f"select_speed: built the panel in {data_dir}", file=sys.stderr)
    spec = scale_spec(data_dir)
    scratch = Path(tempfile.mkdtemp(prefix="trainpipe-select-speed-"))
    runs: dict[str, list[dict]] = {v.name: [] for v in variants}
    chosen: dict[str, dict[str, list[str]]] = {}
    try:
        ranked = scratch / "ranked"
        run_stage_process(Stage.RANK, spec, ranked, args.threads, env=variants[0].env())
        for i in range(args.repeats):
            for v in variants:  # alternating: every repeat runs each variant once, in order
                out = scratch / f"{v.name}-{i}"
                shutil.copytree(ranked, out)
                runs[v.name].append(run_stage_process(Stage.SELECT, spec, out, args.threads, env=v.env()))
                chosen[v.name] = selections(out)
                print(f"select_speed: {v.name} #{i + 1}: {runs[v.name][-1]['seconds']:.1f} s", file=sys.stderr)
                if args.keep is not None and i == args.repeats - 1:
                    shutil.copytree(out, args.keep / v.name, dirs_exist_ok=True)
                shutil.rmtree(out)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    print(report(variants, runs, chosen, args))
    return 0


def report(variants: list[Variant], runs: dict[str, list[dict]], chosen: dict[str, dict[str, list[str]]], args) -> str:
    """A markdown table of medians and ratios, then each target's selection against the first variant's."""
    first = variants[0].name
    base = statistics.median(r["seconds"] for r in runs[first])
    lines = [f"select on {N_SYMBOLS * 4000:,} rows, {args.threads} threads, median of {args.repeats} (alternating)", "",
             "| variant | root | wall s (median) | min–max | peak RSS MiB (median) | × first |", "| --- | --- | ---: | ---: | ---: | ---: |"]
    for v in variants:
        secs = [r["seconds"] for r in runs[v.name]]
        med = statistics.median(secs)
        peak = statistics.median(r["peak_mb"] for r in runs[v.name])
        lines.append(f"| {v.name} | {v.root or '(this)'} | {med:.1f} | {min(secs):.1f}–{max(secs):.1f} | {peak:.0f} | {med / base:.2f} |")
    lines += ["", "| target | " + " | ".join(f"{v.name} selected" for v in variants) + " | same list and order as "
              + first + " | overlap (Jaccard) |", "| --- |" + " ---: |" * (len(variants) + 2)]
    for target in sorted(chosen.get(first, {})):
        ref = chosen[first][target]
        others = [chosen.get(v.name, {}).get(target, []) for v in variants]
        same = " ".join("yes" if o == ref else "no" for o in others[1:]) or "–"
        overlap = " ".join(f"{jaccard(o, ref):.2f}" for o in others[1:]) or "–"
        lines.append(f"| {target} | " + " | ".join(str(len(o)) for o in others) + f" | {same} | {overlap} |")
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
