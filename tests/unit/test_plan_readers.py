"""Plan files as their readers see them: the snake_case key names plan readers look up, either spelling read, one digest.

Plan readers written before trainpipe (training-plan consumers, dashboards, users' scripts) open
`master_training_plan.json`, its views and `routing_plan.json` as plain JSON and look keys up by name, so
these tests read the files with `json` only, never through the models, and list the names literally.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from pydantic.alias_generators import to_camel

from test_plan_files import CANDIDATES, make_plans
from trainpipe.cli.termination import success_line
from trainpipe.contract.outcomes import Outcome
from trainpipe.contract.plan import (
    CrossSectionalDecision,
    PlanMetadata,
    PlanSummary,
    RoutingPlan,
    SymbolDecision,
    TargetRouting,
    TrainingJob,
    TrainingPlan,
    TrainingPlanMetadata,
    plan_digest,
)
from trainpipe.contract.reports import PlanReport
from trainpipe.io.layout import Layout
from trainpipe.io.plan_files import (
    PlanFileError,
    find_training_plan,
    read_routing_plan,
    read_training_plan,
    view_path,
    write_routing,
    write_training_plan,
)
from trainpipe.runner.plan_identity import stale_plan_reason
from trainpipe.runner.reports import plan_report
from trainpipe.stages.candidates import candidates_frame
from trainpipe_operator import manifests
from trainpipe_operator.policies.gating import termination_report

# The names plan readers look up, as the plan schema lists them. New keys may sit beside them; none may be missing.
PLAN_TOP = {"metadata", "jobs", "summary"}
PLAN_METADATA = {"generated_at", "run_id", "git_commit", "config_hash", "routing_plan_path", "metrics_snapshot", "total_jobs",
                 "model_families", "model_families_requested", "model_families_normalized"}
PLAN_JOB = {"job_id", "target", "symbol", "route", "training_type", "model_families", "priority", "estimated_samples", "reason", "metadata"}
PLAN_SUMMARY = {"by_route", "by_type", "by_priority", "total_cs_jobs", "total_symbol_jobs", "total_blocked"}
ROUTING_METADATA = {"generated_at", "git_commit", "config_hash", "metrics_snapshot"}
ROUTING_CS = {"state", "route", "reason"}
ROUTING_SYMBOL = {"route", "cs_state", "local_state", "reason"}

PLAN_MODELS = (TrainingPlan, TrainingPlanMetadata, PlanMetadata, TrainingJob, PlanSummary, RoutingPlan, TargetRouting,
               CrossSectionalDecision, SymbolDecision)
# Every field name whose camelCase spelling differs: none of these may appear in a plan file.
CAMEL_KEYS = {to_camel(name) for model in PLAN_MODELS for name in [*model.model_fields, *model.model_computed_fields]} - {
    name for model in PLAN_MODELS for name in model.model_fields}


def _written(tmp_path: Path) -> tuple[Layout, RoutingPlan, TrainingPlan]:
    layout = Layout(tmp_path)
    routing, plan = make_plans(layout)
    write_routing(layout, candidates_frame(CANDIDATES), routing)
    write_training_plan(layout, plan)
    return layout, routing, plan


def _keys(node: Any) -> set[str]:
    if isinstance(node, dict):
        return set(node) | {k for v in node.values() for k in _keys(v)}
    if isinstance(node, list):
        return {k for v in node for k in _keys(v)}
    return set()


def _consumer_validates(plan: dict) -> None:
    """What a plan reader checks before it trusts a plan: top-level keys, the metadata counts, each job's shape."""
    assert PLAN_TOP <= set(plan)
    assert plan["metadata"]["generated_at"] and plan["metadata"]["total_jobs"] == len(plan["jobs"])
    for job in plan["jobs"]:
        assert {"job_id", "target", "route", "training_type"} <= set(job)
        assert isinstance(job["target"], str) and isinstance(job["model_families"], list)


def _families_for(plan: dict, target: str, symbol: str | None, training_type: str) -> list[str]:
    """A plan reader's family lookup: the matching job's list (CS before symbol jobs, then job id), else the plan's."""
    jobs = [j for j in plan["jobs"] if j["target"] == target and j["training_type"] == training_type and (symbol is None or j["symbol"] == symbol)]
    jobs.sort(key=lambda j: (j["training_type"] != "cross_sectional", j["job_id"], j["symbol"] or ""))
    return jobs[0]["model_families"] if jobs else plan["metadata"]["model_families_normalized"] or plan["metadata"]["model_families"]


