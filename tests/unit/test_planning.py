"""Training-plan generation: job ids, priorities, order, features, symbol jobs per route, empty plans, a golden plan."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from trainpipe.contract.names import Route, SideState, TaskType, TrainingType
from trainpipe.contract.plan import (
    CrossSectionalDecision,
    PlanMetadata,
    RoutingPlan,
    SymbolDecision,
    TargetRouting,
    TrainingPlan,
    TrainingPlanMetadata,
)
from trainpipe.stages.planning import EmptyPlanError, build_training_plan, job_id

GOLDEN = Path(__file__).parent / "golden" / "training_plan_small.json"
ROUTING_PLAN_PATH = "METRICS/routing_plan/routing_plan.json"
FAMILIES = ["lightgbm", "xgboost", "mlp"]  # CPU before GPU, as the caller orders them


def meta(generated_at="2024-01-02T03:04:05Z"):
    return TrainingPlanMetadata(
        generated_at=generated_at,
        run_id="run1",
        code_version="0.1.0",
        config_digest="cfg",
        data_digest="data",
        routing_plan_path=ROUTING_PLAN_PATH,
        model_families=[],
        model_families_requested=None,
    )


def cs(state, score=0.05, n=5000):
    usable = state in (SideState.STRONG, SideState.WEAK_BUT_OK)
    return CrossSectionalDecision(enabled=usable, state=state, score=score, sample_size=n, metric_name="ic", reason=f"{state.value}: cs")


def sym(route, cs_state, local_state, score=0.04, n=800):
    return SymbolDecision(
        route=route, cs_state=cs_state, local_state=local_state, score=score, sample_size=n,
        reason=[f"route: {route.value}", f"symbol {local_state.value}", f"cs {cs_state.value}"],
    )


def target(cs_decision, symbols, task=TaskType.REGRESSION):
    return TargetRouting(task=task, horizon_minutes=1440, cross_sectional=cs_decision, symbols=symbols)


S, W, E, D = SideState.STRONG, SideState.WEAK_BUT_OK, SideState.EXPERIMENTAL, SideState.DISALLOWED


def routing_plan(targets):
    return RoutingPlan(
        metadata=PlanMetadata(generated_at="2024-01-02T03:04:05Z", run_id="run1", code_version="0.1.0", config_digest="cfg", data_digest="data"),
        candidates_path="METRICS/routing_candidates.parquet",
        thresholds={},
        targets=targets,
    )


# Every route appears: BOTH, SYMBOL_SPECIFIC, CS, EXPERIMENTAL_ONLY (local experimental and CS-only experimental), BLOCKED.
ROUTING = routing_plan(
    {
        "fwd_ret_1d": target(
            cs(S, 0.06, 9000),
            {
                "AAA": sym(Route.BOTH, S, S, 0.07, 1200),
                "BRK.B": sym(Route.CROSS_SECTIONAL, S, D, 0.0, 100),
                "CCC": sym(Route.BLOCKED, S, D),  # cannot happen via combine, but the planner must skip it
            },
        ),
        "Y_Up-5m": target(
            cs(D, None, 0),
            {
                "AAA": sym(Route.SYMBOL_SPECIFIC, D, W, 0.56, 700),
                "BRK.B": sym(Route.EXPERIMENTAL_ONLY, D, E, 0.53, 600),
                "CCC": sym(Route.BLOCKED, D, D),
            },
            task=TaskType.BINARY,
        ),
        "fwd_ret_5m": target(cs(E, 0.004, 3000), {"AAA": sym(Route.EXPERIMENTAL_ONLY, E, D, 0.0, 10)}),
    }
)
FEATURES = {"fwd_ret_1d": ["f1", "f2"], "Y_Up-5m": ["f3"], "fwd_ret_5m": ["f2", "f1"]}
TASKS = {"fwd_ret_1d": TaskType.REGRESSION, "Y_Up-5m": TaskType.BINARY, "fwd_ret_5m": TaskType.REGRESSION}


def build(routing=ROUTING, features=FEATURES, **kw):
    return build_training_plan(routing, features, TASKS, FAMILIES, kw.pop("requested", ["LightGBM", "xgboost", "mlp"]), meta(**kw.pop("meta", {})), **kw)


def test_job_ids_priorities_and_order():
    plan = build()
    assert [(j.job_id, j.route, j.priority) for j in plan.jobs] == [
        ("sym_fwd_ret_1d_aaa", Route.BOTH, 3),
        ("cs_fwd_ret_1d", Route.CROSS_SECTIONAL, 2),
        ("sym_y_up-5m_aaa", Route.SYMBOL_SPECIFIC, 2),
        ("cs_fwd_ret_5m", Route.EXPERIMENTAL_ONLY, 1),
        ("sym_y_up-5m_brk.b", Route.EXPERIMENTAL_ONLY, 1),
    ]


def test_symbol_jobs_only_for_symbol_routes():
    plan = build()
    symbol_jobs = {(j.target, j.symbol): j for j in plan.jobs if j.symbol is not None}
    assert set(symbol_jobs) == {("fwd_ret_1d", "AAA"), ("Y_Up-5m", "AAA"), ("Y_Up-5m", "BRK.B")}
    assert all(j.training_type is TrainingType.SYMBOL_SPECIFIC for j in symbol_jobs.values())
    # CROSS_SECTIONAL and BLOCKED make no symbol job; an experimental CS serves its symbols via the CS job.
    assert ("fwd_ret_1d", "BRK.B") not in symbol_jobs and ("fwd_ret_5m", "AAA") not in symbol_jobs
    cs_jobs = {j.target: j for j in plan.jobs if j.symbol is None}
    assert set(cs_jobs) == {"fwd_ret_1d", "fwd_ret_5m"}  # Y_Up-5m CS is disallowed
    assert cs_jobs["fwd_ret_5m"].metadata["experimental"] is True


def test_features_families_samples_and_metadata_per_job():
    plan = build()
    jobs = {j.job_id: j for j in plan.jobs}
    assert jobs["cs_fwd_ret_5m"].features == ["f2", "f1"]  # the selected order is kept
    assert jobs["sym_y_up-5m_aaa"].features == ["f3"]
    assert all(j.model_families == FAMILIES for j in plan.jobs)
    assert jobs["cs_fwd_ret_1d"].model_families is not jobs["sym_fwd_ret_1d_aaa"].model_families
    assert (jobs["cs_fwd_ret_1d"].estimated_samples, jobs["sym_fwd_ret_1d_aaa"].estimated_samples) == (9000, 1200)
    assert jobs["sym_y_up-5m_aaa"].task is TaskType.BINARY
    assert jobs["sym_fwd_ret_1d_aaa"].metadata["needs_cs_ensemble"] is True
    assert jobs["sym_y_up-5m_aaa"].metadata["cs_state"] == "DISALLOWED"
    assert plan.metadata.routing_plan_path == ROUTING_PLAN_PATH
    assert plan.metadata.model_families == FAMILIES
    assert plan.metadata.model_families_requested == ["LightGBM", "xgboost", "mlp"]


def test_summary_counts():
    s = build().summary
    assert s.total_jobs == 5
    assert s.by_route == {"ROUTE_BOTH": 1, "ROUTE_CROSS_SECTIONAL": 1, "ROUTE_EXPERIMENTAL_ONLY": 2, "ROUTE_SYMBOL_SPECIFIC": 1}
    assert s.by_type == {"cross_sectional": 2, "symbol_specific": 3}
    assert s.by_priority == {"3": 1, "2": 2, "1": 2}
    assert (s.total_cs_jobs, s.total_symbol_jobs, s.total_blocked) == (2, 3, 2)


def test_job_id_normalisation():
    assert job_id("sym", "Fwd Ret/5m", "BRK.B") == "sym_fwd_ret_5m_brk.b"
    # Symbols map injectively (trainpipe.contract.units.symbol_key): 'abc' and 'ABC' are two jobs now.
    both = routing_plan({"fwd_ret_1d": target(cs(D), {"abc": sym(Route.SYMBOL_SPECIFIC, D, S), "ABC": sym(Route.SYMBOL_SPECIFIC, D, S)})})
    ids = {j.symbol: j.job_id for j in build(both, {"fwd_ret_1d": ["f"]}).jobs if j.symbol}
    assert ids["ABC"] == "sym_fwd_ret_1d_abc" and ids["abc"].startswith("sym_fwd_ret_1d_abc-")
    # Target names are data columns, lower-cased into ids: two that differ only in case still collide, loudly.
    collide = routing_plan({"fwd_ret_1d": target(cs(D), {"ABC": sym(Route.SYMBOL_SPECIFIC, D, S)}),
                            "FWD_RET_1D": target(cs(D), {"ABC": sym(Route.SYMBOL_SPECIFIC, D, S)})})
    with pytest.raises(ValueError, match="job id 'sym_fwd_ret_1d_abc' is shared"):
        build(collide, {"fwd_ret_1d": ["f"], "FWD_RET_1D": ["f"]})


def test_only_selected_targets_are_planned():
    plan = build(features={"fwd_ret_1d": ["f1"]})
    assert {j.target for j in plan.jobs} == {"fwd_ret_1d"}
    assert plan.summary.total_blocked == 1  # fwd_ret_1d/CCC; the blocked route of the unplanned Y_Up-5m is not counted


def test_task_mismatch_is_an_error():
    with pytest.raises(ValueError, match="tasks says binary but the routing plan says regression"):
        build_training_plan(ROUTING, FEATURES, {**TASKS, "fwd_ret_1d": TaskType.BINARY}, FAMILIES, None, meta())


EMPTY_ROUTING = routing_plan(
    {
        "fwd_ret_1d": target(
            CrossSectionalDecision(enabled=False, state=D, score=0.01, sample_size=50, metric_name="ic", reason="DISALLOWED: sample size 50 < routing.min_sample_size_cs=1000"),
            {"AAA": sym(Route.BLOCKED, D, D)},
        )
    }
)


def test_empty_plan_raises_with_reasons_per_target():
    with pytest.raises(EmptyPlanError) as info:
        build(EMPTY_ROUTING, {"fwd_ret_1d": ["f1"], "fwd_ret_4h": ["f2"]})
    err = info.value
    assert isinstance(err, ValueError)
    assert set(err.reasons) == {"fwd_ret_1d", "fwd_ret_4h"}
    message = str(err)
    assert "sample size 50 < routing.min_sample_size_cs=1000" in message
    assert "AAA: ROUTE_BLOCKED" in message
    assert "fwd_ret_4h" in message and "no routing decision" in message
    assert "allow_empty_plan" in message


def test_empty_plan_allowed_by_flag():
    plan = build(EMPTY_ROUTING, {"fwd_ret_1d": ["f1"]}, allow_empty=True)
    assert plan.jobs == [] and plan.summary.total_jobs == 0 and plan.summary.total_blocked == 1


def test_metadata_needs_the_routing_plan_path():
    base = PlanMetadata(generated_at="x", run_id="r", code_version="c", config_digest="c", data_digest="d")
    with pytest.raises(ValueError, match="routing plan's path"):
        build_training_plan(ROUTING, FEATURES, TASKS, FAMILIES, None, base)
    plan = build_training_plan(ROUTING, FEATURES, TASKS, FAMILIES, None, base, routing_plan_path="METRICS/routing_plan/routing_plan.json")
    assert plan.metadata.routing_plan_path == ROUTING_PLAN_PATH


def test_deterministic_only_generated_at_differs():
    a = build(meta={"generated_at": "2024-01-01T00:00:00Z"})
    b = build(meta={"generated_at": "2025-06-30T12:00:00Z"})
    assert a.jobs == b.jobs and a.summary == b.summary
    assert _without_generated_at(a) == _without_generated_at(b)
    shuffled = routing_plan(dict(reversed(list(ROUTING.targets.items()))))
    assert build(shuffled).jobs == a.jobs


def _without_generated_at(plan: TrainingPlan) -> dict:
    content = plan.to_snake()  # the spelling of the plan files
    del content["metadata"]["generated_at"]
    return content


def test_golden_small_plan():
    # Regenerate after an intended change with: UPDATE_GOLDEN=1 pytest tests/unit/test_planning.py
    got = json.dumps(_without_generated_at(build()), indent=2, sort_keys=True) + "\n"
    if os.environ.get("UPDATE_GOLDEN"):
        GOLDEN.parent.mkdir(parents=True, exist_ok=True)
        GOLDEN.write_text(got)
    assert GOLDEN.exists(), f"{GOLDEN} is missing: run UPDATE_GOLDEN=1 pytest {__file__}"
    assert got == GOLDEN.read_text()
    # The golden file is also a valid plan once a generated_at is put back.
    wire = json.loads(got)
    wire["metadata"]["generated_at"] = "2024-01-02T03:04:05Z"
    assert TrainingPlan.model_validate(wire) == build()
