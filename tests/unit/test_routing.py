"""Routing rules: the full CS × symbol × behaviour route table, side eligibility checks in order, the cap and the plan."""

from __future__ import annotations

import itertools

import pytest

from trainpipe.contract.names import Leakage, Route, SideState, Stability, TaskType
from trainpipe.contract.pipeline import RoutingSpec
from trainpipe.contract.plan import PlanMetadata, RoutingCandidate
from trainpipe.stages.routing import (
    HorizonTier,
    Side,
    build_routing_plan,
    combine,
    horizon_tier,
    resolve_thresholds,
    route_target,
    side_state,
)

# ------------------------------------------------------------------------------------ route table
# Golden: every (CS state, local state, both_strong_behavior) → route. One row per test.
ROUTE_TABLE = """
STRONG       STRONG       ROUTE_BOTH     ROUTE_BOTH
STRONG       STRONG       PREFER_CS      ROUTE_CROSS_SECTIONAL
STRONG       STRONG       PREFER_SYMBOL  ROUTE_SYMBOL_SPECIFIC
STRONG       WEAK_BUT_OK  ROUTE_BOTH     ROUTE_BOTH
STRONG       WEAK_BUT_OK  PREFER_CS      ROUTE_CROSS_SECTIONAL
STRONG       WEAK_BUT_OK  PREFER_SYMBOL  ROUTE_SYMBOL_SPECIFIC
STRONG       EXPERIMENTAL ROUTE_BOTH     ROUTE_CROSS_SECTIONAL
STRONG       EXPERIMENTAL PREFER_CS      ROUTE_CROSS_SECTIONAL
STRONG       EXPERIMENTAL PREFER_SYMBOL  ROUTE_CROSS_SECTIONAL
STRONG       DISALLOWED   ROUTE_BOTH     ROUTE_CROSS_SECTIONAL
STRONG       DISALLOWED   PREFER_CS      ROUTE_CROSS_SECTIONAL
STRONG       DISALLOWED   PREFER_SYMBOL  ROUTE_CROSS_SECTIONAL
WEAK_BUT_OK  STRONG       ROUTE_BOTH     ROUTE_BOTH
WEAK_BUT_OK  STRONG       PREFER_CS      ROUTE_CROSS_SECTIONAL
WEAK_BUT_OK  STRONG       PREFER_SYMBOL  ROUTE_SYMBOL_SPECIFIC
WEAK_BUT_OK  WEAK_BUT_OK  ROUTE_BOTH     ROUTE_BOTH
WEAK_BUT_OK  WEAK_BUT_OK  PREFER_CS      ROUTE_CROSS_SECTIONAL
WEAK_BUT_OK  WEAK_BUT_OK  PREFER_SYMBOL  ROUTE_SYMBOL_SPECIFIC
WEAK_BUT_OK  EXPERIMENTAL ROUTE_BOTH     ROUTE_CROSS_SECTIONAL
WEAK_BUT_OK  EXPERIMENTAL PREFER_CS      ROUTE_CROSS_SECTIONAL
WEAK_BUT_OK  EXPERIMENTAL PREFER_SYMBOL  ROUTE_CROSS_SECTIONAL
WEAK_BUT_OK  DISALLOWED   ROUTE_BOTH     ROUTE_CROSS_SECTIONAL
WEAK_BUT_OK  DISALLOWED   PREFER_CS      ROUTE_CROSS_SECTIONAL
WEAK_BUT_OK  DISALLOWED   PREFER_SYMBOL  ROUTE_CROSS_SECTIONAL
EXPERIMENTAL STRONG       ROUTE_BOTH     ROUTE_SYMBOL_SPECIFIC
EXPERIMENTAL STRONG       PREFER_CS      ROUTE_SYMBOL_SPECIFIC
EXPERIMENTAL STRONG       PREFER_SYMBOL  ROUTE_SYMBOL_SPECIFIC
EXPERIMENTAL WEAK_BUT_OK  ROUTE_BOTH     ROUTE_SYMBOL_SPECIFIC
EXPERIMENTAL WEAK_BUT_OK  PREFER_CS      ROUTE_SYMBOL_SPECIFIC
EXPERIMENTAL WEAK_BUT_OK  PREFER_SYMBOL  ROUTE_SYMBOL_SPECIFIC
EXPERIMENTAL EXPERIMENTAL ROUTE_BOTH     ROUTE_EXPERIMENTAL_ONLY
EXPERIMENTAL EXPERIMENTAL PREFER_CS      ROUTE_EXPERIMENTAL_ONLY
EXPERIMENTAL EXPERIMENTAL PREFER_SYMBOL  ROUTE_EXPERIMENTAL_ONLY
EXPERIMENTAL DISALLOWED   ROUTE_BOTH     ROUTE_EXPERIMENTAL_ONLY
EXPERIMENTAL DISALLOWED   PREFER_CS      ROUTE_EXPERIMENTAL_ONLY
EXPERIMENTAL DISALLOWED   PREFER_SYMBOL  ROUTE_EXPERIMENTAL_ONLY
DISALLOWED   STRONG       ROUTE_BOTH     ROUTE_SYMBOL_SPECIFIC
DISALLOWED   STRONG       PREFER_CS      ROUTE_SYMBOL_SPECIFIC
DISALLOWED   STRONG       PREFER_SYMBOL  ROUTE_SYMBOL_SPECIFIC
DISALLOWED   WEAK_BUT_OK  ROUTE_BOTH     ROUTE_SYMBOL_SPECIFIC
DISALLOWED   WEAK_BUT_OK  PREFER_CS      ROUTE_SYMBOL_SPECIFIC
DISALLOWED   WEAK_BUT_OK  PREFER_SYMBOL  ROUTE_SYMBOL_SPECIFIC
DISALLOWED   EXPERIMENTAL ROUTE_BOTH     ROUTE_EXPERIMENTAL_ONLY
DISALLOWED   EXPERIMENTAL PREFER_CS      ROUTE_EXPERIMENTAL_ONLY
DISALLOWED   EXPERIMENTAL PREFER_SYMBOL  ROUTE_EXPERIMENTAL_ONLY
DISALLOWED   DISALLOWED   ROUTE_BOTH     ROUTE_BLOCKED
DISALLOWED   DISALLOWED   PREFER_CS      ROUTE_BLOCKED
DISALLOWED   DISALLOWED   PREFER_SYMBOL  ROUTE_BLOCKED
"""
ROUTE_ROWS = [tuple(line.split()) for line in ROUTE_TABLE.strip().splitlines()]
BEHAVIORS = ("ROUTE_BOTH", "PREFER_CS", "PREFER_SYMBOL")


