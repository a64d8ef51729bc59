"""Terminal output for the CLI: a progress display per stage and the end-of-run summary table (rich)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

console = Console(stderr=True)


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
        status = "[cyan]reused[/]" if getattr(o, "reused_from", None) else "[cyan]cached[/]" if o.cached else "[green]ran[/]"
        table.add_row(str(o.stage), status, f"{o.seconds:.1f}", describe(o.summary))
    return table


def describe(summary: dict) -> str:
    if not summary:
        return ""
    if "selected" in summary:
        return f"{summary.get('targets_ranked')} targets ranked; kept {', '.join(summary['selected'])}"
    if "jobs" in summary:
        routes = ", ".join(f"{k.removeprefix('ROUTE_').lower()} {v}" for k, v in summary.get("by_route", {}).items())
        return f"{summary['jobs']} jobs ({routes}); families {', '.join(summary.get('families', []))}"
    if "targets" in summary and isinstance(summary["targets"], dict):
        return "; ".join(f"{t}: {v['n_features']} features, {v['stability'].lower()}" for t, v in summary["targets"].items())
    if "trained" in summary:
        if not summary.get("units"):
            return "no units in this stage (the plan's families have none here)"
        devices = ", ".join(summary.get("devices", []))
        reused = f", {summary['reused']} copied from another run" if summary.get("reused") else ""
        return (f"{summary['trained']} models trained, {summary.get('failed', 0)} failed, {summary.get('skipped', 0)} already done{reused}"
                + (f" on {devices}" if devices else ""))
    return ", ".join(f"{k}={v}" for k, v in summary.items() if not isinstance(v, (dict, list)))
