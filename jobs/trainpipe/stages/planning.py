"""Training-plan generation: turns a routing plan and selected features into ordered training jobs; called by `plan`.

The seed's plan rules, with its quirks fixed:

* one CS job `cs_<target>` when the CS side is usable (priority 2); one *experimental* CS job under the
  same id when the CS side is EXPERIMENTAL (route EXPERIMENTAL_ONLY, priority 1) — see routing.py;
* one symbol job `sym_<target>_<symbol>` per ROUTE_BOTH (priority 3), ROUTE_SYMBOL_SPECIFIC (2) and
  ROUTE_EXPERIMENTAL_ONLY whose local side is EXPERIMENTAL (1). An EXPERIMENTAL_ONLY route whose only
  experimental side is CS is served by the experimental CS job, not by a symbol model;
  ROUTE_CROSS_SECTIONAL and ROUTE_BLOCKED make no symbol job;
* job ids are lower-cased and every character outside `[a-z0-9_.-]` becomes `_`; two jobs that
  normalise to the same id are an error rather than a silent overwrite;
* `estimated_samples` comes from the routing sample sizes (out-of-sample rows behind the decision),
  `features` is the target's selected list, `model_families` a copy of the caller's list in the
  caller's order (CPU families before GPU ones; never re-sorted);
* jobs are sorted by priority (descending), then job id, so the same inputs give the same plan;
* a plan with no job raises `EmptyPlanError` listing per target why nothing was routed, unless
  `allow_empty` (the pipeline's `training.allow_empty_plan`).

Only targets that are both in the routing plan and in `selected_features` are planned: ranking
scores every target, selection keeps the top N, and only those have a feature list.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from trainpipe.contract.exitcodes import CommandFailure, ExitCode
from trainpipe.contract.names import Route, SideState, TaskType, TrainingType
from trainpipe.contract.plan import (
    PlanMetadata,
    PlanSummary,
    RoutingPlan,
    TargetRouting,
    TrainingJob,
    TrainingPlan,
    TrainingPlanMetadata,
)
from trainpipe.contract.units import symbol_key
from trainpipe.stages.routing import USABLE_STATES

PRIORITY_BOTH = 3
PRIORITY_SYMBOL_SPECIFIC = 2
PRIORITY_CROSS_SECTIONAL = 2
PRIORITY_EXPERIMENTAL = 1

_SYMBOL_ROUTE_PRIORITY: Mapping[Route, int] = {
    Route.BOTH: PRIORITY_BOTH,
    Route.SYMBOL_SPECIFIC: PRIORITY_SYMBOL_SPECIFIC,
    Route.EXPERIMENTAL_ONLY: PRIORITY_EXPERIMENTAL,
}

_UNSAFE_ID_CHARS = re.compile(r"[^a-z0-9_.-]")


class EmptyPlanError(ValueError, CommandFailure):
    """The plan has no job; `reasons` maps each target to why nothing of it was routed."""

    exit_code = ExitCode.EMPTY_PLAN

    def __init__(self, reasons: Mapping[str, list[str]]):
        self.reasons = {target: list(lines) for target, lines in reasons.items()}
        detail = "\n".join(
            f"  {target}:\n" + "\n".join(f"    - {line}" for line in lines) for target, lines in self.reasons.items()
        ) or "  (no target was routed or selected)"
        super().__init__(
            "training plan has no jobs; per target, why nothing was routed:\n"
            f"{detail}\n"
            "Next: inspect METRICS/routing_plan/routing_plan.md; lower routing.min_sample_size_cs/_symbol, "
            "enable routing.enable_experimental_lane, add data, or set training.allow_empty_plan: true to accept an empty plan."
        )


def job_id(*parts: str) -> str:
    """A job id from its parts: lower-cased, joined by `_`, characters outside [a-z0-9_.-] replaced by `_`."""
    return _UNSAFE_ID_CHARS.sub("_", "_".join(parts).lower())


def build_training_plan(
    routing: RoutingPlan,
    selected_features: Mapping[str, list[str]],
    tasks: Mapping[str, TaskType],
    families: Sequence[str],
    families_requested: Sequence[str] | None,
    metadata: PlanMetadata,
    *,
    allow_empty: bool = False,
    routing_plan_path: str | None = None,
) -> TrainingPlan:
    """The training plan for `routing`. `metadata` supplies run id, digests and generated_at (pass a
    `TrainingPlanMetadata` or a `PlanMetadata` plus `routing_plan_path`); its family fields are replaced
    by `families` / `families_requested` so the plan has one source for them."""
    path = routing_plan_path or (metadata.routing_plan_path if isinstance(metadata, TrainingPlanMetadata) else None)
    if not path:
        raise ValueError("build_training_plan needs the routing plan's path: pass a TrainingPlanMetadata or routing_plan_path=")
    family_list = list(families)
    if len(set(family_list)) != len(family_list):
        raise ValueError(f"model families list a family twice: {family_list}; normalise the family list before planning")

    jobs: list[TrainingJob] = []
    planned: list[str] = []
    empty_reasons: dict[str, list[str]] = {}
    for target in sorted(set(routing.targets) | set(selected_features)):
        target_routing = routing.targets.get(target)
        features = selected_features.get(target)
        if target_routing is None:
            empty_reasons[target] = ["no routing decision: ranking produced no out-of-sample score for it"]
            continue
        if features is None:
            empty_reasons[target] = ["not selected: feature selection has no feature list for it (not in the top N)"]
            continue
        if not features:
            empty_reasons[target] = ["feature selection kept no feature for it"]
            continue
        task = TaskType(tasks.get(target, target_routing.task))
        if task is not target_routing.task:
            raise ValueError(
                f"target {target!r}: tasks says {task.value} but the routing plan says {target_routing.task.value}; "
                "rerun `trainpipe plan` from the same ranking output"
            )
        planned.append(target)
        target_jobs = _target_jobs(target, target_routing, list(features), task, family_list)
        jobs.extend(target_jobs)
        if not target_jobs:
            empty_reasons[target] = _no_job_reasons(target_routing)

    _check_unique_ids(jobs)
    jobs.sort(key=lambda job: (-job.priority, job.job_id))
    if not jobs and not allow_empty:
        raise EmptyPlanError(empty_reasons)

    plan_metadata = TrainingPlanMetadata(
        **{name: getattr(metadata, name) for name in PlanMetadata.model_fields},
        routing_plan_path=path,
        metrics_snapshot=routing.candidates_path,
        model_families=family_list,
        model_families_requested=None if families_requested is None else list(families_requested),
        holdout_cut=metadata.holdout_cut if isinstance(metadata, TrainingPlanMetadata) else None,
    )
    return TrainingPlan(metadata=plan_metadata, jobs=jobs, summary=_summary(jobs, [routing.targets[t] for t in planned]))


def _target_jobs(target: str, routing: TargetRouting, features: list[str], task: TaskType, families: list[str]) -> list[TrainingJob]:
    jobs: list[TrainingJob] = []
    cs = routing.cross_sectional
    if cs.state in USABLE_STATES or cs.state is SideState.EXPERIMENTAL:
        experimental = cs.state is SideState.EXPERIMENTAL
        jobs.append(
            TrainingJob(
                job_id=job_id("cs", target),
                target=target,
                symbol=None,
                route=Route.EXPERIMENTAL_ONLY if experimental else Route.CROSS_SECTIONAL,
                training_type=TrainingType.CROSS_SECTIONAL,
                task=task,
                model_families=list(families),
                features=list(features),
                priority=PRIORITY_EXPERIMENTAL if experimental else PRIORITY_CROSS_SECTIONAL,
                estimated_samples=cs.sample_size,
                reason=cs.reason,
                metadata=_metadata(cs_state=cs.state, score=cs.score, metric_name=cs.metric_name, experimental=experimental),
            )
        )
    for symbol in sorted(routing.symbols):
        decision = routing.symbols[symbol]
        if decision.route not in _SYMBOL_ROUTE_PRIORITY:
            continue  # CROSS_SECTIONAL is served by the CS job; BLOCKED trains nothing.
        if decision.route is Route.EXPERIMENTAL_ONLY and decision.local_state is not SideState.EXPERIMENTAL:
            continue  # Only the CS side is experimental: the experimental CS job serves this symbol.
        jobs.append(
            TrainingJob(
                job_id=job_id("sym", target, symbol_key(symbol)),  # ^VIX and _VIX must not share an id
                target=target,
                symbol=symbol,
                route=decision.route,
                training_type=TrainingType.SYMBOL_SPECIFIC,
                task=task,
                model_families=list(families),
                features=list(features),
                priority=_SYMBOL_ROUTE_PRIORITY[decision.route],
                estimated_samples=decision.sample_size,
                reason="; ".join(decision.reason),
                metadata=_metadata(
                    cs_state=decision.cs_state,
                    local_state=decision.local_state,
                    score=decision.score,
                    metric_name=routing.cross_sectional.metric_name,
                    experimental=decision.route is Route.EXPERIMENTAL_ONLY,
                    needs_cs_ensemble=decision.route is Route.BOTH,
                ),
            )
        )
    return jobs


def _metadata(**values: Any) -> dict[str, Any]:
    # Enums as their plain values so the JSON copy and the in-memory plan compare equal after a round trip.
    return {key: (value.value if isinstance(value, SideState) else value) for key, value in values.items()}


def _no_job_reasons(routing: TargetRouting) -> list[str]:
    lines = [f"cross-sectional: {routing.cross_sectional.reason}"]
    for symbol in sorted(routing.symbols):
        d = routing.symbols[symbol]
        lines.append(f"{symbol}: {d.route.value}: " + "; ".join(d.reason))
    return lines


def _check_unique_ids(jobs: list[TrainingJob]) -> None:
    seen: dict[str, TrainingJob] = {}
    for job in jobs:
        other = seen.setdefault(job.job_id, job)
        if other is not job:
            raise ValueError(
                f"job id {job.job_id!r} is shared by target {other.target!r}/symbol {other.symbol!r} and "
                f"target {job.target!r}/symbol {job.symbol!r} once lower-cased and cleaned to [a-z0-9_.-]: "
                "rename one of them so they differ beyond case and punctuation"
            )


def _summary(jobs: list[TrainingJob], planned: list[TargetRouting]) -> PlanSummary:
    by_route = Counter(job.route.value for job in jobs)
    by_type = Counter(job.training_type.value for job in jobs)
    by_priority = Counter(job.priority for job in jobs)
    return PlanSummary(
        total_jobs=len(jobs),
        by_route=dict(sorted(by_route.items())),
        by_type=dict(sorted(by_type.items())),
        by_priority={str(p): by_priority[p] for p in sorted(by_priority, reverse=True)},
        total_cs_jobs=by_type.get(TrainingType.CROSS_SECTIONAL.value, 0),
        total_symbol_jobs=by_type.get(TrainingType.SYMBOL_SPECIFIC.value, 0),
        # Blocked (target, symbol) routes of the planned targets: no job, but the count says how much was refused.
        total_blocked=sum(d.route is Route.BLOCKED for t in planned for d in t.symbols.values()),
    )