def test_route_table_covers_every_combination_once():
    keys = [row[:3] for row in ROUTE_ROWS]
    expected = [(cs.value, local.value, b) for cs, local, b in itertools.product(SideState, SideState, BEHAVIORS)]
    assert sorted(keys) == sorted(expected)
    assert len(keys) == len(set(keys)) == 48


@pytest.mark.parametrize(("cs", "local", "behavior", "route"), ROUTE_ROWS, ids=["-".join(r[:3]) for r in ROUTE_ROWS])
def test_route_table_row(cs, local, behavior, route):
    assert combine(SideState(cs), SideState(local), behavior) is Route(route)


def test_combine_rejects_unknown_behavior():
    with pytest.raises(ValueError, match="both_strong_behavior"):
        combine(SideState.STRONG, SideState.STRONG, "PREFER_NOTHING")


# ------------------------------------------------------------------------------------- thresholds


@pytest.mark.parametrize(
    ("minutes", "tier"),
    [
        (None, HorizonTier.DEFAULT),
        (1, HorizonTier.SHORT),
        (59, HorizonTier.SHORT),
        (60, HorizonTier.MEDIUM),
        (239, HorizonTier.MEDIUM),
        (240, HorizonTier.LONG),
        (1439, HorizonTier.LONG),
        (1440, HorizonTier.VERY_LONG),
        (7200, HorizonTier.VERY_LONG),
    ],
)
def test_horizon_tier_boundaries(minutes, tier):
    assert horizon_tier(minutes) is tier


