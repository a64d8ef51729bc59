"""The training stages: `run_training_stage(plan, 'cpu'|'gpu', …)`, one unit `run_training_unit(…)`, and `run_training` (cpu, then gpu).

Called by `trainpipe train`, the local runner and the benchmarks. Each family of a stage runs in its own
fresh Python process (`python -m trainpipe.training.worker`) with that family's thread plan, so OpenMP
tree libraries, TensorFlow and Torch never share a process; a stage's families train side by side, one
worker per CPU with the CPUs shared out (`family_slots`). A unit run on its own (one pod of a family's
Indexed Job) runs the same worker with that one unit, so its model is the one a whole-stage run trains.
Decisions (which units, what is up to date, whether the GPU stage may start) come from the pure
functions of `trainpipe.training.units`.

Working files: a whole stage keeps them in `.trainpipe/training/<stage>/` (one folder per family); a unit
run alone in `.trainpipe/units/<stage>/<unit_id>/`, so pods training units of the same family in parallel
never write the same file. Models and their metrics.json (the unit's completion record) are written
atomically by the worker.

GPU gate (decided): the GPU stage refuses to start while any CPU unit of the plan (same family filter)
is failed, missing or stale — the global CPU → GPU order is a hard guarantee, and a partial CPU stage
must be fixed (rerun `--stage cpu`, or drop the family with `families`) before GPU time is spent. A GPU
unit run alone checks the same gate.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path

from trainpipe.contract.exitcodes import CommandFailure, ExitCode
from trainpipe.contract.outcomes import Outcome
from trainpipe.contract.plan import TrainingPlan, plan_digest
from trainpipe.contract.requests import UnitRequest, WorkerRequest
from trainpipe.contract.results import StageResultFile, UnitRecord, UnitResult, UnitRunResult
from trainpipe.contract.storage import is_object_uri
from trainpipe.contract.units import WorkUnit
from trainpipe.io.atomic import remove_stale, write_text
from trainpipe.io.layout import Layout
from trainpipe.io.requests import write_worker_request
from trainpipe.io.training_files import read_unit_results, write_stage_result, write_unit_run_result
from trainpipe.resources import available_cpus
from trainpipe.training.metrics_file import METRICS_FILE
from trainpipe.training.settings import DEFAULT_PANEL_LOADER, ProgressFn, TrainingSettings
from trainpipe.training.units import (
    check_stage,
    error_path,
    family_of_stage,
    family_slots,
    gate_problems,
    group_by_family,
    plan_units,
    thread_env,
    unit_at,
    unit_fingerprint,
    unit_state,
)

# (job_id, family) -> the unit's fingerprint
Fingerprints = Mapping[tuple[str, str], str]


class StageGateError(RuntimeError, CommandFailure):
    """The GPU stage may not start: some CPU units of the plan are not done. `problems` lists them."""

    exit_code = ExitCode.GATE_CLOSED

    def __init__(self, message: str, problems: list[str], cpu_result: StageResult | None = None) -> None:
        super().__init__(message)
        self.problems = problems
        self.cpu_result = cpu_result


@dataclass
class StageResult:
    stage: str
    records: list[UnitRecord] = field(default_factory=list)
    seconds: float = 0.0

    def count(self, outcome: Outcome) -> int:
        return sum(1 for r in self.records if r.outcome is outcome)

    @property
    def trained(self) -> int:
        return self.count(Outcome.RAN)

    @property
    def failed(self) -> int:
        return self.count(Outcome.FAILED)

    @property
    def skipped(self) -> int:
        return self.count(Outcome.SKIPPED)

    @property
    def reused(self) -> int:
        return self.count(Outcome.REUSED)

    @property
    def ok(self) -> bool:
        return self.failed == 0

    def to_file(self) -> StageResultFile:
        return StageResultFile(stage=self.stage, trained=self.trained, failed=self.failed, skipped=self.skipped, reused=self.reused,
                               seconds=round(self.seconds, 3), records=list(self.records))


@dataclass(frozen=True)
class WorkFiles:
    """The files one worker process reads and writes; one folder per worker, so no two workers share one."""

    root: Path

    @property
    def request(self) -> Path:
        return self.root / "request.json"

    @property
    def results(self) -> Path:
        return self.root / "results.jsonl"

    @property
    def log(self) -> Path:
        return self.root / "worker.log"

    @property
    def result(self) -> Path:
        return self.root / "result.json"


def fingerprints(plan: TrainingPlan, units: Sequence[WorkUnit], settings: TrainingSettings) -> dict[tuple[str, str], str]:
    jobs = {job.job_id: job for job in plan.jobs}
    return {(u.job_id, u.family): unit_fingerprint(plan, jobs[u.job_id], u.family, settings) for u in units}


def cpu_gate_problems(plan: TrainingPlan, layout: Layout, settings: TrainingSettings) -> list[str]:
    """CPU units of the plan (within the settings' family filter) that are not done with the current fingerprint."""
    units, _ = plan_units(plan, "cpu", settings.family_filter())
    return gate_problems({key: unit_state(layout, *key, fp) for key, fp in fingerprints(plan, units, settings).items()})


def _check_gate(plan: TrainingPlan, layout: Layout, settings: TrainingSettings) -> None:
    problems = cpu_gate_problems(plan, layout, settings)
    if problems:
        shown = "; ".join(problems[:10]) + (f"; … {len(problems) - 10} more" if len(problems) > 10 else "")
        raise StageGateError(
            f"the gpu stage cannot start: {len(problems)} cpu unit(s) of the plan are not done ({shown}); "
            "rerun the cpu stage (trainpipe train --stage cpu) or exclude those families",
            problems,
        )


def _settled(layout: Layout, unit: WorkUnit, fingerprint: str, settings: TrainingSettings) -> UnitRecord | None:
    """The unit's record when it needs no training: done here with this fingerprint, or copied from another run."""
    model_dir = layout.model_dir(unit.job_id, unit.family)
    if unit_state(layout, unit.job_id, unit.family, fingerprint) == "done":
        return UnitRecord(job_id=unit.job_id, family=unit.family, outcome=Outcome.SKIPPED, reason="up to date (same fingerprint)",
                          device=_device(model_dir), model_dir=str(model_dir))
    source = settings.reuse(unit.job_id, unit.family, fingerprint) if settings.reuse is not None else None
    if source is not None:
        return UnitRecord(job_id=unit.job_id, family=unit.family, outcome=Outcome.REUSED, reason=f"same fingerprint in {source}",
                          device=_device(model_dir), model_dir=str(model_dir))
    return None


def _device(model_dir: Path) -> str:
    """The device a finished unit was trained on, from its metrics.json ("" when unreadable)."""
    try:
        return str(json.loads((model_dir / METRICS_FILE).read_text()).get("device", ""))
    except (OSError, ValueError):
        return ""


def run_training_stage(plan: TrainingPlan, stage: str, layout: Layout, settings: TrainingSettings, family: str | None = None) -> StageResult:
    """Train every unit of `stage` (plan job × its families ∩ the stage ∩ `settings.families`) and return what happened.

    `family` narrows the units to that one family; the GPU gate still covers every CPU unit within
    `settings.families`. Units whose model dir holds a metrics.json with the same fingerprint are skipped
    (resumable); `settings.reuse` may copy a finished unit from another run instead of training it.
    """
    check_stage(stage)
    # Workers run in their own working folder: every path they get must be absolute.
    layout = Layout(Path(layout.root).resolve())
    filt = settings.family_filter()
    only = None if family is None else family_of_stage(family, stage)
    chosen = filt
    if only is not None:
        chosen = [only] if filt is None or only in filt else []
    for name in chosen or ():
        settings.params_for(name)  # a bad parameter fails before any process starts
    if stage == "gpu":
        _check_gate(plan, layout, settings)
    started = time.perf_counter()
    units, skips = plan_units(plan, stage, chosen)
    result = StageResult(stage=stage, records=[UnitRecord(job_id=s.job_id, family=s.family, outcome=Outcome.SKIPPED, reason=s.reason)
                                               for s in skips])
    prints = fingerprints(plan, units, settings)
    pending = []
    for unit in units:
        settled = _settled(layout, unit, prints[(unit.job_id, unit.family)], settings)
        if settled is None:
            pending.append(unit)
        else:
            result.records.append(settled)
    work_dir = layout.training_work_dir(stage)
    plan_path = work_dir / "plan.json"
    write_text(plan_path, plan.model_dump_json())  # the workers read the plan this call was given, whole or not at all
    result.records += _train_families(plan, plan_path, group_by_family(pending), prints, work_dir, layout, settings)
    result.seconds = time.perf_counter() - started
    done = result.to_file()
    write_stage_result(work_dir / "result.json", done)
    settings.notify({"event": "stage_done", **done.model_dump(mode="json", exclude={"schema_version", "records"})})
    return result


def run_training_unit(plan: TrainingPlan, stage: str, family: str, index: int, layout: Layout, settings: TrainingSettings, *,
                      plan_path: Path, force: bool = False) -> tuple[WorkUnit, UnitRecord]:
    """Train unit `index` of `family` (`contract.units.family_units(plan, family)[index]`) and return it with its record.

    `plan_path` is the file `plan` was read from (the worker reads it there; nothing else is written
    beside it). A unit already done with the same fingerprint, or copied by `settings.reuse`, is not
    trained unless `force`. GPU units check the gate over the CPU units within `settings.families`.
    """
    check_stage(stage)
    layout, plan_path = Layout(Path(layout.root).resolve()), Path(plan_path).resolve()
    unit = unit_at(plan, stage, family, index)
    settings.params_for(unit.family)
    if stage == "gpu":
        _check_gate(plan, layout, settings)
    prints = fingerprints(plan, [unit], settings)
    settled = None if force else _settled(layout, unit, prints[(unit.job_id, unit.family)], settings)
    if settled is not None:
        return unit, settled
    settings.notify({"event": "family_start", "stage": stage, "family": unit.family, "units": 1})
    work = WorkFiles(layout.unit_work_dir(stage, unit.unit_id))
    # An earlier try of this unit that was killed mid-write left at most temps of its own outputs; no
    # other pod writes them (one pod per index at a time), so they go before this try writes its own.
    for output in (layout.model_dir(unit.job_id, unit.family), work.request, work.results, work.result):
        remove_stale(output)
    started = time.perf_counter()
    [record] = _train(plan, plan_path, [unit], prints, work, layout, settings, available_cpus())
    write_unit_run_result(work.result, UnitRunResult(**record.model_dump(), unit_id=unit.unit_id, index=index,
                                                     wall_seconds=round(time.perf_counter() - started, 3)))
    return unit, record


def _train_families(plan: TrainingPlan, plan_path: Path, groups: Mapping[str, Sequence[WorkUnit]], prints: Fingerprints, work_dir: Path,
                    layout: Layout, settings: TrainingSettings) -> list[UnitRecord]:
    """Train each family's units in its own worker, as many workers at once as `family_slots` allows; records in family order."""
    cpus = available_cpus()
    workers, cpus_each = family_slots(len(groups), cpus) if settings.isolate else (1, cpus)

    def one(name: str, units: Sequence[WorkUnit], run: TrainingSettings, stop: threading.Event | None = None) -> list[UnitRecord]:
        return _train(plan, plan_path, units, prints, WorkFiles(work_dir / name), layout, run, cpus_each, stop)

    def started(name: str, units: Sequence[WorkUnit]) -> None:
        settings.notify({"event": "family_start", "stage": units[0].stage.value, "family": name, "units": len(units)})

    if workers == 1:
        records: list[UnitRecord] = []
        for name, units in groups.items():
            started(name, units)
            records += one(name, units, settings)
        return records
    for name, units in groups.items():  # every family's units join the stage's total at once, in the plan's order
        started(name, units)
    # Progress events now come from several threads: one at a time reaches the caller's display.
    lock, notify = threading.Lock(), settings.on_progress

    def locked(event: dict) -> None:
        if notify is not None:
            with lock:
                notify(event)

    run, stop = replace(settings, on_progress=locked), threading.Event()
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="family") as pool:
        futures = [pool.submit(one, name, units, run, stop) for name, units in groups.items()]
        try:
            return [record for future in futures for record in future.result()]
        except BaseException:
            # Stopped (SIGTERM, Ctrl-C) or failed here: every family's worker goes with this process.
            stop.set()
            raise


