"""Plan files: routing and training plan writers, derived views, stale-view removal, validating readers."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from trainpipe.contract.names import Leakage, Stability, TaskType
from trainpipe.contract.pipeline import RoutingSpec
from trainpipe.contract.plan import PlanMetadata, RoutingCandidate, TrainingPlanMetadata
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
from trainpipe.stages.candidates import candidates_frame
from trainpipe.stages.planning import build_training_plan
from trainpipe.stages.routing import build_routing_plan

META = PlanMetadata(generated_at="2024-01-02T03:04:05Z", run_id="run1", code_version="0.1.0", config_digest="cfg", data_digest="data")
SPEC = RoutingSpec(min_sample_size_cs=1000, min_sample_size_symbol=250, max_fraction_symbols_per_target=0.5)


def cand(target, symbol, score, n=2000, task=TaskType.REGRESSION):
    return RoutingCandidate(
        target=target, symbol=symbol, task=task, horizon_minutes=1440 if task is TaskType.REGRESSION else 5,
        metric_name="ic" if task is TaskType.REGRESSION else "auc", score=score, score_ci_low=score - 0.01,
        score_ci_high=score + 0.01, sample_size=n, n_folds=4, stability=Stability.STABLE, leakage_status=Leakage.SAFE,
    )


CANDIDATES = [
    cand("fwd_ret_1d", None, 0.06),
    cand("fwd_ret_1d", "AAA", 0.07),  # BOTH
    cand("fwd_ret_1d", "BBB", 0.0, n=300),  # CS only
    cand("y_up_5m", None, 0.50, task=TaskType.BINARY),  # CS disallowed
    cand("y_up_5m", "AAA", 0.56, task=TaskType.BINARY),  # SYMBOL_SPECIFIC
    cand("y_up_5m", "BBB", 0.53, task=TaskType.BINARY),  # EXPERIMENTAL_ONLY
]


def make_plans(layout, candidates=CANDIDATES, symbols=("AAA", "BBB")):
    # Point estimates (alpha=None): the files' shape is under test here; the evidence gate has its own tests.
    routing = build_routing_plan(candidates, symbols, SPEC, META, layout.relative(layout.routing_candidates), alpha=None)
    targets = sorted(routing.targets)
    training = build_training_plan(
        routing,
        {t: ["f1", "f2"] for t in targets},
        {t: routing.targets[t].task for t in targets},
        ["lightgbm", "mlp"],
        None,
        TrainingPlanMetadata(**META.model_dump(), routing_plan_path=layout.relative(layout.routing_plan_json), model_families=[], model_families_requested=None),
    )
    return routing, training


def test_write_routing_files(tmp_path):
    layout = Layout(tmp_path)
    routing, _ = make_plans(layout)
    write_routing(layout, candidates_frame(CANDIDATES), routing)
    assert pd.read_parquet(layout.routing_candidates).shape[0] == len(CANDIDATES)
    assert read_routing_plan(layout) == routing
    assert read_routing_plan(layout.routing_plan_dir) == routing
    assert json.loads(layout.routing_plan_json.read_text())["candidates_path"] == "METRICS/routing_candidates.parquet"
    md = layout.routing_plan_md.read_text()
    assert "## fwd_ret_1d" in md and "cross-sectional: **ENABLED** (STRONG)" in md
    assert "| BBB | ROUTE_EXPERIMENTAL_ONLY |" in md and "cross-sectional: **DISABLED** (DISALLOWED)" in md


def test_write_training_plan_files_and_views(tmp_path):
    layout = Layout(tmp_path)
    _, plan = make_plans(layout)
    write_training_plan(layout, plan)
    assert layout.master_training_plan.read_bytes() == layout.training_plan_mirror.read_bytes()
    assert read_training_plan(layout) == plan
    assert plan.metadata.routing_plan_path == "METRICS/routing_plan/routing_plan.json"
    md = layout.training_plan_md.read_text()
    assert "jobs: 4" in md and "| ROUTE_BOTH | 1 |" in md and "`sym_y_up_5m_bbb`" in md

    files = {p.relative_to(layout.training_plan_dir).as_posix() for p in layout.training_plan_dir.rglob("*.json")}
    assert files == {
        "master_training_plan.json",
        "training_plan.json",
        "by_target/fwd_ret_1d.json",
        "by_target/y_up_5m.json",
        "by_symbol/AAA.json",
        "by_symbol/BBB.json",
        "by_type/cross_sectional.json",
        "by_type/symbol_specific.json",
        "by_route/both.json",
        "by_route/cross_sectional.json",
        "by_route/symbol_specific.json",
        "by_route/experimental_only.json",
    }
    by_target = json.loads(view_path(layout, "by_target", "fwd_ret_1d").read_text())
    assert by_target["target"] == "fwd_ret_1d"
    assert [j["job_id"] for j in by_target["jobs"]] == ["sym_fwd_ret_1d_aaa", "cs_fwd_ret_1d"]  # plan order kept
    by_symbol = json.loads(view_path(layout, "by_symbol", "AAA").read_text())
    assert {j["job_id"] for j in by_symbol["jobs"]} == {"sym_fwd_ret_1d_aaa", "sym_y_up_5m_aaa"}
    assert json.loads(view_path(layout, "by_type", "cross_sectional").read_text())["training_type"] == "cross_sectional"
    assert json.loads(view_path(layout, "by_route", "ROUTE_EXPERIMENTAL_ONLY").read_text())["route"] == "ROUTE_EXPERIMENTAL_ONLY"


def test_rewrite_removes_stale_views(tmp_path):
    layout = Layout(tmp_path)
    _, first = make_plans(layout)
    write_training_plan(layout, first)
    # Second plan: only fwd_ret_1d and only symbol AAA.
    _, second = make_plans(layout, [c for c in CANDIDATES if c.target == "fwd_ret_1d" and c.symbol != "BBB"], symbols=("AAA",))
    write_training_plan(layout, second)
    assert not view_path(layout, "by_target", "y_up_5m").exists()
    assert not view_path(layout, "by_symbol", "BBB").exists()
    assert not view_path(layout, "by_route", "ROUTE_EXPERIMENTAL_ONLY").exists()
    assert view_path(layout, "by_target", "fwd_ret_1d").exists()
    assert read_training_plan(layout) == second
    # No temp or backup folders left beside the views.
    assert sorted(p.name for p in layout.training_plan_dir.iterdir()) == sorted(
        ["by_route", "by_symbol", "by_target", "by_type", "master_training_plan.json", "training_plan.json", "training_plan.md"]
    )


def test_reader_falls_back_to_mirror(tmp_path):
    layout = Layout(tmp_path)
    _, plan = make_plans(layout)
    write_training_plan(layout, plan)
    layout.master_training_plan.unlink()
    assert read_training_plan(layout.training_plan_dir) == plan


@pytest.mark.parametrize("content", ["{not json", '{"schemaVersion": "trainpipe.io/plan/v1", "jobs": []}'], ids=["bad-json", "bad-schema"])
def test_invalid_training_plan_error_names_the_file(tmp_path, content):
    path = tmp_path / "master_training_plan.json"
    path.write_text(content)
    with pytest.raises(PlanFileError, match=str(path)) as info:
        read_training_plan(path)
    assert "run `trainpipe plan` to rewrite it" in str(info.value)


def test_schema_error_names_the_field(tmp_path):
    layout = Layout(tmp_path)
    routing, _ = make_plans(layout)
    content = routing.to_snake()
    content["targets"]["fwd_ret_1d"]["cross_sectional"]["state"] = "MAYBE"
    path = tmp_path / "routing_plan.json"
    path.write_text(json.dumps(content))
    with pytest.raises(PlanFileError, match=r"routing_plan\.json: not a valid routing plan: field 'targets.fwd_ret_1d.cross_sectional.state'"):
        read_routing_plan(path)


def test_missing_files_name_the_path(tmp_path):
    layout = Layout(tmp_path)
    with pytest.raises(PlanFileError, match="master_training_plan.json: no training plan there"):
        read_training_plan(layout)
    with pytest.raises(PlanFileError, match="routing_plan.json: no routing plan there"):
        read_routing_plan(layout)


# ------------------------------------------------------------------------ where `train` finds the plan


def _touch(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("{}")
    return path


def test_train_finds_the_output_folders_plan_before_the_seeds_legacy_folder(tmp_path) -> None:
    layout = Layout(tmp_path)
    legacy = _touch(layout.legacy_training_plan_dir / "master_training_plan.json")
    assert legacy == tmp_path / "METRICS" / "training_plan" / "master_training_plan.json"
    assert find_training_plan(layout) == legacy
    own = _touch(layout.master_training_plan)
    assert find_training_plan(layout) == own


def test_a_folder_with_only_the_mirror_gives_the_mirror_and_the_master_wins_over_it(tmp_path) -> None:
    layout = Layout(tmp_path / "out")
    mirror = _touch(tmp_path / "given" / "training_plan.json")
    assert find_training_plan(layout, tmp_path / "given") == mirror
    master = _touch(tmp_path / "given" / "master_training_plan.json")
    assert find_training_plan(layout, tmp_path / "given") == master
    assert find_training_plan(layout, mirror) == mirror  # a file is taken as it is


def test_an_explicit_folder_is_the_only_place_looked(tmp_path) -> None:
    layout = Layout(tmp_path / "out")
    _touch(layout.master_training_plan)
    with pytest.raises(PlanFileError, match="no training plan at .*given/master_training_plan.json; pass the folder"):
        find_training_plan(layout, tmp_path / "given")


def test_no_plan_anywhere_names_both_folders_and_the_fix(tmp_path) -> None:
    with pytest.raises(PlanFileError) as err:
        find_training_plan(Layout(tmp_path))
    assert "globals/training_plan/master_training_plan.json or" in str(err.value)
    assert "METRICS/training_plan/master_training_plan.json" in str(err.value) and "--training-plan-dir" in str(err.value)
