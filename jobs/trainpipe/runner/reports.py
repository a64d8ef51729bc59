"""What each stage command reports when it ends: the small camelCase JSON of `--termination-log`, which the operator reads.

Built from the artefacts on disk rather than from the run's in-memory summary, so a stage that was cached
or copied from another run reports exactly what a fresh run would. Called by `trainpipe.cli.main`.
"""

from __future__ import annotations

from typing import Any

from trainpipe.contract.plan import plan_digest
from trainpipe.contract.reports import PlanReport, RankReport
from trainpipe.contract.units import unit_counts
from trainpipe.io.layout import Layout
from trainpipe.io.stage_files import read_rankings
from trainpipe.runner.steps import StageOutcome


def rank_report(layout: Layout) -> dict:
    """`selected` is the select Job's completion count; `targets` (optional, may be dropped for size) names them."""
    ranking = read_rankings(layout)
    report = RankReport(selected=len(ranking.selected), ranked=len(ranking.targets), targets=list(ranking.selected))
    return report.model_dump(mode="json", by_alias=True, exclude_none=True)


def plan_report(layout: Layout) -> dict:
    """`units` is each family's Indexed Job completion count; `path` is relative to the output dir."""
    from trainpipe.io.plan_files import read_training_plan

    plan = read_training_plan(layout.master_training_plan)
    report = PlanReport(plan_digest=plan_digest(plan), run_id=plan.metadata.run_id, units=unit_counts(plan), jobs=len(plan.jobs),
                        path=layout.relative(layout.master_training_plan))
    return report.model_dump(mode="json", by_alias=True, exclude_none=True)


def stage_report(outcome: StageOutcome) -> dict:
    """Select (all targets) and the training stages: counts from the stage's summary."""
    summary = outcome.summary
    report: dict[str, Any] = {"stage": str(outcome.stage), "status": status_of(outcome)}
    if "targets" in summary and isinstance(summary["targets"], dict):
        report["targets"] = len(summary["targets"])
    for key in ("units", "trained", "skipped", "reused", "failed"):
        if key in summary:
            report[key] = summary[key]
    return report


def status_of(outcome: StageOutcome) -> str:
    if outcome.reused_from is not None:
        return "reused"
    return "cached" if outcome.cached else "ran"


def html_report(layout: Layout) -> dict:
    models = sum(1 for p in layout.models_dir.glob("*/*/metrics.json") if not p.parent.name.startswith("."))
    return {"stage": "report", "path": layout.relative(layout.report_html), "models": models}