def test_the_training_plan_files_use_the_key_names_plan_readers_look_up(tmp_path: Path) -> None:
    layout, _, plan = _written(tmp_path)
    for path in (layout.master_training_plan, layout.training_plan_mirror):
        raw = json.loads(path.read_text())
        _consumer_validates(raw)
        assert PLAN_METADATA <= set(raw["metadata"]), PLAN_METADATA - set(raw["metadata"])
        assert PLAN_SUMMARY <= set(raw["summary"]), PLAN_SUMMARY - set(raw["summary"])
        for job in raw["jobs"]:
            assert PLAN_JOB <= set(job), PLAN_JOB - set(job)
        assert not _keys(raw) & CAMEL_KEYS, f"{path.name} has camelCase keys: {sorted(_keys(raw) & CAMEL_KEYS)}"

    raw = json.loads(layout.master_training_plan.read_text())
    m = raw["metadata"]
    assert (m["run_id"], m["total_jobs"], m["routing_plan_path"]) == ("run1", 4, "METRICS/routing_plan/routing_plan.json")
    assert m["metrics_snapshot"] == "METRICS/routing_candidates.parquet"
    assert m["model_families"] == m["model_families_normalized"] == ["lightgbm", "mlp"] and m["model_families_requested"] is None
    assert (m["git_commit"], m["config_hash"]) == (plan.metadata.code_version, plan.metadata.config_digest)
    assert raw["summary"]["by_route"] == {"ROUTE_BOTH": 1, "ROUTE_CROSS_SECTIONAL": 1, "ROUTE_EXPERIMENTAL_ONLY": 1, "ROUTE_SYMBOL_SPECIFIC": 1}
    assert raw["summary"]["by_type"] == {"cross_sectional": 1, "symbol_specific": 3}
    assert {j["job_id"]: j["training_type"] for j in raw["jobs"]}["cs_fwd_ret_1d"] == "cross_sectional"
    assert {j["job_id"]: j["estimated_samples"] for j in raw["jobs"]}["sym_fwd_ret_1d_aaa"] == 2000
    assert _families_for(raw, "fwd_ret_1d", None, "cross_sectional") == ["lightgbm", "mlp"]


def test_the_view_files_name_their_key_as_plan_readers_do(tmp_path: Path) -> None:
    layout, _, _ = _written(tmp_path)
    views = {
        ("by_target", "fwd_ret_1d"): "target",
        ("by_symbol", "AAA"): "symbol",
        ("by_type", "symbol_specific"): "training_type",
        ("by_route", "ROUTE_BOTH"): "route",
    }
    for (view, key), name in views.items():
        raw = json.loads(view_path(layout, view, key).read_text())
        assert set(raw) == {name, "jobs"} and raw[name] == key
        assert raw["jobs"] and all(PLAN_JOB <= set(job) for job in raw["jobs"])
        assert not _keys(raw) & CAMEL_KEYS
    assert (layout.training_plan_dir / "by_type" / "symbol_specific.json").is_file()
    assert (layout.training_plan_dir / "by_route" / "both.json").is_file()


def test_the_routing_plan_file_uses_the_key_names_plan_readers_look_up(tmp_path: Path) -> None:
    layout, _, _ = _written(tmp_path)
    raw = json.loads(layout.routing_plan_json.read_text())
    assert ROUTING_METADATA <= set(raw["metadata"]) and raw["metadata"]["metrics_snapshot"] == "METRICS/routing_candidates.parquet"
    assert {"metadata", "targets"} <= set(raw)
    assert not _keys(raw) & CAMEL_KEYS, sorted(_keys(raw) & CAMEL_KEYS)
    routes = {}
    for target, routing in raw["targets"].items():
        assert {"cross_sectional", "symbols"} <= set(routing)
        assert ROUTING_CS <= set(routing["cross_sectional"])
        routes[target] = routing["cross_sectional"]["route"]
        for decision in routing["symbols"].values():
            assert ROUTING_SYMBOL <= set(decision)
            assert isinstance(decision["reason"], list) and all(isinstance(r, str) for r in decision["reason"])
    assert routes == {"fwd_ret_1d": "ENABLED", "y_up_5m": "DISABLED"}
    assert raw["targets"]["y_up_5m"]["symbols"]["AAA"]["route"] == "ROUTE_SYMBOL_SPECIFIC"


