"""Routing rules: thresholds, side eligibility and the CS × symbol route table, as pure functions; called by `plan`.

How a target is routed (the seed's routing, with its quirks fixed as listed below):

1. `resolve_thresholds(task, horizon)` picks the score thresholds for the target's task and horizon
   tier from `REGRESSION_IC_THRESHOLDS` / `CLASSIFICATION_AUC_THRESHOLDS`.
2. `side_state(candidate, thresholds, side, spec, bound)` rates the cross-sectional (CS) side and each
   symbol side STRONG / WEAK_BUT_OK / EXPERIMENTAL / DISALLOWED, checks in the seed's order: sample
   size, leakage, strong, weak, experimental, else disallowed. A side is usable (strong or weak) only
   when the lower bound of its score clears the side's minimum, Benjamini–Hochberg over every side the
   plan rates (`side_bounds`): on noise a point estimate clears a minimum for a third of the sides.
   The experimental lane still reads the point estimate: it is capped, priority 1, and labelled.
3. `combine(cs_state, local_state, behavior)` maps the two states to a route with `ROUTE_TABLE_RULES`.
4. `route_target` applies the experimental cap (`max_fraction_symbols_per_target`), and
   `build_routing_plan` does it for every target and records the thresholds it applied.

Decisions on the seed's quirks:

* **Route table is total and monotone.** A usable side (STRONG or WEAK_BUT_OK) always beats an
  EXPERIMENTAL one; the experimental lane is only the fallback when no side is usable. So
  (usable, EXPERIMENTAL) → CROSS_SECTIONAL and (EXPERIMENTAL, usable) → SYMBOL_SPECIFIC. The seed
  sent both to EXPERIMENTAL_ONLY, which meant a STRONG symbol got a *worse* route when the CS side
  improved from DISALLOWED to EXPERIMENTAL. The seed's unreachable "CS strong / local disallowed"
  rules are now the rules for (usable, not usable) and (not usable, usable). There is no
  "NO_RULE_MATCH" fallback: every one of the 16 state pairs has a rule.
* **EXPERIMENTAL + DISALLOWED is not promoted** to a full CS or symbol route (the seed did): it gives
  ROUTE_EXPERIMENTAL_ONLY, i.e. priority-1 experimental training only.
* **Experimental CS.** `cross_sectional.enabled` is true only for STRONG or WEAK_BUT_OK (the seed also
  enabled EXPERIMENTAL). An EXPERIMENTAL CS side is not a normal CS job: the planner makes one
  experimental CS job for it (route EXPERIMENTAL_ONLY, priority 1). An EXPERIMENTAL_ONLY symbol route
  trains a symbol model only when its *local* side is EXPERIMENTAL; when the experimental side is the
  CS one (local DISALLOWED), the symbol is served by that experimental CS job, never by a symbol model
  whose own evidence failed.
* **Experimental cap enforced.** At most floor(max_fraction_symbols_per_target × symbols) symbol
  routes per target may train an experimental symbol model; the rest (weakest score first, ties by
  symbol name) become ROUTE_BLOCKED with a reason.
* **Experimental stabilities include STABLE.** The seed allowed only DRIFTING and UNKNOWN, so a
  STABLE side scoring between the experimental and the normal minimum was disallowed while a DRIFTING
  one was experimental. DIVERGED never passes.
* **UNKNOWN stability is not usable.** The seed allowed UNKNOWN everywhere because first runs had no
  history; select now also grades each selection on block-bootstrap resamples, so UNKNOWN means nothing
  was measured and such a side is at most EXPERIMENTAL. Reasons show it as "first run".
* The plan stores the real CS state and CS metrics (the seed stored the stability string there, so a
  reader of the plan could not tell a strong CS side from a weak one).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from trainpipe.contract.names import Leakage, Route, SideState, Stability, TaskType
from trainpipe.contract.pipeline import BothStrongBehavior, RoutingSpec
from trainpipe.contract.plan import (
    CrossSectionalDecision,
    PlanMetadata,
    RoutingCandidate,
    RoutingPlan,
    SymbolDecision,
    TargetRouting,
)
from trainpipe.stages.evidence import DEFAULT_ALPHA, SkillTest, Verdicts, gate


class Side(StrEnum):
    CROSS_SECTIONAL = "cross_sectional"
    SYMBOL = "symbol"


class HorizonTier(StrEnum):
    SHORT = "short"  # < 60 minutes
    MEDIUM = "medium"  # < 4 hours
    LONG = "long"  # < 1 day
    VERY_LONG = "very_long"  # ≥ 1 day (daily bars land here)
    DEFAULT = "default"  # horizon not in the target name
    ANY = "any"  # classification: AUC thresholds do not depend on the horizon


# Upper bounds (exclusive, minutes) of the horizon tiers, in order; ≥ the last bound is VERY_LONG.
HORIZON_TIER_BOUNDS: tuple[tuple[HorizonTier, int], ...] = (
    (HorizonTier.SHORT, 60),
    (HorizonTier.MEDIUM, 240),
    (HorizonTier.LONG, 1440),
)

# Regression is scored by out-of-sample IC (Spearman rank correlation of predictions with the target,
# mean over walk-forward folds), not R²: 0 is no skill and useful values are a few hundredths. The
# seed's R² thresholds (down to −2.0) would pass anything. Each row: (experimental, min, strong).
# Why these values:
# * Thresholds rise with the horizon. By the fundamental law of active management (IR ≈ IC·√breadth)
#   short horizons make many independent bets, so a small IC already pays; long horizons overlap,
#   give few independent bets and noisier fold ICs, so they must show more.
# * The symbol side is stricter than CS: one symbol holds ~1/N of the pooled rows, so its IC has a
#   wider error (≈ 1/√n) and a symbol model must beat the pooled one to be worth training.
# * Experimental only asks for non-negative skill (CS) or a hair above it (symbol): the lane exists to
#   try promising targets, and is capped per target.
# * DEFAULT (no horizon in the name) uses the strictest row: we cannot tell, so we do not relax.
REGRESSION_IC_THRESHOLDS: Mapping[HorizonTier, Mapping[Side, tuple[float, float, float]]] = {
    HorizonTier.SHORT: {Side.CROSS_SECTIONAL: (0.000, 0.010, 0.030), Side.SYMBOL: (0.005, 0.015, 0.040)},
    HorizonTier.MEDIUM: {Side.CROSS_SECTIONAL: (0.000, 0.015, 0.040), Side.SYMBOL: (0.005, 0.020, 0.050)},
    HorizonTier.LONG: {Side.CROSS_SECTIONAL: (0.000, 0.020, 0.050), Side.SYMBOL: (0.010, 0.030, 0.060)},
    HorizonTier.VERY_LONG: {Side.CROSS_SECTIONAL: (0.000, 0.020, 0.050), Side.SYMBOL: (0.010, 0.030, 0.060)},
    HorizonTier.DEFAULT: {Side.CROSS_SECTIONAL: (0.000, 0.020, 0.050), Side.SYMBOL: (0.010, 0.030, 0.060)},
}

# Classification is scored by out-of-sample AUC (macro one-vs-rest for multiclass; 0.5 is chance).
# min/strong are the seed's values, kept so plans stay comparable. The seed's experimental minimum was 0.52 for both sides,
# equal to the CS minimum, which made an experimental CS side unreachable; CS experimental is 0.51.
CLASSIFICATION_AUC_THRESHOLDS: Mapping[Side, tuple[float, float, float]] = {
    Side.CROSS_SECTIONAL: (0.51, 0.52, 0.58),
    Side.SYMBOL: (0.52, 0.54, 0.60),
}

# A usable side needs a measured stability. UNKNOWN (no previous run and too few bars to resample) is not
# evidence that the features hold, so it is never usable; a normal first run is still measured (select's
# resampled check), so it can route. The symbol side, trained on ~1/N of the rows, must be STABLE.
STABILITY_ALLOWLIST: Mapping[Side, frozenset[Stability]] = {
    Side.CROSS_SECTIONAL: frozenset({Stability.STABLE, Stability.DRIFTING}),
    Side.SYMBOL: frozenset({Stability.STABLE}),
}
# The experimental lane exists to try what lacks evidence, so an unmeasured (UNKNOWN) side may go there, capped.
EXPERIMENTAL_STABILITIES: frozenset[Stability] = frozenset({Stability.STABLE, Stability.DRIFTING, Stability.UNKNOWN})

USABLE_STATES: frozenset[SideState] = frozenset({SideState.STRONG, SideState.WEAK_BUT_OK})

_STABILITY_ORDER = tuple(Stability)


@dataclass(frozen=True)
class SideThresholds:
    experimental_min: float
    min_score: float
    strong_score: float
    stability_allowlist: frozenset[Stability]
    experimental_stabilities: frozenset[Stability]

    def to_dict(self) -> dict[str, Any]:
        return {
            "experimental_min": self.experimental_min,
            "min_score": self.min_score,
            "strong_score": self.strong_score,
            "stability_allowlist": _stability_list(self.stability_allowlist),
            "experimental_stabilities": _stability_list(self.experimental_stabilities),
        }


@dataclass(frozen=True)
class Thresholds:
    """Resolved thresholds for one task and horizon tier, both sides."""

    task: TaskType
    tier: HorizonTier
    metric_name: str
    cross_sectional: SideThresholds
    symbol: SideThresholds

    @property
    def key(self) -> str:
        """Name under which the plan records these thresholds, e.g. `regression/short`."""
        return f"{self.task.value}/{self.tier.value}"

    def for_side(self, side: Side) -> SideThresholds:
        return self.cross_sectional if side is Side.CROSS_SECTIONAL else self.symbol

    def to_dict(self) -> dict[str, Any]:
        return {
            "task": self.task.value,
            "tier": self.tier.value,
            "metric_name": self.metric_name,
            "cross_sectional": self.cross_sectional.to_dict(),
            "symbol": self.symbol.to_dict(),
        }


def horizon_tier(horizon_minutes: int | None) -> HorizonTier:
    if horizon_minutes is None:
        return HorizonTier.DEFAULT
    for tier, upper in HORIZON_TIER_BOUNDS:
        if horizon_minutes < upper:
            return tier
    return HorizonTier.VERY_LONG


def resolve_thresholds(task: TaskType, horizon_minutes: int | None) -> Thresholds:
    """Thresholds for a target: IC by horizon tier for regression, AUC (any horizon) for classification."""
    task = TaskType(task)
    if task is TaskType.REGRESSION:
        tier = horizon_tier(horizon_minutes)
        rows, metric = REGRESSION_IC_THRESHOLDS[tier], "ic"
    else:
        tier, rows, metric = HorizonTier.ANY, CLASSIFICATION_AUC_THRESHOLDS, "auc"

    def side(s: Side) -> SideThresholds:
        experimental, minimum, strong = rows[s]
        return SideThresholds(experimental, minimum, strong, STABILITY_ALLOWLIST[s], EXPERIMENTAL_STABILITIES)

    return Thresholds(task, tier, metric, side(Side.CROSS_SECTIONAL), side(Side.SYMBOL))


@dataclass(frozen=True)
class Bound:
    """The lower bound a side is judged on: `low` at one-sided `level` (None: no standard error, so no evidence)."""

    low: float | None
    level: float

    def clears(self, threshold: float) -> bool:
        return self.low is not None and self.low >= threshold

    def describe(self) -> str:
        return f"lower bound {'none' if self.low is None else _fmt(self.low)} at {self.level:.2%}"


def side_state(
    candidate: RoutingCandidate | None,
    thresholds: Thresholds,
    side: Side,
    spec: RoutingSpec,
    bound: Bound | None = None,
) -> tuple[SideState, str]:
    """Rate one side; checks in order: evidence, sample size, leakage, strong, weak, experimental, else disallowed.

    With a `bound` (the gate is on) a side is usable only when the bound clears its minimum; without one
    the point estimate decides, as it does when evidence.trainAnyway trains a run that found no evidence.
    """
    side = Side(side)
    if candidate is None:
        return SideState.DISALLOWED, "no out-of-sample score (no rows in oos_scores, or every fold was NaN)"
    t = thresholds.for_side(side)
    min_samples = spec.min_sample_size_cs if side is Side.CROSS_SECTIONAL else spec.min_sample_size_symbol
    facts = (
        f"{candidate.metric_name}={_fmt(candidate.score)} "
        f"[{_fmt(candidate.score_ci_low)}, {_fmt(candidate.score_ci_high)}]"
        + (f", {bound.describe()}" if bound is not None else "")
        + f", n={candidate.sample_size}, folds={candidate.n_folds}, stability={candidate.stability.label}"
    )
    spec_field = "min_sample_size_cs" if side is Side.CROSS_SECTIONAL else "min_sample_size_symbol"
    if candidate.sample_size < min_samples:
        return SideState.DISALLOWED, f"sample size {candidate.sample_size} < routing.{spec_field}={min_samples} ({facts})"
    if spec.block_on_leakage and candidate.leakage_status is Leakage.BLOCKED:
        return SideState.DISALLOWED, f"leakage BLOCKED and routing.block_on_leakage is on ({facts})"
    score, stable = candidate.score, candidate.stability in t.stability_allowlist
    evident = bound is None or bound.clears(t.min_score)
    if score >= t.strong_score and stable and evident:
        return SideState.STRONG, f"{facts} >= strong {_fmt(t.strong_score)}"
    if score >= t.min_score and stable and evident:
        return SideState.WEAK_BUT_OK, f"{facts} >= min {_fmt(t.min_score)} (< strong {_fmt(t.strong_score)})"
    if spec.enable_experimental_lane and score >= t.experimental_min and candidate.stability in t.experimental_stabilities:
        if score < t.min_score:
            why = f"< min {_fmt(t.min_score)}"
        elif not evident:
            why = f"its lower bound does not clear min {_fmt(t.min_score)}: not told apart from noise"
        else:
            why = "stability not in the allowlist"
        return SideState.EXPERIMENTAL, f"{facts}: {why}; >= experimental {_fmt(t.experimental_min)}"
    if score >= t.min_score and not evident:
        why = f"its lower bound does not clear min {_fmt(t.min_score)}: not told apart from noise"
    elif score >= t.min_score:
        why = f"stability {candidate.stability.label} not in allowlist {_stability_list(t.stability_allowlist)}"
    elif not spec.enable_experimental_lane:
        why = f"< min {_fmt(t.min_score)} and the experimental lane is off"
    elif score >= t.experimental_min:
        why = f"stability {candidate.stability.label} not allowed in the experimental lane"
    else:
        why = f"< experimental {_fmt(t.experimental_min)}"
    return SideState.DISALLOWED, f"{facts}: {why}"


# The route table: (CS state, local state) → route, first matching rule wins. `BOTH_USABLE` is the
# placeholder resolved by `both_strong_behavior`. Written as data so the tests and the docs read the
# same rules.
_BOTH_USABLE = "BOTH_USABLE"
ROUTE_TABLE_RULES: tuple[tuple[frozenset[SideState], frozenset[SideState], Route | str, str], ...] = (
    (USABLE_STATES, USABLE_STATES, _BOTH_USABLE, "both sides usable"),
    (USABLE_STATES, frozenset({SideState.EXPERIMENTAL, SideState.DISALLOWED}), Route.CROSS_SECTIONAL, "only the CS side is usable"),
    (frozenset({SideState.EXPERIMENTAL, SideState.DISALLOWED}), USABLE_STATES, Route.SYMBOL_SPECIFIC, "only the symbol side is usable"),
    (frozenset({SideState.EXPERIMENTAL}), frozenset(SideState), Route.EXPERIMENTAL_ONLY, "no usable side; CS side is experimental"),
    (frozenset(SideState), frozenset({SideState.EXPERIMENTAL}), Route.EXPERIMENTAL_ONLY, "no usable side; symbol side is experimental"),
    (frozenset({SideState.DISALLOWED}), frozenset({SideState.DISALLOWED}), Route.BLOCKED, "both sides disallowed"),
)

_BOTH_USABLE_ROUTES: Mapping[str, Route] = {
    "ROUTE_BOTH": Route.BOTH,
    "PREFER_CS": Route.CROSS_SECTIONAL,
    "PREFER_SYMBOL": Route.SYMBOL_SPECIFIC,
}


def combine(cs_state: SideState, local_state: SideState, both_strong_behavior: BothStrongBehavior) -> Route:
    """Route for one (target, symbol) from its CS and local states (see `ROUTE_TABLE_RULES`)."""
    return _route_rule(cs_state, local_state, both_strong_behavior)[0]


def _route_rule(cs_state: SideState, local_state: SideState, behavior: BothStrongBehavior) -> tuple[Route, str]:
    if behavior not in _BOTH_USABLE_ROUTES:
        raise ValueError(f"routing.both_strong_behavior {behavior!r} is not one of {sorted(_BOTH_USABLE_ROUTES)}")
    cs_state, local_state = SideState(cs_state), SideState(local_state)
    for cs_states, local_states, route, why in ROUTE_TABLE_RULES:
        if cs_state in cs_states and local_state in local_states:
            if route == _BOTH_USABLE:
                return _BOTH_USABLE_ROUTES[behavior], f"{why} (both_strong_behavior={behavior})"
            return Route(route), why
    # The rules cover all 16 pairs (a test checks it); reaching here means the table was edited badly.
    raise AssertionError(f"route table has no rule for CS {cs_state} / local {local_state}")


def trains_experimental_symbol_model(decision: SymbolDecision) -> bool:
    """True when the route trains a symbol model on experimental local evidence (what the cap limits)."""
    return decision.route is Route.EXPERIMENTAL_ONLY and decision.local_state is SideState.EXPERIMENTAL


def experimental_cap(n_symbols: int, spec: RoutingSpec) -> int:
    """Most experimental symbol routes a target may have: floor(fraction × symbols), a true maximum."""
    return math.floor(spec.max_fraction_symbols_per_target * n_symbols + 1e-9)


def route_target(
    target: str,
    candidates: Sequence[RoutingCandidate],
    symbols: Iterable[str],
    spec: RoutingSpec,
    no_symbol_model: Mapping[str, str] | None = None,
    bounds: Mapping[tuple[str, str | None], Bound] | None = None,
) -> TargetRouting:
    """Route one target: CS decision, each symbol's route (symbols ∪ those with candidates), then the experimental cap.

    `no_symbol_model` maps a symbol to why it can have no model of its own whatever its score (the holdout
    cut leaves it no holdout to score one on, or no bar to train one on): its symbol side is DISALLOWED.
    `bounds` gives each side's (target, symbol or None) lower bound (`side_bounds`); without it the point
    estimates decide.
    """
    no_symbol_model = no_symbol_model or {}
    bounds = bounds or {}

    def bound_of(symbol: str | None) -> Bound | None:
        return bounds.get((target, symbol))

    own = [c for c in candidates if c.target == target]
    if not own:
        raise ValueError(f"no routing candidate for target {target!r}: route only targets that ranking scored")
    task, horizon = _target_identity(target, own)
    thresholds = resolve_thresholds(task, horizon)
    cs = next((c for c in own if c.symbol is None), None)
    by_symbol = {c.symbol: c for c in own if c.symbol is not None}
    universe = sorted(set(symbols) | set(by_symbol))

    cs_bound = bound_of(None)
    cs_state, cs_reason = side_state(cs, thresholds, Side.CROSS_SECTIONAL, spec, cs_bound)
    cs_decision = CrossSectionalDecision(
        enabled=cs_state in USABLE_STATES,
        state=cs_state,
        score=None if cs is None else cs.score,
        ir=None if cs is None else cs.ir,
        score_low=None if cs_bound is None else cs_bound.low,
        sample_size=0 if cs is None else cs.sample_size,
        metric_name=thresholds.metric_name,
        reason=f"{cs_state.value}: {cs_reason}"
        + ("; experimental CS job only (priority 1)" if cs_state is SideState.EXPERIMENTAL else ""),
    )

    decisions: dict[str, SymbolDecision] = {}
    for symbol in universe:
        candidate, local_bound = by_symbol.get(symbol), bound_of(symbol)
        if symbol in no_symbol_model:
            local_state, local_reason = SideState.DISALLOWED, no_symbol_model[symbol]
        else:
            local_state, local_reason = side_state(candidate, thresholds, Side.SYMBOL, spec, local_bound)
        route, why = _route_rule(cs_state, local_state, spec.both_strong_behavior)
        decisions[symbol] = SymbolDecision(
            route=route,
            cs_state=cs_state,
            local_state=local_state,
            score=None if candidate is None else candidate.score,
            score_low=None if local_bound is None or candidate is None else local_bound.low,
            sample_size=0 if candidate is None else candidate.sample_size,
            # Conclusion first: job reasons and reports are often cut to their first characters.
            reason=[f"route: {why}", f"symbol {local_state.value}: {local_reason}", f"cs {cs_state.value}: {cs_reason}"],
        )
    decisions = _apply_experimental_cap(decisions, len(universe), spec)
    return TargetRouting(task=task, horizon_minutes=horizon, cross_sectional=cs_decision, symbols=decisions)


def _apply_experimental_cap(decisions: dict[str, SymbolDecision], n_symbols: int, spec: RoutingSpec) -> dict[str, SymbolDecision]:
    cap = experimental_cap(n_symbols, spec)
    experimental = [s for s, d in decisions.items() if trains_experimental_symbol_model(d)]
    if len(experimental) <= cap:
        return decisions
    # Keep the best scores; ties broken by symbol name so the same inputs always keep the same symbols.
    ranked = sorted(experimental, key=lambda s: (-_score_or_floor(decisions[s].score), s))
    capped = dict(decisions)
    for rank, symbol in enumerate(ranked[cap:], start=cap + 1):
        d = decisions[symbol]
        note = (
            f"route: ROUTE_BLOCKED by the experimental cap: routing.max_fraction_symbols_per_target="
            f"{spec.max_fraction_symbols_per_target} of {n_symbols} symbols allows {cap} experimental symbol "
            f"routes; this one ranks {rank} of {len(ranked)} by score"
        )
        capped[symbol] = d.model_copy(update={"route": Route.BLOCKED, "reason": [note, *d.reason]})
    return capped


def side_bounds(candidates: Sequence[RoutingCandidate], alpha: float) -> tuple[dict[tuple[str, str | None], Bound], Verdicts]:
    """Each side's lower bound, Benjamini–Hochberg over every side: H0 "score ≤ the side's minimum" for its task and horizon tier.

    The bound is quoted at the level the step-up rule sets, so a side passes exactly when its bound clears its minimum.
    """
    tests = []
    for c in candidates:
        t = resolve_thresholds(c.task, c.horizon_minutes).for_side(Side.CROSS_SECTIONAL if c.symbol is None else Side.SYMBOL)
        df = None if c.effective_n is None else max(1.0, c.effective_n - 1)
        tests.append(SkillTest(c.score, c.score_se, t.min_score, df))
    verdicts, lows = gate(tests, alpha)
    return {(c.target, c.symbol): Bound(low, verdicts.level) for c, low in zip(candidates, lows, strict=True)}, verdicts


def build_routing_plan(
    candidates: Sequence[RoutingCandidate],
    symbols: Iterable[str],
    spec: RoutingSpec,
    metadata: PlanMetadata,
    candidates_path: str,
    no_symbol_model: Mapping[str, str] | None = None,
    alpha: float | None = DEFAULT_ALPHA,
) -> RoutingPlan:
    """Route every target that has candidates (sorted by name) and record the thresholds and spec applied (`route_target`).

    `alpha` is the false-discovery rate of the side gate (`side_bounds`); None routes on point estimates
    (evidence.trainAnyway on a run whose targets carry no evidence).
    """
    symbols = list(symbols)
    targets: dict[str, TargetRouting] = {}
    applied: dict[str, Any] = {}
    by_target: dict[str, list[RoutingCandidate]] = {}
    for candidate in candidates:
        by_target.setdefault(candidate.target, []).append(candidate)
    bounds, verdicts = side_bounds(candidates, alpha) if alpha is not None else ({}, None)
    for target in sorted(by_target):
        routing = route_target(target, by_target[target], symbols, spec, no_symbol_model, bounds)
        targets[target] = routing
        th = resolve_thresholds(routing.task, routing.horizon_minutes)
        applied[th.key] = th.to_dict()
    thresholds: dict[str, Any] = {
        "by_task_tier": dict(sorted(applied.items())),
        "horizon_tier_upper_minutes": {tier.value: upper for tier, upper in HORIZON_TIER_BOUNDS},
        "min_sample_size": {"cross_sectional": spec.min_sample_size_cs, "symbol": spec.min_sample_size_symbol},
        "block_on_leakage": spec.block_on_leakage,
        "enable_experimental_lane": spec.enable_experimental_lane,
        "max_fraction_symbols_per_target": spec.max_fraction_symbols_per_target,
        "both_strong_behavior": spec.both_strong_behavior,
        "evidence": ({"gated": False, "why": "evidence.trainAnyway: the gates are off, so sides are rated on point estimates "
                                                "(and a diverged selection may train in the experimental lane)"}
                     if verdicts is None else
                     {"gated": True, "alpha": verdicts.alpha, "sides": verdicts.tried, "passed": verdicts.count, "level": verdicts.level,
                      "rule": "usable only when the score's lower bound clears the side's min_score (Benjamini–Hochberg over every side)"}),
    }
    return RoutingPlan(metadata=metadata, candidates_path=candidates_path, thresholds=thresholds, targets=targets)


def _target_identity(target: str, candidates: Sequence[RoutingCandidate]) -> tuple[TaskType, int | None]:
    kinds = {(c.task, c.horizon_minutes) for c in candidates}
    if len(kinds) != 1:
        raise ValueError(f"routing candidates of target {target!r} disagree on task/horizon: {sorted(map(str, kinds))}; rebuild the candidates")
    return next(iter(kinds))


def _score_or_floor(score: float | None) -> float:
    return -math.inf if score is None else score


def _stability_list(values: frozenset[Stability]) -> list[str]:
    return [s.value for s in _STABILITY_ORDER if s in values]


def _fmt(value: float) -> str:
    return f"{value:.4f}"
