"""What each stage command reports when it ends: the small camelCase JSON of `--termination-log`, which the operator reads.

Built from the artefacts on disk rather than from the run's in-memory summary, so a stage that was cached
or copied from another run reports exactly what a fresh run would. Called by `trainpipe.cli.main`.
"""

from __future__ import annotations

from trainpipe.contract.outcomes import Outcome
from trainpipe.contract.plan import plan_digest
from trainpipe.contract.reports import HtmlReport, PlanReport, RankReport, StageCountsReport
from trainpipe.contract.summaries import SelectStageSummary, TrainingStageSummary
from trainpipe.contract.tracking import TrackingOutcome
from trainpipe.contract.units import unit_counts
from trainpipe.io.layout import Layout
from trainpipe.io.stage_files import read_rankings
from trainpipe.runner.steps import StageOutcome


def rank_report(layout: Layout, outcome: Outcome) -> RankReport:
    """`selected` is the select Job's completion count; `targets` (optional, may be dropped for size) names them."""
    ranking = read_rankings(layout)
    return RankReport(selected=len(ranking.selected), ranked=len(ranking.targets), targets=list(ranking.selected), status=outcome,
                      no_evidence=_short(ranking.no_evidence))


# The termination message holds 4 KiB; the whole line, targets included, must fit.
_NO_EVIDENCE_CHARS = 1200


def _short(text: str | None) -> str | None:
    return text if text is None or len(text) <= _NO_EVIDENCE_CHARS else text[: _NO_EVIDENCE_CHARS - 1] + "…"


def plan_report(layout: Layout, outcome: Outcome) -> PlanReport:
    """`units` is each family's Indexed Job completion count; `path` is relative to the output dir."""
    from trainpipe.io.plan_files import read_training_plan

    plan = read_training_plan(layout.master_training_plan)
    return PlanReport(plan_digest=plan_digest(plan), run_id=plan.metadata.run_id, units=unit_counts(plan), jobs=len(plan.jobs),
                      path=layout.relative(layout.master_training_plan), status=outcome)


def stage_report(outcome: StageOutcome, family: str | None = None) -> StageCountsReport:
    """Select (all targets) and the training stages (or one `family` of one): counts from the stage's summary."""
    summary = outcome.summary
    stage = str(outcome.stage)
    if isinstance(summary, SelectStageSummary):
        return StageCountsReport(stage=stage, status=outcome.outcome, targets=len(summary.targets), family=family)
    if isinstance(summary, TrainingStageSummary):
        return StageCountsReport(stage=stage, status=outcome.outcome, units=summary.units, trained=summary.trained,
                                 skipped=summary.skipped, reused=summary.reused, failed=summary.failed, family=family)
    return StageCountsReport(stage=stage, status=outcome.outcome, family=family)


def html_report(layout: Layout, removed_runs: list[str] | None = None, tracked: TrackingOutcome | None = None) -> HtmlReport:
    models = sum(1 for p in layout.models_dir.glob("*/*/metrics.json") if not p.parent.name.startswith("."))
    return HtmlReport(path=layout.relative(layout.report_html), models=models, removed_runs=removed_runs,
                      tracking=None if tracked is None else tracked.summary())
