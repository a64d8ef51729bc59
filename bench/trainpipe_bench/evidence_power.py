"""What the evidence gates cost in power and save in false discoveries: `python -m trainpipe_bench.evidence_power`.

On generated daily panels (8 symbols × 600 bars, a planted feature with a chosen IC to the next day's
return, `fwd_ret_noise_1d` always unpredictable) each seed is ranked once, and the same ranking is judged
two ways: by point estimates (what trainpipe did before the gates: every OK target kept within topN, a side
usable when its score clears the side's minimum) and by the gates (a target kept when its composite's lower
bound clears zero, a side when its score's lower bound clears the minimum, Benjamini–Hochberg at 5%).
A planted target is "found" when kept, "usable" when its cross-sectional side is strong or weak, and "trained"
when its cross-sectional side trains at all (usable, or in the capped experimental lane).
"""

from __future__ import annotations

import argparse
import time

import pandas as pd

from trainpipe.contract.names import Leakage, SideState, Stability, TargetStatus
from trainpipe.contract.pipeline import RoutingSpec
from trainpipe.contract.plan import PlanMetadata
from trainpipe.stages.candidates import build_candidates
from trainpipe.stages.rank import RankParams, rank_targets
from trainpipe.stages.routing import build_routing_plan
from trainpipe_bench.synthetic import planted_panel

SYMBOLS = tuple(f"S{i}" for i in range(8))
FEATURES = ["sig", "noise_0", "noise_1", "noise_2", "noise_3"]
TARGETS = ["fwd_ret_1d", "y_up_1d", "fwd_ret_noise_1d"]
META = PlanMetadata(generated_at="2026-01-01T00:00:00Z", run_id="bench", code_version="bench", config_digest="0" * 64, data_digest="0" * 64)


def judge(seed: int, signal: float, n_days: int) -> dict[str, float]:
    ranked = rank_targets(planted_panel(n_days, SYMBOLS, seed, signal), FEATURES, TARGETS, 1440, RankParams(folds=4, threads=2, block_on_leakage=False))
    table = ranked.table.set_index("target")
    ok = table["status"] == TargetStatus.OK.value
    candidates = build_candidates(ranked.oos_scores, {t: Stability.STABLE for t in TARGETS}, {t: Leakage.SAFE for t in TARGETS})
    point = build_routing_plan(candidates, SYMBOLS, RoutingSpec(), META, "-", alpha=None)
    gated = build_routing_plan(candidates, SYMBOLS, RoutingSpec(), META, "-", alpha=0.05)

    def usable(plan, target: str) -> bool:
        return target in plan.targets and plan.targets[target].cross_sectional.enabled

    def trains(plan, target: str) -> bool:
        return target in plan.targets and plan.targets[target].cross_sectional.state is not SideState.DISALLOWED

    noise = "fwd_ret_noise_1d"
    return {
        "point_found": float(ok["fwd_ret_1d"]), "gate_found": float(table.loc["fwd_ret_1d", "evidence"]),
        "point_routed": float(ok["fwd_ret_1d"] and usable(point, "fwd_ret_1d")),
        "gate_routed": float(table.loc["fwd_ret_1d", "evidence"] and usable(gated, "fwd_ret_1d")),
        "point_trained": float(ok["fwd_ret_1d"] and trains(point, "fwd_ret_1d")),
        "gate_trained": float(table.loc["fwd_ret_1d", "evidence"] and trains(gated, "fwd_ret_1d")),
        "point_noise_kept": float(ok[noise]), "gate_noise_kept": float(table.loc[noise, "evidence"]),
        "point_noise_routed": float(ok[noise] and trains(point, noise)), "gate_noise_routed": float(table.loc[noise, "evidence"] and trains(gated, noise)),
        "point_any_kept": float(ok.any()), "gate_any_kept": float(table["evidence"].any()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--days", type=int, default=600)
    parser.add_argument("--signals", type=float, nargs="+", default=[0.0, 0.05, 0.1])
    args = parser.parse_args()
    started = time.time()
    print("| planted IC | seeds | target kept: points → gates | CS side usable | CS side trains (usable or experimental) "
          "| noise target kept | noise target's CS side trains | any target kept |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for signal in args.signals:
        rows = pd.DataFrame([judge(seed, signal, args.days) for seed in range(args.seeds)]).mean()

        def pair(key: str, rows: pd.Series = rows) -> str:
            return f"{rows[f'point_{key}']:.0%} → {rows[f'gate_{key}']:.0%}"

        found = "—" if signal == 0 else pair("found")
        routed = "—" if signal == 0 else pair("routed")
        trained = "—" if signal == 0 else pair("trained")
        print(f"| {signal:g} | {args.seeds} | {found} | {routed} | {trained} | {pair('noise_kept')} | {pair('noise_routed')} | {pair('any_kept')} |")
    print(f"\n({time.time() - started:.0f} s)")


if __name__ == "__main__":
    main()
