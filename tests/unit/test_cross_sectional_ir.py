"""The cross-sectional IR rank measures reaches the routing decision, routing_plan.md and the report's ranking table."""

from __future__ import annotations

import numpy as np
import pandas as pd

from trainpipe.contract.cut import HoldoutCut, SymbolCoverage, SymbolCut
from trainpipe.contract.names import Leakage, Stability, TargetStatus, TaskType
from trainpipe.contract.pipeline import RoutingSpec
from trainpipe.contract.plan import PlanMetadata, RoutingCandidate
from trainpipe.contract.rankings import RankingsFile, TargetRanking, TooGoodLimits
from trainpipe.io.atomic import write_parquet
from trainpipe.io.layout import Layout
from trainpipe.io.plan_files import routing_markdown
from trainpipe.io.stage_files import write_rankings
from trainpipe.report.html import render
from trainpipe.stages.routing import build_routing_plan

META = PlanMetadata(generated_at="2024-01-02T03:04:05Z", run_id="run1", code_version="0.1.0", config_digest="cfg", data_digest="data")


def cand(symbol, score, ir=None):
    return RoutingCandidate(
        target="fwd_ret_5d", symbol=symbol, task=TaskType.REGRESSION, horizon_minutes=7200, metric_name="ic", score=score,
        score_ci_low=score - 0.01, score_ci_high=score + 0.01, sample_size=5000, n_folds=3, stability=Stability.UNKNOWN,
        leakage_status=Leakage.SAFE, ir=ir,
    )


def test_the_cs_decision_and_the_route_table_show_the_ir():
    plan = build_routing_plan([cand(None, 0.04, ir=0.3125), cand("AAA", 0.05)], ["AAA"], RoutingSpec(), META, "METRICS/c.parquet")
    decision = plan.targets["fwd_ret_5d"].cross_sectional
    assert decision.ir == 0.3125
    assert plan.to_snake()["targets"]["fwd_ret_5d"]["cross_sectional"]["ir"] == 0.3125  # in routing_plan.json
    assert "ic=0.0400, IR=0.3125, n=5000" in routing_markdown(plan)


def test_a_target_without_a_cross_section_shows_no_ir():
    plan = build_routing_plan([cand("AAA", 0.05)], ["AAA"], RoutingSpec(), META, "METRICS/c.parquet")
    assert plan.targets["fwd_ret_5d"].cross_sectional.ir is None
    assert "IR=–" in routing_markdown(plan)


def _row(rank, target):
    return TargetRanking(rank=rank, target=target, task=TaskType.REGRESSION, horizon_minutes=1440, metric_name="ic", score=0.03,
                         ic=0.02, rank_ic=0.03, r2=None, auc=None, lgbm_score=0.03, linear_score=0.03, consistency=1.0,
                         composite=0.03, n_samples=900, n_folds=2, status=TargetStatus.OK, reason="", selected=True)


def test_the_reports_ranking_table_shows_each_targets_cross_sectional_ir(tmp_path):
    layout = Layout(tmp_path)
    bar = "2020-01-01T00:00:00Z"
    cut = HoldoutCut(fraction=0.2, purge_bars=2, horizon_bars={"fwd_ret_1d": 1, "fwd_ret_2d": 2}, holdout_start=bar, development_end=bar,
                     min_development_rows=5, symbols={"AAA": SymbolCut(first_ts=bar, last_ts=bar, rows=10, development_rows=8, holdout_rows=2,
                                                                       coverage=SymbolCoverage.FULL)})
    write_rankings(layout, RankingsFile(
        interval_minutes=1440.0, symbols=["AAA", "BBB", "CCC"], features=["f"], candidate_features=["f"], leaks=[],
        selected=["fwd_ret_1d", "fwd_ret_2d"], holdout_cut=cut, too_good_limits=TooGoodLimits(max_rank_ic=0.15, max_r2=0.05, max_auc=0.65),
        targets=[_row(1, "fwd_ret_1d"), _row(2, "fwd_ret_2d")],
    ))
    write_parquet(layout.oos_scores_parquet, pd.DataFrame({
        "target": ["fwd_ret_1d", "fwd_ret_1d", "fwd_ret_1d", "fwd_ret_2d"],
        "symbol": [None, None, "AAA", "AAA"],
        "score": [0.03, 0.05, 0.04, 0.02],
        "ir": [0.25, 0.75, np.nan, np.nan],
    }))
    page = render(layout)
    table = page[page.index("<h2>Target ranking</h2>"):page.index("<h2>Selected features</h2>")]
    assert "<th>cs_ir</th>" in table
    rows = {r.split("</td>")[1].removeprefix("<td>"): r for r in table.split("<tr>")[2:]}
    assert "<td class='num'>0.5000</td>" in rows["fwd_ret_1d"]  # the mean of its folds' IRs
    assert "0.5000" not in rows["fwd_ret_2d"] and "muted" in rows["fwd_ret_2d"]  # symbol folds only: no cross-section, no IR