# Golden values of the threshold table: (task, horizon) → CS (exp, min, strong), symbol (exp, min, strong).
THRESHOLD_GOLDEN = [
    (TaskType.REGRESSION, 5, "regression/short", (0.0, 0.01, 0.03), (0.005, 0.015, 0.04)),
    (TaskType.REGRESSION, 120, "regression/medium", (0.0, 0.015, 0.04), (0.005, 0.02, 0.05)),
    (TaskType.REGRESSION, 480, "regression/long", (0.0, 0.02, 0.05), (0.01, 0.03, 0.06)),
    (TaskType.REGRESSION, 1440, "regression/very_long", (0.0, 0.02, 0.05), (0.01, 0.03, 0.06)),
    (TaskType.REGRESSION, None, "regression/default", (0.0, 0.02, 0.05), (0.01, 0.03, 0.06)),
    (TaskType.BINARY, 5, "binary/any", (0.51, 0.52, 0.58), (0.52, 0.54, 0.60)),
    (TaskType.MULTICLASS, 1440, "multiclass/any", (0.51, 0.52, 0.58), (0.52, 0.54, 0.60)),
]


@pytest.mark.parametrize(("task", "horizon", "key", "cs", "sym"), THRESHOLD_GOLDEN, ids=[g[2] for g in THRESHOLD_GOLDEN])
def test_resolve_thresholds_golden(task, horizon, key, cs, sym):
    th = resolve_thresholds(task, horizon)
    assert th.key == key
    assert th.metric_name == ("ic" if task is TaskType.REGRESSION else "auc")
    for side, expected in ((th.cross_sectional, cs), (th.symbol, sym)):
        assert (side.experimental_min, side.min_score, side.strong_score) == pytest.approx(expected)
        assert side.experimental_min < side.min_score < side.strong_score
    # UNKNOWN (nothing measured: no previous run, no resample) is never usable, only experimental.
    assert Stability.UNKNOWN not in th.cross_sectional.stability_allowlist
    assert Stability.UNKNOWN not in th.symbol.stability_allowlist
    assert Stability.UNKNOWN in th.cross_sectional.experimental_stabilities and Stability.UNKNOWN in th.symbol.experimental_stabilities
    assert Stability.DIVERGED not in th.symbol.experimental_stabilities


# ------------------------------------------------------------------------------------- side state

SPEC = RoutingSpec(min_sample_size_cs=1000, min_sample_size_symbol=250)


def cand(score, *, symbol=None, n=5000, stability=Stability.STABLE, leakage=Leakage.SAFE, task=TaskType.REGRESSION, horizon=1440, target="t"):
    return RoutingCandidate(
        target=target,
        symbol=symbol,
        task=task,
        horizon_minutes=horizon,
        metric_name="ic" if task is TaskType.REGRESSION else "auc",
        score=score,
        score_ci_low=score - 0.01,
        score_ci_high=score + 0.01,
        sample_size=n,
        n_folds=4,
        stability=stability,
        leakage_status=leakage,
    )


TASK_TIERS = [
    (TaskType.REGRESSION, 5),
    (TaskType.REGRESSION, 120),
    (TaskType.REGRESSION, 480),
    (TaskType.REGRESSION, 1440),
    (TaskType.REGRESSION, None),
    (TaskType.BINARY, 60),
    (TaskType.MULTICLASS, 60),
]
TASK_TIER_SIDES = [(task, h, side) for task, h in TASK_TIERS for side in Side]
TASK_TIER_IDS = [f"{task.value}-{horizon_tier(h).value if task is TaskType.REGRESSION else 'any'}-{side.value}" for task, h, side in TASK_TIER_SIDES]


def _side(task, horizon, side):
    t = resolve_thresholds(task, horizon).for_side(side)
    symbol = None if side is Side.CROSS_SECTIONAL else "AAA"
    min_n = SPEC.min_sample_size_cs if side is Side.CROSS_SECTIONAL else SPEC.min_sample_size_symbol

    def make(score, **kw):
        kw.setdefault("n", min_n)
        return cand(score, symbol=symbol, task=task, horizon=horizon, **kw)

    def state(c, spec=SPEC):
        return side_state(c, resolve_thresholds(task, horizon), side, spec)

    return t, make, state, min_n


