"""The two training stages: `run_training_stage(plan, 'cpu'|'gpu', …)` and `run_training` (cpu, then gpu).

Called by `trainpipe train --stage …`, the local runner and the benchmarks. Each family of a stage runs
in its own fresh Python process (`python -m trainpipe.training.worker`) with that family's thread plan,
so OpenMP tree libraries, TensorFlow and Torch never share a process. Decisions (which units, what is
up to date, whether the GPU stage may start) come from the pure functions of `trainpipe.training.units`.

GPU gate (decided): the GPU stage refuses to start while any CPU unit of the plan (same family filter)
is failed, missing or stale — the global CPU → GPU order is a hard guarantee, and a partial CPU stage
must be fixed (rerun `--stage cpu`, or drop the family with `families`) before GPU time is spent.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from trainpipe.contract.plan import TrainingPlan
from trainpipe.families.base import check_params
from trainpipe.families.catalogue import resolve_families
from trainpipe.io.atomic import write_json
from trainpipe.io.layout import Layout
from trainpipe.training.units import (
    Unit,
    check_stage,
    error_path,
    gate_problems,
    group_by_family,
    plan_units,
    thread_env,
    unit_fingerprint,
    unit_state,
)

DEFAULT_PANEL_LOADER = "trainpipe.data.loading:load_panel"
ProgressFn = Callable[[dict[str, Any]], None]


class StageGateError(RuntimeError):
    """The GPU stage may not start: some CPU units of the plan are not done. `problems` lists them."""

    def __init__(self, message: str, problems: list[str], cpu_result: StageResult | None = None) -> None:
        super().__init__(message)
        self.problems = problems
        self.cpu_result = cpu_result


@dataclass(frozen=True)
class UnitRecord:
    job_id: str
    family: str
    status: str  # trained | failed | skipped
    reason: str = ""
    seconds: float = 0.0
    device: str = ""
    model_dir: str = ""


@dataclass
class StageResult:
    stage: str
    records: list[UnitRecord] = field(default_factory=list)
    seconds: float = 0.0

    def _count(self, status: str) -> int:
        return sum(1 for r in self.records if r.status == status)

    @property
    def trained(self) -> int:
        return self._count("trained")

    @property
    def failed(self) -> int:
        return self._count("failed")

    @property
    def skipped(self) -> int:
        return self._count("skipped")

    @property
    def ok(self) -> bool:
        return self.failed == 0

    def to_dict(self) -> dict[str, Any]:
        return {"stage": self.stage, "trained": self.trained, "failed": self.failed, "skipped": self.skipped,
                "seconds": round(self.seconds, 3), "records": [asdict(r) for r in self.records]}


def _params_for(family: str, params: Mapping[str, Mapping[str, Any]] | None) -> dict[str, Any]:
    return check_params(family, (params or {}).get(family))


def _fingerprints(plan: TrainingPlan, units: Sequence[Unit], params, **split: Any) -> dict[tuple[str, str], str]:
    jobs = {job.job_id: job for job in plan.jobs}
    return {(u.job_id, u.family): unit_fingerprint(plan, jobs[u.job_id], u.family, _params_for(u.family, params), **split) for u in units}


def cpu_gate_problems(plan: TrainingPlan, layout: Layout, families: Sequence[str] | None, params=None, **split: Any) -> list[str]:
    """CPU units of the plan (same family filter) that are not done with the current fingerprint."""
    units, _ = plan_units(plan, "cpu", families)
    prints = _fingerprints(plan, units, params, **split)
    return gate_problems({key: unit_state(layout, *key, fp) for key, fp in prints.items()})


def run_training_stage(
    plan: TrainingPlan,
    stage: str,
    layout: Layout,
    data_dir: Path,
    *,
    interval: str | None,
    families: Sequence[str] | None,
    holdout_fraction: float,
    embargo_bars: int,
    seed: int,
    on_progress: ProgressFn | None = None,
    params: Mapping[str, Mapping[str, Any]] | None = None,
    panel_loader: str = DEFAULT_PANEL_LOADER,
    isolate: bool = True,
    family_timeout_s: float | None = None,
) -> StageResult:
    """Train every unit of `stage` (plan job × its families ∩ the stage ∩ `families`) and return what happened.

    `params` maps family → parameter overrides. Units whose model dir holds a metrics.json with the
    same fingerprint are skipped (resumable). `isolate=False` runs the workers in this process (debugging only).
    """
    check_stage(stage)
    # Workers run in their own working folder: every path they get must be absolute.
    layout, data_dir = Layout(Path(layout.root).resolve()), Path(data_dir).resolve()
    if not 0 < holdout_fraction < 1:
        raise ValueError(f"holdout_fraction must be in (0, 1), got {holdout_fraction}")
    if embargo_bars < 0:
        raise ValueError(f"embargo_bars must be >= 0, got {embargo_bars}")
    filt = None if families is None else resolve_families(families, None)
    for name in filt or ():
        _params_for(name, params)  # a bad parameter fails before any process starts
    split = {"holdout_fraction": holdout_fraction, "embargo_bars": embargo_bars, "seed": seed, "interval": interval}
    if stage == "gpu":
        problems = cpu_gate_problems(plan, layout, filt, params, **split)
        if problems:
            shown = "; ".join(problems[:10]) + (f"; … {len(problems) - 10} more" if len(problems) > 10 else "")
            raise StageGateError(
                f"the gpu stage cannot start: {len(problems)} cpu unit(s) of the plan are not done ({shown}); "
                "rerun the cpu stage (trainpipe train --stage cpu) or exclude those families",
                problems,
            )
    started = time.perf_counter()
    progress = on_progress or (lambda event: None)
    units, skips = plan_units(plan, stage, filt)
    result = StageResult(stage=stage, records=[UnitRecord(s.job_id, s.family, "skipped", s.reason) for s in skips])
    prints = _fingerprints(plan, units, params, **split)
    pending = []
    for unit in units:
        if unit_state(layout, unit.job_id, unit.family, prints[(unit.job_id, unit.family)]) == "done":
            result.records.append(UnitRecord(unit.job_id, unit.family, "skipped", "up to date (same fingerprint)",
                                             model_dir=str(layout.model_dir(unit.job_id, unit.family))))
        else:
            pending.append(unit)
    work_dir = layout.state_dir / "training" / stage
    work_dir.mkdir(parents=True, exist_ok=True)
    plan_path = work_dir / "plan.json"
    plan_path.write_text(plan.model_dump_json())
    for family, fam_units in group_by_family(pending).items():
        progress({"event": "family_start", "stage": stage, "family": family, "units": len(fam_units)})
        request = {
            "family": family, "stage": stage, "plan_path": str(plan_path), "layout_root": str(layout.root), "data_dir": str(data_dir),
            "interval": interval, "panel_loader": panel_loader, "holdout_fraction": holdout_fraction, "embargo_bars": embargo_bars,
            "seed": seed, "results_path": str(work_dir / f"{family}.results.jsonl"),
            "units": [{"job_id": u.job_id, "fingerprint": prints[(u.job_id, u.family)], "params": _params_for(family, params)} for u in fam_units],
        }
        records = _run_family(request, work_dir, isolate, family_timeout_s, progress)
        done = {r["job_id"]: r for r in records}
        for unit in fam_units:
            rec = done.get(unit.job_id)
            if rec is None:
                reason = f"worker for {family} ended before this unit finished; see {work_dir / (family + '.log')}"
                path = error_path(layout, unit.job_id, family)
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(reason + "\n")
                rec = {"status": "failed", "error": reason}
            result.records.append(UnitRecord(unit.job_id, family, rec["status"], rec.get("error", ""), float(rec.get("seconds", 0.0)),
                                             rec.get("device", ""), rec.get("model_dir", "")))
    result.seconds = time.perf_counter() - started
    write_json(work_dir / "result.json", result.to_dict())
    progress({"event": "stage_done", **{k: v for k, v in result.to_dict().items() if k != "records"}})
    return result


def _run_family(request: dict[str, Any], work_dir: Path, isolate: bool, timeout_s: float | None, progress: ProgressFn) -> list[dict[str, Any]]:
    family = request["family"]
    results_path = Path(request["results_path"])
    if results_path.exists():
        results_path.unlink()
    if not isolate:
        from trainpipe.training.worker import run_request

        collected: list[dict[str, Any]] = []

        def emit(record: dict[str, Any]) -> None:
            collected.append(record)
            progress({"event": "unit_done", **record})

        run_request(request, emit)
        return collected
    req_path = work_dir / f"{family}.request.json"
    req_path.write_text(json.dumps(request))
    env = {**os.environ, **thread_env(family, os.cpu_count() or 1)}
    log_path = work_dir / f"{family}.log"
    seen = 0
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    with open(log_path, "w") as log:
        # A fresh interpreter (never fork): no inherited OpenMP/CUDA state, and its own thread env.
        proc = subprocess.Popen([sys.executable, "-m", "trainpipe.training.worker", "--request", str(req_path)],
                                env=env, stdout=log, stderr=subprocess.STDOUT, cwd=str(work_dir))
        while True:
            code = proc.poll()
            seen = _emit_new(results_path, seen, progress)
            if code is not None:
                break
            if deadline is not None and time.monotonic() > deadline:
                proc.kill()
                proc.wait()
                log.write(f"\ntrainpipe: killed after {timeout_s}s (family timeout)\n")
                break
            time.sleep(0.2)
    _emit_new(results_path, seen, progress)
    return _read_results(results_path)


def _read_results(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            continue  # a line cut by a crash mid-write
    return out


def _emit_new(path: Path, seen: int, progress: ProgressFn) -> int:
    records = _read_results(path)
    for record in records[seen:]:
        progress({"event": "unit_done", **record})
    return max(seen, len(records))


def run_training(
    plan: TrainingPlan,
    layout: Layout,
    data_dir: Path,
    *,
    interval: str | None = None,
    families: Sequence[str] | None = None,
    holdout_fraction: float = 0.2,
    embargo_bars: int = 5,
    seed: int = 42,
    on_progress: ProgressFn | None = None,
    params: Mapping[str, Mapping[str, Any]] | None = None,
    panel_loader: str = DEFAULT_PANEL_LOADER,
    isolate: bool = True,
) -> dict[str, StageResult]:
    """The CPU stage, then the GPU stage; raises StageGateError (carrying the CPU result) if CPU units failed."""
    kw: dict[str, Any] = {"interval": interval, "families": families, "holdout_fraction": holdout_fraction, "embargo_bars": embargo_bars,
                          "seed": seed, "on_progress": on_progress, "params": params, "panel_loader": panel_loader, "isolate": isolate}
    cpu = run_training_stage(plan, "cpu", layout, data_dir, **kw)
    try:
        gpu = run_training_stage(plan, "gpu", layout, data_dir, **kw)
    except StageGateError as exc:
        exc.cpu_result = cpu
        raise
    return {"cpu": cpu, "gpu": gpu}


__all__ = ["DEFAULT_PANEL_LOADER", "StageGateError", "StageResult", "UnitRecord", "cpu_gate_problems", "run_training", "run_training_stage"]
