"""Adding a stage is one row in contract.stages plus one step on the jobs side.

A throwaway `audit` stage, added after the plan for the length of a test, runs in `trainpipe run` (and
as its own subcommand) and through the operator's `decide` like the built-in stages: its Job is
created after the plan's, the training Jobs wait for it, and the status counts and orders it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from operator_builders import observed_job, pipeline_view, succeeded_stages
from panels import make_panel, write_panel
from trainpipe.cli.main import build_parser, main
from trainpipe.contract.base import SnakeContract
from trainpipe.contract.names import LABEL_STAGE, Stage
from trainpipe.contract.pipeline import PipelineSpec
from trainpipe.contract.runs import run_id
from trainpipe.contract.stages import STAGES, FanOut, Pool, StageRow
from trainpipe.contract.status import PipelineStatus, PlanRef
from trainpipe.io.atomic import write_json
from trainpipe.io.layout import Layout
from trainpipe.io.plan_files import read_training_plan
from trainpipe.runner.steps import STEPS, RunContext, Step
from trainpipe_operator.config import OperatorConfig
from trainpipe_operator.decide import decide
from trainpipe_operator.observed import Observed

AUDIT = StageRow("audit", FanOut.SINGLE, Pool.CPU, ("audit",))


class AuditSummary(SnakeContract):
    jobs: int
    targets: list[str]


def audit_step(ctx: RunContext) -> AuditSummary:
    """Reads what the plan stage wrote and leaves one file: enough to show inputs, outputs and caching."""
    plan = read_training_plan(ctx.training_plan_path())
    summary = AuditSummary(jobs=len(plan.jobs), targets=sorted({job.target for job in plan.jobs}))
    write_json(ctx.layout.root / "audit.json", summary.to_wire())
    return summary


@pytest.fixture
def audit(monkeypatch: pytest.MonkeyPatch) -> Iterator[StageRow]:
    monkeypatch.setitem(STEPS, AUDIT.stage, Step(audit_step, AuditSummary, lambda layout, _: [layout.root / "audit.json"]))
    with STAGES.added(AUDIT, after=Stage.PLAN):
        yield AUDIT


def test_the_added_row_takes_its_place_in_every_derived_set_and_leaves_with_the_block():
    with STAGES.added(AUDIT, after=Stage.PLAN):
        assert STAGES.order == (Stage.RANK, Stage.SELECT, Stage.PLAN, "audit", Stage.CPU, Stage.GPU, Stage.REPORT)
        assert "audit" in STAGES.computing and "audit" not in STAGES.training + STAGES.reusable
        assert "audit" in build_parser()._subparsers._group_actions[0].choices  # type: ignore[union-attr]
        with pytest.raises(ValueError, match="already in the table"):
            with STAGES.added(AUDIT, after=Stage.RANK):
                pass
    assert STAGES.order == tuple(Stage)
    with pytest.raises(KeyError, match="'audit' is not a stage; the stages are rank, select"):
        STAGES["audit"]


SPEC = {"data": {"minRowsPerSymbol": 100}, "targets": {"topN": 2}, "features": {"topM": 3},
        "ranking": {"folds": 2, "maxRows": 1000}, "routing": {"minSampleSizeCs": 100, "minSampleSizeSymbol": 50},
        "training": {"families": ["lightgbm"]}, "seed": 7,
        "evidence": {"trainAnyway": True}}  # a 300-bar panel is too short to show its signal clears noise; the stage is under test


def _cli(command: str, data: Path, out: Path, *extra: str) -> dict:
    log = out.parent / f"{command}.log"
    code = main([command, "--spec-json", json.dumps(SPEC), "--data-dir", str(data), "--output-dir", str(out), "--threads", "1",
                 "--termination-log", str(log), *extra])
    assert code == 0, log.read_text()
    return json.loads(log.read_text())


def test_trainpipe_run_runs_the_added_stage_after_the_plan_and_caches_it(audit: StageRow, tmp_path: Path):
    data, out = tmp_path / "data", tmp_path / "out"
    write_panel(make_panel(n_days=300), data)

    first = _cli("run", data, out, "--skip-training")
    assert list(first["stages"]) == [Stage.RANK, Stage.SELECT, Stage.PLAN, "audit"]
    assert set(first["stages"].values()) == {"ran"}
    written = json.loads((out / "audit.json").read_text())
    plan = read_training_plan(Layout(out).master_training_plan)
    assert written["jobs"] == len(plan.jobs) > 0

    again = _cli("run", data, out, "--skip-training")
    assert set(again["stages"].values()) == {"cached"}, "same inputs: every stage, the added one too, is reused"

    (out / "audit.json").unlink()  # an output gone: the stage runs again, the ones before it stay cached
    third = _cli("run", data, out, "--skip-training")
    assert third["stages"] == {Stage.RANK: "cached", Stage.SELECT: "cached", Stage.PLAN: "cached", "audit": "ran"}
    assert (out / "audit.json").exists()

    alone = _cli("audit", data, out)  # its own subcommand, as its Job runs it
    assert alone["stage"] == "audit" and alone["status"] == "cached"


RUN_SPEC = PipelineSpec.model_validate({"data": {"dir": "example", "volume": {"claimName": "bars"}}, "training": {"families": ["lightgbm"]}})
RUN = run_id(RUN_SPEC)
DIGEST = "d" * 64
CONFIG = OperatorConfig(cpu_image="jobs-cpu:1", gpu_image="jobs-gpu:1")


def _after(*finished: str) -> PipelineStatus:
    plan = PlanRef(digest=DIGEST, path=f"/artifacts/demo/{RUN}/globals/training_plan/master_training_plan.json", units={"lightgbm": 4})
    return PipelineStatus(run_id=RUN, run_generation=1, started_at="2026-12-01T11:00:00Z", selected_targets=2, plan=plan,
                          output_path=f"/artifacts/demo/{RUN}", stages=succeeded_stages(*finished))


def _done(stage: str, family: str | None = None, n: int = 1):
    return observed_job(stage, family, run=RUN, completions=n, succeeded=n, complete=True)


def test_decide_runs_the_added_stage_between_the_plan_and_training(audit: StageRow):
    from datetime import UTC, datetime

    now = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
    finished = (Stage.RANK, Stage.SELECT, Stage.PLAN)
    before = [_done(Stage.RANK), _done(Stage.SELECT, n=2), _done(Stage.PLAN)]

    d = decide(pipeline_view(RUN_SPEC, _after(*finished)), Observed(jobs=tuple(before)), CONFIG, now)
    created = [m for m in d.create if m["kind"] == "Job"]
    assert [m["metadata"]["labels"][LABEL_STAGE] for m in created] == ["audit"], "training waits for the added stage"
    [container] = created[0]["spec"]["template"]["spec"]["containers"]
    args = build_parser().parse_args(container["args"])
    assert args.command == "audit" and args.run_id == RUN and container["image"] == "jobs-cpu:1"
    assert d.status.stage == "audit"
    assert d.status.progress == "4/10"  # rank 1 + select 2 + plan 1 done; audit 1, cpu 4 and report 1 to go

    d = decide(pipeline_view(RUN_SPEC, d.status), Observed(jobs=(*before, _done("audit"))), CONFIG, now)
    assert sorted(m["metadata"]["labels"][LABEL_STAGE] for m in d.create if m["kind"] == "Job") == [Stage.CPU]
    assert list(d.status.stages) == [Stage.RANK, Stage.SELECT, Stage.PLAN, "audit", Stage.CPU]
    assert d.status.stages["audit"].outcome == "Succeeded" and d.status.progress == "5/10"