@pytest.mark.parametrize(("task", "horizon", "side"), TASK_TIER_SIDES, ids=TASK_TIER_IDS)
class TestSideStateChecksInOrder:
    def test_0_no_candidate_is_disallowed(self, task, horizon, side):
        _, _, state, _ = _side(task, horizon, side)
        got, reason = state(None)
        assert got is SideState.DISALLOWED and "no out-of-sample score" in reason

    def test_1_sample_size_first(self, task, horizon, side):
        t, make, state, min_n = _side(task, horizon, side)
        # Strong score and blocked leakage: the sample-size check must fire first.
        got, reason = state(make(t.strong_score + 0.05, n=min_n - 1, leakage=Leakage.BLOCKED))
        assert got is SideState.DISALLOWED and reason.startswith(f"sample size {min_n - 1} < routing.min_sample_size_")
        assert state(make(t.strong_score, n=min_n))[0] is SideState.STRONG  # the minimum itself passes

    def test_2_leakage_blocked(self, task, horizon, side):
        t, make, state, _ = _side(task, horizon, side)
        got, reason = state(make(t.strong_score + 0.05, leakage=Leakage.BLOCKED))
        assert got is SideState.DISALLOWED and "leakage BLOCKED" in reason
        lenient = SPEC.model_copy(update={"block_on_leakage": False})
        assert state(make(t.strong_score + 0.05, leakage=Leakage.BLOCKED), lenient)[0] is SideState.STRONG
        assert state(make(t.strong_score + 0.05, leakage=Leakage.SUSPECT))[0] is SideState.STRONG

    def test_3_strong_at_threshold(self, task, horizon, side):
        t, make, state, _ = _side(task, horizon, side)
        got, reason = state(make(t.strong_score))
        assert got is SideState.STRONG and ">= strong" in reason

    def test_4_weak_between_min_and_strong(self, task, horizon, side):
        t, make, state, _ = _side(task, horizon, side)
        assert state(make(t.min_score))[0] is SideState.WEAK_BUT_OK
        assert state(make((t.min_score + t.strong_score) / 2))[0] is SideState.WEAK_BUT_OK

    def test_5_experimental_between_experimental_min_and_min(self, task, horizon, side):
        t, make, state, _ = _side(task, horizon, side)
        got, reason = state(make(t.experimental_min))
        assert got is SideState.EXPERIMENTAL and ">= experimental" in reason
        lane_off = SPEC.model_copy(update={"enable_experimental_lane": False})
        got, reason = state(make(t.experimental_min), lane_off)
        assert got is SideState.DISALLOWED and "experimental lane is off" in reason

    def test_6_disallowed_below_experimental_min(self, task, horizon, side):
        t, make, state, _ = _side(task, horizon, side)
        got, reason = state(make(t.experimental_min - 0.001))
        assert got is SideState.DISALLOWED and "< experimental" in reason

    def test_7_stability_allowlist(self, task, horizon, side):
        t, make, state, _ = _side(task, horizon, side)
        strong = t.strong_score + 0.01
        assert state(make(strong, stability=Stability.STABLE))[0] is SideState.STRONG
        drifting = state(make(strong, stability=Stability.DRIFTING))[0]
        # CS allows DRIFTING; a symbol must be STABLE, so a drifting symbol drops to the experimental lane.
        assert drifting is (SideState.STRONG if side is Side.CROSS_SECTIONAL else SideState.EXPERIMENTAL)
        got, reason = state(make(strong, stability=Stability.DIVERGED))
        assert got is SideState.DISALLOWED and "DIVERGED" in reason
        # A stable side between the experimental and normal minimum is experimental (the seed disallowed it).
        assert state(make(t.experimental_min, stability=Stability.STABLE))[0] is SideState.EXPERIMENTAL


def test_ic_thresholds_reject_what_seed_r2_thresholds_passed():
    # The seed's very-long-horizon R² minimum was −2.0; an anti-predictive IC must not route.
    got, _ = side_state(cand(-0.05), resolve_thresholds(TaskType.REGRESSION, 1440), Side.CROSS_SECTIONAL, SPEC)
    assert got is SideState.DISALLOWED


# ------------------------------------------------------------------------------------ route_target


