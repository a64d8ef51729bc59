"""Terminal output for the CLI: a progress display per stage and the end-of-run summary table (rich)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

from trainpipe.contract.base import SnakeContract
from trainpipe.contract.outcomes import Outcome
from trainpipe.contract.summaries import PlanStageSummary, RankStageSummary, SelectStageSummary, TrainingStageSummary

console = Console(stderr=True)
# How the summary table shows a stage's outcome: computed now stands out, taken as it was does not.
OUTCOME_STYLES: dict[Outcome, str] = {Outcome.RAN: "green", Outcome.CACHED: "cyan", Outcome.REUSED: "cyan"}


@contextmanager
def stage_progress() -> Iterator:
    """Yield a callback(stage, item, total): total starts a bar, an item advances it."""
    with Progress(SpinnerColumn(), TextColumn("[bold]{task.fields[stage]:<10}"), BarColumn(), MofNCompleteColumn(),
                  TextColumn("{task.description}"), TimeElapsedColumn(), console=console, transient=False) as progress:
        tasks: dict[str, TaskID] = {}

        def tick(stage: str, item: str, total: int | None) -> None:
            if stage not in tasks:
                tasks[stage] = progress.add_task("", stage=stage, total=total)
            if total is not None:
                progress.update(tasks[stage], total=total)
            if item:
                progress.update(tasks[stage], advance=1, description=item)

        yield tick


def summary_table(outcomes: Sequence, output_dir: str) -> Table:
    table = Table(title=f"trainpipe run → {output_dir}", show_lines=False)
    table.add_column("stage")
    table.add_column("status")
    table.add_column("seconds", justify="right")
    table.add_column("result")
    for o in outcomes:
        style = OUTCOME_STYLES.get(o.outcome, "red")
        table.add_row(str(o.stage), f"[{style}]{o.outcome.value}[/]", f"{o.seconds:.1f}", describe(o.summary))
    return table


def describe(summary: SnakeContract) -> str:
    """One line of what a stage concluded, for the summary table."""
    if isinstance(summary, RankStageSummary):
        kept = f"{summary.targets_ranked} targets ranked; " + (f"kept {', '.join(summary.selected)}" if summary.no_evidence is None
                                                                else "none carries evidence of skill: nothing to train")
        return "\n".join([kept, *(f"warning: {line}" for line in summary.cut_warnings)])
    if isinstance(summary, PlanStageSummary):
        routes = ", ".join(f"{k.removeprefix('ROUTE_').lower()} {v}" for k, v in summary.by_route.items())
        return f"{summary.jobs} jobs ({routes}); families {', '.join(summary.families)}"
    if isinstance(summary, SelectStageSummary):
        return "; ".join(f"{t}: {v.n_features} features, {v.stability.label.lower()}" for t, v in summary.targets.items())
    if not isinstance(summary, TrainingStageSummary):  # a stage added to the table: its summary's fields
        return ", ".join(f"{k} {v}" for k, v in summary.to_wire().items() if not isinstance(v, list | dict))
    if not summary.units:
        return "no units in this stage (the plan's families have none here)"
    devices = ", ".join(summary.devices)
    reused = f", {summary.reused} copied from another run" if summary.reused else ""
    return (f"{summary.trained} models trained, {summary.failed} failed, {summary.skipped} already done{reused}"
            + (f" on {devices}" if devices else ""))