def test_keys_restated_for_readers_are_not_a_second_source(tmp_path: Path) -> None:
    layout, routing, plan = _written(tmp_path)
    raw = json.loads(layout.master_training_plan.read_text())
    for key in ("git_commit", "config_hash", "total_jobs", "model_families_normalized"):
        raw["metadata"][key] = "edited"
    layout.master_training_plan.write_text(json.dumps(raw))
    # Recomputed from the fields they restate: the plan reads back unchanged and rewrites them from those.
    assert read_training_plan(layout) == plan
    write_training_plan(layout, read_training_plan(layout))
    assert json.loads(layout.master_training_plan.read_text())["metadata"]["total_jobs"] == 4
    raw = json.loads(layout.routing_plan_json.read_text())
    raw["metadata"]["metrics_snapshot"] = raw["targets"]["fwd_ret_1d"]["cross_sectional"]["route"] = "edited"
    layout.routing_plan_json.write_text(json.dumps(raw))
    assert read_routing_plan(layout) == routing
    # The stored count is still checked against the jobs.
    raw = json.loads(layout.master_training_plan.read_text())
    del raw["jobs"][0]
    layout.master_training_plan.write_text(json.dumps(raw))
    with pytest.raises(PlanFileError, match=r"summary.total_jobs=4 but the plan lists 3 jobs"):
        read_training_plan(layout)


def test_plans_written_in_camel_case_by_earlier_versions_still_load(tmp_path: Path) -> None:
    layout, routing, plan = _written(tmp_path)
    # An earlier version's files: camelCase, without the keys added for plan readers, `reasons` for the symbol reasons.
    old_plan = plan.to_wire()
    for key in ("gitCommit", "configHash", "modelFamiliesNormalized", "totalJobs", "metricsSnapshot"):
        del old_plan["metadata"][key]
    layout.master_training_plan.write_text(json.dumps(old_plan))
    loaded = read_training_plan(find_training_plan(layout))
    assert loaded.jobs == plan.jobs and loaded.summary == plan.summary and loaded.metadata.metrics_snapshot is None

    old_routing = routing.to_wire()
    del old_routing["metadata"]["metricsSnapshot"]
    for target in old_routing["targets"].values():
        del target["crossSectional"]["route"]
        for decision in target["symbols"].values():
            decision["reasons"] = decision.pop("reason")
    layout.routing_plan_json.write_text(json.dumps(old_routing))
    assert read_routing_plan(layout) == routing


def test_the_digest_the_operator_carries_is_the_digest_train_computes_from_the_file(tmp_path: Path) -> None:
    layout, _, plan = _written(tmp_path)
    # Plan pod → termination message (camelCase) → operator → `<pipeline>-plan` ConfigMap → `train --plan-digest`.
    report = termination_report(success_line(plan_report(layout, Outcome.RAN).to_wire()) + "\n", PlanReport)
    assert isinstance(report, PlanReport)
    owner = manifests.Owner(namespace="ns", name="p", uid="u")
    config_map = manifests.plan_config_map(owner, "run1", report.plan_digest, report.path, dict(report.units))
    carried = config_map["data"]["digest"]

    from_file = read_training_plan(find_training_plan(layout))
    from_camel = TrainingPlan.model_validate(json.loads(json.dumps(plan.to_wire())))
    assert carried == plan_digest(from_file) == plan_digest(from_camel) == plan_digest(plan)
    assert stale_plan_reason(from_file, "run1", carried) is None

    # Spelling is not content: the same plan rewritten in camelCase keeps its digest ...
    layout.master_training_plan.write_text(json.dumps(plan.to_wire(), indent=4))
    assert stale_plan_reason(read_training_plan(layout), "run1", carried) is None
    # ... and a plan whose content changed does not.
    raw = json.loads(layout.training_plan_mirror.read_text())
    raw["jobs"][0]["features"] = list(reversed(raw["jobs"][0]["features"]))
    layout.master_training_plan.write_text(json.dumps(raw))
    assert stale_plan_reason(read_training_plan(layout), "run1", carried) == (
        f"its digest is {plan_digest(read_training_plan(layout))}, not {carried}")


@pytest.mark.parametrize("spelling", ["snake_case", "camelCase"])
def test_the_report_shows_the_plan_in_either_spelling(tmp_path: Path, spelling: str) -> None:
    from trainpipe.report.html import render

    layout, _, plan = _written(tmp_path)
    if spelling == "camelCase":
        layout.master_training_plan.write_text(json.dumps(plan.to_wire()))
    page = render(layout)
    assert "4 jobs — ROUTE_BOTH: 1, ROUTE_CROSS_SECTIONAL: 1, ROUTE_EXPERIMENTAL_ONLY: 1, ROUTE_SYMBOL_SPECIFIC: 1" in page
    assert "sym_fwd_ret_1d_aaa" in page and "symbol_specific" in page and "lightgbm, mlp" in page