def test_route_target_stores_real_cs_state_and_metrics():
    cands = [cand(0.06, n=4000, stability=Stability.DRIFTING), cand(0.07, symbol="AAA", n=1000)]
    routing = route_target("t", cands, ["AAA", "BBB"], SPEC)
    cs = routing.cross_sectional
    assert (cs.enabled, cs.state, cs.score, cs.sample_size, cs.metric_name) == (True, SideState.STRONG, 0.06, 4000, "ic")
    assert routing.symbols["AAA"].route is Route.BOTH
    assert routing.symbols["AAA"].sample_size == 1000
    # BBB has no candidate at all: its local side is disallowed, the CS model serves it.
    bbb = routing.symbols["BBB"]
    assert (bbb.route, bbb.local_state, bbb.score, bbb.sample_size) == (Route.CROSS_SECTIONAL, SideState.DISALLOWED, None, 0)
    assert any("no out-of-sample score" in r for r in bbb.reason)


def test_a_symbol_the_cut_leaves_without_a_holdout_gets_no_model_of_its_own_whatever_its_score():
    cands = [cand(0.06, n=4000), cand(0.09, symbol="AAA", n=1000), cand(0.09, symbol="OLD", n=1000)]
    why = "symbol OLD: ends before the cut (…): no holdout"
    routing = route_target("t", cands, ["AAA", "OLD"], SPEC, no_symbol_model={"OLD": why})
    old = routing.symbols["OLD"]
    assert (old.route, old.local_state, old.score) == (Route.CROSS_SECTIONAL, SideState.DISALLOWED, 0.09)
    assert f"symbol DISALLOWED: {why}" in old.reason
    assert routing.symbols["AAA"].route is Route.BOTH  # the same score earns a model where there is a holdout


def test_experimental_cs_is_not_enabled():
    routing = route_target("t", [cand(0.005)], ["AAA"], SPEC)
    assert routing.cross_sectional.state is SideState.EXPERIMENTAL
    assert routing.cross_sectional.enabled is False
    assert "experimental CS job only" in routing.cross_sectional.reason
    assert routing.symbols["AAA"].route is Route.EXPERIMENTAL_ONLY


def test_experimental_cap_blocks_weakest_deterministically():
    # 5 symbols × 0.5 → at most 2 experimental symbol routes; 4 are experimental (CS disallowed).
    spec = SPEC.model_copy(update={"max_fraction_symbols_per_target": 0.5})
    cands = [
        cand(0.015, symbol="AAA"),
        cand(0.020, symbol="BBB"),
        cand(0.015, symbol="CCC"),
        cand(0.012, symbol="DDD"),
        cand(0.1, symbol="EEE"),  # strong: SYMBOL_SPECIFIC, not counted by the cap
    ]
    routing = route_target("t", cands, ["AAA", "BBB", "CCC", "DDD", "EEE"], spec)
    routes = {s: d.route for s, d in routing.symbols.items()}
    # Kept: BBB (best), AAA (ties with CCC at 0.015, wins by name). Blocked: CCC, DDD.
    assert routes == {
        "AAA": Route.EXPERIMENTAL_ONLY,
        "BBB": Route.EXPERIMENTAL_ONLY,
        "CCC": Route.BLOCKED,
        "DDD": Route.BLOCKED,
        "EEE": Route.SYMBOL_SPECIFIC,
    }
    assert "experimental cap" in routing.symbols["DDD"].reason[0]
    assert routing.symbols["DDD"].local_state is SideState.EXPERIMENTAL  # the evidence stays visible
    assert route_target("t", list(reversed(cands)), ["EEE", "DDD", "CCC", "BBB", "AAA"], spec) == routing


def test_experimental_cap_ignores_routes_served_by_experimental_cs():
    # CS experimental, symbols disallowed (too few rows): EXPERIMENTAL_ONLY but no symbol model, so no cap.
    spec = SPEC.model_copy(update={"max_fraction_symbols_per_target": 0.1})
    cands = [cand(0.005), cand(0.1, symbol="AAA", n=10), cand(0.1, symbol="BBB", n=10)]
    routing = route_target("t", cands, ["AAA", "BBB"], spec)
    assert {d.route for d in routing.symbols.values()} == {Route.EXPERIMENTAL_ONLY}


