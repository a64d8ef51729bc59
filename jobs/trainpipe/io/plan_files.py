"""Files of the plan stage: atomic writers and validating readers of routing and training plans; called by `plan`, `train` and the operator.

Written (paths from `Layout`):

* `METRICS/routing_candidates.parquet`, `METRICS/routing_plan/routing_plan.json` and `.md`;
* `globals/training_plan/master_training_plan.json` (canonical), `training_plan.json` (byte-identical
  mirror for readers that look for that name), `training_plan.md`, and the derived views `by_target/`,
  `by_symbol/`, `by_type/`, `by_route/` (one JSON per key: `{<key>: value, "jobs": [...]}`).

Every JSON file here has snake_case keys (`metadata.run_id`, `jobs[].job_id`, `summary.by_route`,
`{"training_type": …}`): plan readers written before trainpipe key on that spelling, and camelCase is
kept for what Kubernetes reads (the CR, the plan Job's report, the plan ConfigMap). Reading accepts
either spelling, so plans written in camelCase by earlier versions still load.

Every view folder is rebuilt in a temp folder and swapped in whole, so a view of a target or symbol
that left the plan never survives a rewrite. JSON goes through the contract models (`to_snake` on
write, `model_validate` on read), so a file that does not match the schema is refused on both sides.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TypeVar

import pandas as pd

from trainpipe.contract.base import Contract
from trainpipe.contract.exitcodes import CommandFailure, ExitCode
from trainpipe.contract.plan import RoutingPlan, TrainingJob, TrainingPlan
from trainpipe.io import atomic
from trainpipe.io.layout import Layout
from trainpipe.io.model_files import read_model

VIEW_DIRS: tuple[str, ...] = ("by_target", "by_symbol", "by_type", "by_route")

_Model = TypeVar("_Model", bound=Contract)


class PlanFileError(ValueError, CommandFailure):
    """A plan file that is missing or does not match the schema; the message names the file."""

    exit_code = ExitCode.MISSING_INPUT


# ---------------------------------------------------------------------------------------------- write


def write_routing(layout: Layout, candidates_df: pd.DataFrame, routing_plan: RoutingPlan) -> None:
    """Write routing_candidates.parquet, routing_plan.json and the human report routing_plan.md."""
    atomic.write_parquet(layout.routing_candidates, candidates_df)
    atomic.write_json(layout.routing_plan_json, routing_plan.to_snake())
    atomic.write_text(layout.routing_plan_md, routing_markdown(routing_plan))


def write_training_plan(layout: Layout, plan: TrainingPlan) -> None:
    """Write the master plan, its mirror, the Markdown summary and the four derived view folders."""
    text = json.dumps(plan.to_snake(), indent=2, allow_nan=False) + "\n"
    # The same bytes in both files: the mirror exists for plan readers that open training_plan.json.
    atomic.write_text(layout.master_training_plan, text)
    atomic.write_text(layout.training_plan_mirror, text)
    atomic.write_text(layout.training_plan_md, training_markdown(plan))
    # Each view folder is rebuilt whole and swapped in: a target, symbol or route that left the plan leaves no file behind.
    for name, (key_name, key_of) in _VIEWS.items():
        with atomic.atomic_dir(layout.training_plan_dir / name) as tmp:
            for key, jobs in _group(plan.jobs, key_of).items():
                payload = {key_name: key, "jobs": [job.to_snake() for job in jobs]}
                atomic.write_json(tmp / f"{_file_stem(key, name)}.json", payload)


def view_path(layout: Layout, view: str, key: str) -> Path:
    """Path of one derived view file, e.g. view_path(layout, "by_route", "ROUTE_EXPERIMENTAL_ONLY")."""
    if view not in VIEW_DIRS:
        raise ValueError(f"unknown plan view {view!r}; expected one of {VIEW_DIRS}")
    return layout.training_plan_dir / view / f"{_file_stem(key, view)}.json"


# view folder → (key name in the JSON, key of a job; None = job not in this view)
_VIEWS: dict[str, tuple[str, Callable[[TrainingJob], str | None]]] = {
    "by_target": ("target", lambda job: job.target),
    "by_symbol": ("symbol", lambda job: job.symbol),
    "by_type": ("training_type", lambda job: job.training_type.value),
    "by_route": ("route", lambda job: job.route.value),
}


def _group(jobs: Iterable[TrainingJob], key_of: Callable[[TrainingJob], str | None]) -> dict[str, list[TrainingJob]]:
    groups: dict[str, list[TrainingJob]] = {}
    for job in jobs:  # plan order (priority, job id) is kept inside each view
        key = key_of(job)
        if key is not None:
            groups.setdefault(key, []).append(job)
    return dict(sorted(groups.items()))


def _file_stem(key: str, view: str) -> str:
    if view == "by_route":  # seed naming: ROUTE_BOTH → both.json
        return key.removeprefix("ROUTE_").lower()
    # Symbols are validated by the contract; target names are data column names, so guard the path.
    if not key or key in {".", ".."} or "/" in key or "\\" in key or "\x00" in key:
        raise ValueError(f"{view} key {key!r} cannot be a file name; rename the target or symbol")
    return key


# --------------------------------------------------------------------------------------------- read


PLAN_FILE_NAMES: tuple[str, ...] = ("master_training_plan.json", "training_plan.json")


def find_training_plan(layout: Layout, plan_dir: Path | str | None = None) -> Path:
    """The plan file `train` trains: in `plan_dir` when given (a folder or the file), else the first of the
    output folder's `globals/training_plan/` and the seed's legacy `METRICS/training_plan/` that holds one.

    In each folder `master_training_plan.json` wins over its `training_plan.json` mirror.
    """
    if plan_dir is not None:
        given = Path(plan_dir)
        if given.is_file():
            return given
        folders = [given]
    else:
        folders = [layout.training_plan_dir, layout.legacy_training_plan_dir]
    for folder in folders:
        for name in PLAN_FILE_NAMES:
            if (folder / name).is_file():
                return folder / name
    looked = " or ".join(str(f / PLAN_FILE_NAMES[0]) for f in folders)
    hint = "pass the folder that holds the plan" if plan_dir is not None else "run `trainpipe plan` first, or pass --training-plan-dir DIR"
    raise PlanFileError(f"no training plan at {looked}; {hint}")


def read_training_plan(source: Layout | Path | str) -> TrainingPlan:
    """Read and validate a training plan from a Layout, its folder, or a file; falls back to the mirror."""
    if isinstance(source, Layout):
        candidates = [source.master_training_plan, source.training_plan_mirror]
    else:
        path = Path(source)
        if path.is_dir():
            candidates = [path / "master_training_plan.json", path / "training_plan.json"]
        else:
            candidates = [path]
    found = next((p for p in candidates if p.is_file()), None)
    if found is None:
        raise PlanFileError(f"{candidates[0]}: no training plan there; run `trainpipe plan` first (or pass the plan's path)")
    return _read_model(found, TrainingPlan, "training plan")


def read_routing_plan(source: Layout | Path | str) -> RoutingPlan:
    """Read and validate routing_plan.json from a Layout, its folder, or the file."""
    if isinstance(source, Layout):
        path = source.routing_plan_json
    else:
        path = Path(source)
        if path.is_dir():
            path = path / "routing_plan.json"
    if not path.is_file():
        raise PlanFileError(f"{path}: no routing plan there; run `trainpipe plan` first (or pass the plan's path)")
    return _read_model(path, RoutingPlan, "routing plan")


def _read_model(path: Path, model: type[_Model], what: str) -> _Model:
    return read_model(path, model, what=what, rerun="run `trainpipe plan`", error=PlanFileError)


# ----------------------------------------------------------------------------------------- markdown


def routing_markdown(plan: RoutingPlan) -> str:
    """Human report: per target the CS decision and a table of symbol routes with their reasons."""
    m = plan.metadata
    lines = [
        "# Routing plan",
        "",
        f"- schema: `{plan.schema_version}`",
        f"- run: `{m.run_id}` (code {m.code_version}, config {m.config_digest}, data {m.data_digest})",
        f"- generated: {m.generated_at}",
        f"- candidates: `{plan.candidates_path}`",
        f"- targets: {len(plan.targets)}",
        "",
    ]
    for target, routing in plan.targets.items():
        cs = routing.cross_sectional
        routes = sorted({d.route.value for d in routing.symbols.values()})
        lines += [
            f"## {target}",
            "",
            f"- task: {routing.task.value}, horizon: {_horizon(routing.horizon_minutes)}",
            (
                f"- cross-sectional: **{'ENABLED' if cs.enabled else 'DISABLED'}** ({cs.state.value}), "
                f"{cs.metric_name}={_num(cs.score)}, IR={_num(cs.ir)}, n={cs.sample_size}"
            ),
            f"  - {_cell(cs.reason)}",
            f"- symbol routes: {', '.join(f'{r} {sum(d.route.value == r for d in routing.symbols.values())}' for r in routes) or 'none'}",
            "",
        ]
        if routing.symbols:
            lines += ["| symbol | route | CS state | local state | score | n | reasons |", "|---|---|---|---|---|---|---|"]
            for symbol, d in routing.symbols.items():
                # The CS reason is shown once above the table, not in every row.
                lines.append(
                    f"| {symbol} | {d.route.value} | {d.cs_state.value} | {d.local_state.value} | {_num(d.score)} | "
                    f"{d.sample_size} | {_cell('<br>'.join(r for r in d.reason if not r.startswith('cs ')))} |"
                )
            lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def training_markdown(plan: TrainingPlan) -> str:
    """Human summary: header, counts by route and priority, then per target its jobs."""
    m, s = plan.metadata, plan.summary
    lines = [
        "# Training plan",
        "",
        f"- schema: `{plan.schema_version}`",
        f"- run: `{m.run_id}` (code {m.code_version}, config {m.config_digest}, data {m.data_digest})",
        f"- generated: {m.generated_at}",
        f"- routing plan: `{m.routing_plan_path}`",
        f"- families (in training order): {', '.join(m.model_families) or 'none'}",
        (
            f"- jobs: {s.total_jobs} ({s.total_cs_jobs} cross-sectional, {s.total_symbol_jobs} symbol-specific; "
            f"{s.total_blocked} blocked symbol routes without a job)"
        ),
        "",
        "## Jobs by route",
        "",
        "| route | jobs |",
        "|---|---|",
        *(f"| {route} | {n} |" for route, n in s.by_route.items()),
        "",
        "## Jobs by priority",
        "",
        "| priority | jobs |",
        "|---|---|",
        *(f"| {priority} | {n} |" for priority, n in s.by_priority.items()),
        "",
    ]
    by_target = _group(plan.jobs, lambda job: job.target)
    for target, jobs in by_target.items():
        lines += [
            f"## {target}",
            "",
            f"- task: {jobs[0].task.value}, features: {len(jobs[0].features)}",
            "",
            "| job | symbol | route | priority | samples | reason |",
            "|---|---|---|---|---|---|",
        ]
        for job in jobs:
            lines.append(
                f"| `{job.job_id}` | {job.symbol or '(all)'} | {job.route.value} | {job.priority} | "
                f"{job.estimated_samples} | {_cell(_short(job.reason, 160))} |"
            )
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def _horizon(minutes: int | None) -> str:
    return "unknown" if minutes is None else f"{minutes} min"


def _num(value: float | None) -> str:
    return "–" if value is None else f"{value:.4f}"


def _short(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _cell(text: str) -> str:
    # A pipe would end the Markdown table cell early.
    return text.replace("|", "\\|").replace("\n", " ")