def _train(plan: TrainingPlan, plan_path: Path, units: Sequence[WorkUnit], prints: Fingerprints, work: WorkFiles, layout: Layout,
           settings: TrainingSettings, cpus: int, stop: threading.Event | None = None) -> list[UnitRecord]:
    """Train `units` (all of one family and stage) in one worker process; a unit the worker did not report is recorded as failed."""
    family, stage = units[0].family, units[0].stage.value
    request = WorkerRequest(
        family=family, stage=stage, plan_path=str(plan_path), plan_digest=plan_digest(plan), layout_root=str(layout.root),
        data_dir=str(settings.data_dir) if is_object_uri(str(settings.data_dir)) else str(Path(settings.data_dir).resolve()), panel_loader=settings.panel_loader, results_path=str(work.results),
        holdout_fraction=settings.holdout_fraction, embargo_bars=settings.embargo_bars, seed=settings.seed, interval=settings.interval,
        cost_bps=settings.cost_bps,
        units=tuple(UnitRequest(job_id=u.job_id, fingerprint=prints[(u.job_id, u.family)], params=settings.params_for(family)) for u in units),
    )
    done = {r.job_id: r for r in _run_family(request, work, settings, cpus, stop)}
    out = []
    for unit in units:
        rec = done.get(unit.job_id)
        if rec is None:
            reason = f"worker for {family} ended before this unit finished; see {work.log}"
            write_text(error_path(layout, unit.job_id, family), reason + "\n")
            out.append(UnitRecord(job_id=unit.job_id, family=family, outcome=Outcome.FAILED, reason=reason))
            continue
        out.append(UnitRecord(job_id=unit.job_id, family=family, outcome=rec.outcome, reason=rec.error or "", seconds=rec.seconds,
                              device=rec.device or "", model_dir=rec.model_dir or ""))
    return out