def test_route_target_rejects_inconsistent_candidates():
    with pytest.raises(ValueError, match="disagree on task/horizon"):
        route_target("t", [cand(0.1), cand(0.1, symbol="AAA", horizon=5)], ["AAA"], SPEC)
    with pytest.raises(ValueError, match="no routing candidate"):
        route_target("missing", [cand(0.1)], ["AAA"], SPEC)


META = PlanMetadata(generated_at="2024-01-02T03:04:05Z", run_id="run1", code_version="0.1.0", config_digest="cfg", data_digest="data")


def test_build_routing_plan_records_thresholds_and_sorts_targets():
    cands = [
        cand(0.6, target="y_up_5m", task=TaskType.BINARY, horizon=5),
        cand(0.06, target="fwd_ret_1d"),
        cand(0.07, target="fwd_ret_1d", symbol="AAA", n=300),
    ]
    plan = build_routing_plan(cands, ["AAA"], SPEC, META, "METRICS/routing_candidates.parquet", alpha=None)  # points: the evidence gate has its own tests
    assert list(plan.targets) == ["fwd_ret_1d", "y_up_5m"]
    assert sorted(plan.thresholds["by_task_tier"]) == ["binary/any", "regression/very_long"]
    assert plan.thresholds["by_task_tier"]["regression/very_long"]["cross_sectional"]["strong_score"] == 0.05
    assert plan.thresholds["min_sample_size"] == {"cross_sectional": 1000, "symbol": 250}
    assert plan.candidates_path == "METRICS/routing_candidates.parquet"
    assert plan.targets["y_up_5m"].symbols["AAA"].route is Route.CROSS_SECTIONAL
    # Identical inputs → identical plan.
    assert build_routing_plan(list(reversed(cands)), ["AAA"], SPEC, META, "METRICS/routing_candidates.parquet", alpha=None) == plan
    assert plan.thresholds["evidence"]["gated"] is False


# The table of what each stability allows, per side, for a strong score: UNKNOWN (a first run with nothing
# measured) is never usable, only experimental (and disallowed with the experimental lane off).
STABILITY_TABLE = [
    # (stability, CS state, symbol state, CS state with the lane off)
    (Stability.STABLE, SideState.STRONG, SideState.STRONG, SideState.STRONG),
    (Stability.DRIFTING, SideState.STRONG, SideState.EXPERIMENTAL, SideState.STRONG),
    (Stability.DIVERGED, SideState.DISALLOWED, SideState.DISALLOWED, SideState.DISALLOWED),
    (Stability.UNKNOWN, SideState.EXPERIMENTAL, SideState.EXPERIMENTAL, SideState.DISALLOWED),
]


@pytest.mark.parametrize(("stability", "cs", "symbol", "cs_lane_off"), STABILITY_TABLE, ids=[r[0].value for r in STABILITY_TABLE])
def test_side_state_by_stability(stability, cs, symbol, cs_lane_off):
    th = resolve_thresholds(TaskType.REGRESSION, 1440)
    strong = th.symbol.strong_score + 0.01
    assert side_state(cand(strong, stability=stability), th, Side.CROSS_SECTIONAL, SPEC)[0] is cs
    assert side_state(cand(strong, symbol="AAA", n=1000, stability=stability), th, Side.SYMBOL, SPEC)[0] is symbol
    lane_off = SPEC.model_copy(update={"enable_experimental_lane": False})
    assert side_state(cand(strong, stability=stability), th, Side.CROSS_SECTIONAL, lane_off)[0] is cs_lane_off


def test_an_unknown_stability_reads_first_run_in_the_reasons():
    th = resolve_thresholds(TaskType.REGRESSION, 1440)
    state, reason = side_state(cand(th.cross_sectional.strong_score, stability=Stability.UNKNOWN), th, Side.CROSS_SECTIONAL, SPEC)
    assert state is SideState.EXPERIMENTAL and "stability=first run" in reason and "stability not in the allowlist" in reason
    lane_off = SPEC.model_copy(update={"enable_experimental_lane": False})
    _, reason = side_state(cand(th.cross_sectional.strong_score, stability=Stability.UNKNOWN), th, Side.CROSS_SECTIONAL, lane_off)
    assert "stability first run not in allowlist ['STABLE', 'DRIFTING']" in reason and "UNKNOWN" not in reason