def _run_family(request: WorkerRequest, work: WorkFiles, settings: TrainingSettings, cpus: int,
                stop: threading.Event | None = None) -> list[UnitResult]:
    family, progress, timeout_s = request.family, settings.notify, settings.timeout_s
    work.root.mkdir(parents=True, exist_ok=True)
    work.results.unlink(missing_ok=True)
    if not settings.isolate:
        from trainpipe.training.worker import run_request

        collected: list[UnitResult] = []

        def emit(record: UnitResult) -> None:
            collected.append(record)
            progress({"event": "unit_done", **record.to_line()})

        run_request(request, emit)
        return collected
    write_worker_request(work.request, request)
    # Thread pools follow the CPUs this container may use (TRAINPIPE_CPUS in a pod), not the node's core count.
    env = {**os.environ, **thread_env(family, cpus)}
    seen = 0
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    with open(work.log, "w") as log:
        # A fresh interpreter (never fork): no inherited OpenMP/CUDA state, and its own thread env.
        proc = subprocess.Popen([sys.executable, "-m", "trainpipe.training.worker", "--request", str(work.request)],
                                env=env, stdout=log, stderr=subprocess.STDOUT, cwd=str(work.root))
        try:
            while True:
                code = proc.poll()
                seen = _emit_new(work.results, seen, progress)
                if code is not None:
                    break
                if stop is not None and stop.is_set():
                    _stop(proc)
                    break
                if deadline is not None and time.monotonic() > deadline:
                    proc.kill()
                    proc.wait()
                    log.write(f"\ntrainpipe: killed after {timeout_s}s (family timeout)\n")
                    break
                time.sleep(0.2)
        except BaseException:
            # Stopped (SIGTERM, Ctrl-C) or failed here: the worker must not outlive this process. A pod's
            # init sends SIGTERM to the whole group already; a signal to this process alone does not reach it.
            _stop(proc)
            raise
    _emit_new(work.results, seen, progress)
    return read_unit_results(work.results)


WORKER_STOP_SECONDS = 10.0  # how long a terminated worker may take to remove its temp files before SIGKILL


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(WORKER_STOP_SECONDS)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _emit_new(path: Path, seen: int, progress: ProgressFn) -> int:
    records = read_unit_results(path)
    for record in records[seen:]:
        progress({"event": "unit_done", **record.to_line()})
    return max(seen, len(records))


def run_training(plan: TrainingPlan, layout: Layout, settings: TrainingSettings) -> dict[str, StageResult]:
    """The CPU stage, then the GPU stage; raises StageGateError (carrying the CPU result) if CPU units failed."""
    cpu = run_training_stage(plan, "cpu", layout, settings)
    try:
        gpu = run_training_stage(plan, "gpu", layout, settings)
    except StageGateError as exc:
        exc.cpu_result = cpu
        raise
    return {"cpu": cpu, "gpu": gpu}


__all__ = ["DEFAULT_PANEL_LOADER", "StageGateError", "StageResult", "TrainingSettings", "UnitRecord", "WorkFiles", "cpu_gate_problems",
           "run_training", "run_training_stage", "run_training_unit"]
