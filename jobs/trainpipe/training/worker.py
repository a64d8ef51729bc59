"""Subprocess entry of the training stages: `python -m trainpipe.training.worker --request <request.json>`.

Started by `trainpipe.training.stage` once per family and stage (or once for a unit run on its own), in
a fresh interpreter with that family's thread environment. It loads the panel once, trains every unit
(plan job) of its request in order, and appends one JSON line per unit to the request's `results_path` as soon as the unit ends,
so a crash later never loses earlier units. A failing unit writes `<job>/<family>.error.txt` and the
worker goes on with the next one. Exit code: 0 when every unit trained, 1 when some failed, 2 when
the request itself was unusable (or its plan file is no longer the plan, by `plan_digest`).
"""

from __future__ import annotations

import argparse
import importlib
import os
import resource
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from trainpipe.contract.outcomes import Outcome
from trainpipe.contract.requests import UnitRequest, WorkerRequest
from trainpipe.contract.results import UnitResult
from trainpipe.contract.storage import is_object_uri
from trainpipe.io.requests import RequestFileError, read_worker_request
from trainpipe.io.training_files import append_unit_result
from trainpipe.termination import EXIT_TERMINATED, Terminated, sigterm_raises

if TYPE_CHECKING:  # the worker imports pandas and the model families only once it trains
    import pandas as pd

    from trainpipe.contract.cut import HoldoutCut
    from trainpipe.contract.plan import TrainingJob, TrainingPlan
    from trainpipe.families.base import Trainer
    from trainpipe.training.metrics_file import ModelMetrics

_BLOCKED = ("tensorflow", "torch", "keras", "jax")


class _FrameworkBlocker:
    """Meta-path finder that refuses TensorFlow/Torch in CPU-stage workers (they must not share the process)."""

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> None:
        if name.split(".")[0] in _BLOCKED:
            raise ImportError(f"{name} is blocked in CPU-stage training workers (TRAINPIPE_BLOCK_FRAMEWORKS=1); GPU families run in the gpu stage")
        return None


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux reports KiB


def _load_callable(spec: str) -> Callable[..., Any]:
    module, _, attr = spec.partition(":")
    if not module or not attr:
        raise ValueError(f"panel loader {spec!r} must look like 'package.module:function'")
    return getattr(importlib.import_module(module), attr)


@dataclass(frozen=True)
class TrainedUnit:
    """A unit's fitted model and its metrics record, before anything is written."""

    trainer: Trainer
    metrics: ModelMetrics
    train_seconds: float
    device: str


def train_unit(job: TrainingJob, unit: UnitRequest, frame: pd.DataFrame, cut: HoldoutCut, plan: TrainingPlan, request: WorkerRequest) -> TrainedUnit:
    """Split `frame` (the job's rows) at the run's cut, fit, evaluate and backtest one unit; writes nothing.

    Raises ValueError when the cut leaves no labelled rows on either side.
    """
    import numpy as np

    from trainpipe.contract.names import TaskType
    from trainpipe.contract.targets import horizon_minutes, positive_label
    from trainpipe.data.frames import frame_symbols, frame_ts
    from trainpipe.families.registry import make_trainer
    from trainpipe.training.backtest import bars_per_year, long_short_backtest
    from trainpipe.training.metrics import evaluate
    from trainpipe.training.metrics_file import ModelMetrics
    from trainpipe.training.timing import judge_timing
    from trainpipe.training.units import aux_targets_for

    h_bars = cut.horizon_bars[job.target]  # as rank converted it (names or targets.horizonBars)
    train_rows, test_rows = split_rows(frame, job.target, cut, request.embargo_bars)
    if train_rows.empty or test_rows.empty:
        raise ValueError(f"{job.job_id}: {len(train_rows)} labelled training and {len(test_rows)} labelled holdout rows under the run's cut")
    trainer = make_trainer(request.family, features=job.features, target=job.target, task=job.task, params=unit.params,
                           seed=request.seed, horizon_bars=h_bars, aux_targets=aux_targets_for(job, plan, request.family))
    t0 = time.perf_counter()
    trainer.fit(train_rows)
    train_seconds = time.perf_counter() - t0
    if trainer.spec.sequence:
        # Windows need the history before each test row: predict on every row up to the end of the
        # test block (features only; labels are never inputs) and keep the test rows.
        pred = trainer.predict(frame)[test_rows.index.to_numpy()]
    else:
        pred = trainer.predict(test_rows)
    y = test_rows[job.target].to_numpy(dtype=np.float64)
    ts, syms = frame_ts(test_rows), frame_symbols(test_rows)
    task = TaskType(job.task)
    # The positive class from all of the job's labels: the holdout alone may lack one (training encodes the same).
    positive = positive_label(np.unique(frame[job.target].dropna().to_numpy())) if task is TaskType.BINARY else None
    metrics = evaluate(y, pred, ts, syms, task, positive=positive, horizon_bars=h_bars)
    centre = 0.5 if task is TaskType.BINARY else 0.0  # where a prediction turns from short to long
    returns_col = _returns_column(job.target, task, frame.columns, horizon_minutes)
    if returns_col is None:
        backtest: dict[str, Any] = {"available": False, "reason": f"no fwd_ret_* column with the horizon of {job.target} in the plan"}
    else:
        backtest = long_short_backtest(pred, test_rows[returns_col].to_numpy(dtype=np.float64), ts, syms, horizon_bars=h_bars,
                                       bars_a_year=bars_per_year(frame_ts(frame), frame_symbols(frame)), centre=centre,
                                       cost_bps=request.cost_bps)
        backtest["returns_column"] = returns_col
    device = str(trainer.extra_meta.get("device", "cpu"))
    record = ModelMetrics(
        job_id=job.job_id, target=job.target, symbol=job.symbol, family=request.family, stage=request.stage, task=task.value,
        device=device, n_train=len(train_rows), n_test=len(test_rows), train_seconds=round(train_seconds, 4),
        peak_rss_mb=round(peak_rss_mb(), 1), metrics=metrics, backtest=backtest, timing=judge_timing(pred, ts, syms, centre=centre),
        fingerprint=unit.fingerprint,
        holdout={"fraction": cut.fraction, "horizon_bars": h_bars, "embargo_bars": request.embargo_bars,
                 "purge_bars": h_bars + request.embargo_bars, "train_end": str(train_rows["ts"].max()),
                 "test_start": str(test_rows["ts"].min()),
                 "holdout_start": cut.holdout_start,
                 "split": "the run's holdout cut: one instant for every symbol, training purged before it (trainpipe.cv.cut_split)"},
        params=trainer.params, budget=trainer.extra_meta.get("budget"),
    )
    return TrainedUnit(trainer, record, train_seconds, device)


def run_request(request: WorkerRequest, emit: Callable[[UnitResult], None]) -> int:
    """Train every unit of the request (`train_unit`) and write its model; `emit` receives one record per unit. Returns the number of failures."""
    from trainpipe.contract.plan import TrainingPlan, plan_digest
    from trainpipe.contract.targets import horizon_bars
    from trainpipe.cv import holdout_cut, pinned_mask
    from trainpipe.data.frames import frame_symbols, frame_ts
    from trainpipe.data.sampling import sample_ranges
    from trainpipe.io.atomic import atomic_dir, write_json, write_text
    from trainpipe.io.layout import Layout
    from trainpipe.training.metrics_file import METRICS_FILE
    from trainpipe.training.units import error_path

    family = request.family
    plan = TrainingPlan.model_validate_json(Path(request.plan_path).read_text())
    expected = request.plan_digest
    if expected is not None and plan_digest(plan) != expected:
        # The plan file changed after the parent read it: these units belong to another plan now.
        raise RuntimeError(f"{request.plan_path} is no longer the plan this request was made from (digest {expected[:12]}…); rerun the unit")
    jobs = {job.job_id: job for job in plan.jobs}
    layout = Layout(Path(request.layout_root))
    my_jobs = [jobs[u.job_id] for u in request.units]

    # One panel for all units of this family: the union of their symbols and columns.
    symbols = None if any(j.symbol is None for j in my_jobs) else sorted({j.symbol for j in my_jobs if j.symbol})
    columns = sorted({c for j in my_jobs for c in j.features} | {j.target for j in plan.jobs})
    loader = _load_callable(request.panel_loader)
    # Rank held each symbol to data.minRowsPerSymbol and the cut pins the bars it read; the loader's own default
    # minimum here would stop every unit of the family over one short symbol that rank accepted.
    # An object-store URI stays text (the loader opens it through io.objectstore); a folder is a Path.
    data = request.data_dir if is_object_uri(request.data_dir) else Path(request.data_dir)
    cut = plan.metadata.holdout_cut
    # A panel rank cut to timestamp blocks (data.rowBudget) is read as those blocks again, row groups outside them unread.
    blocks = {} if cut is None or cut.sample is None else {"time_ranges": sample_ranges(cut.sample)}
    panel = loader(data, symbols, interval=request.interval, columns=columns, min_rows_per_symbol=1, **blocks)
    full = panel.frame.reset_index(drop=True)
    if cut is None:
        # A plan made without rank (bench, synthetic tests): fix the cut here, on the panel loaded, the same way rank would.
        horizons = {j.target: horizon_bars(j.target, panel.calendar) for j in plan.jobs}
        # No warnings for short symbols here: nobody reads this cut but the split below.
        cut = holdout_cut(frame_ts(full), frame_symbols(full), request.holdout_fraction, horizons, request.embargo_bars, min_development_rows=0)
    else:
        # Exactly the bars rank read: bars appended since, or older than its maxRowsPerSymbol window, are not this run's.
        full = full.loc[pinned_mask(frame_ts(full), frame_symbols(full), cut)].reset_index(drop=True)

    failures = 0
    for unit in request.units:
        job = jobs[unit.job_id]
        started = time.perf_counter()
        try:
            frame = job_rows(full, job.symbol)
            if frame.empty:
                raise ValueError(f"no rows for symbol {job.symbol!r} in {request.data_dir}")
            trained = train_unit(job, unit, frame, cut, plan, request)
            model_dir = layout.model_dir(job.job_id, family)
            with atomic_dir(model_dir) as tmp:
                trained.trainer.save(tmp)
                write_json(tmp / METRICS_FILE, trained.metrics.model_dump(mode="json"))
            stale_error = error_path(layout, job.job_id, family)
            if stale_error.exists():
                stale_error.unlink()
            record = UnitResult(job_id=job.job_id, family=family, stage=request.stage, outcome=Outcome.RAN,
                                seconds=round(time.perf_counter() - started, 3), device=trained.device, model_dir=str(model_dir),
                                train_seconds=round(trained.train_seconds, 4), peak_rss_mb=round(peak_rss_mb(), 1))
        except Exception as exc:  # one unit's failure is recorded and the family goes on
            failures += 1
            text = f"{type(exc).__name__}: {exc}\n\n{traceback.format_exc()}"
            write_text(error_path(layout, job.job_id, family), text)
            record = UnitResult(job_id=job.job_id, family=family, stage=request.stage, outcome=Outcome.FAILED,
                                seconds=round(time.perf_counter() - started, 3), error=f"{type(exc).__name__}: {exc}")
        emit(record)
    return failures


def job_rows(full: pd.DataFrame, symbol: str | None) -> pd.DataFrame:
    """The rows a job trains and is judged on: every symbol's (cross-sectional), or one symbol's, renumbered."""
    from trainpipe.contract.names import SYMBOL_COLUMN

    return full if symbol is None else full.loc[full[SYMBOL_COLUMN].astype(str) == symbol].reset_index(drop=True)


def split_rows(frame: pd.DataFrame, target: str, cut: HoldoutCut, embargo_bars: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(training rows, holdout rows) of a job's `frame` at the run's cut, purged by the target's horizon plus the embargo.

    Rows with a NaN target are dropped for this target; the index stays the frame's (sequence models need it).
    Called by `train_unit` and by whoever checks a saved model against its metrics.json, so both judge the same rows.
    """
    from trainpipe.cv import cut_split
    from trainpipe.data.frames import frame_symbols, frame_ts

    split = cut_split(frame_ts(frame), frame_symbols(frame), cut, cut.horizon_bars[target] + embargo_bars)
    return _labelled(frame.iloc[split.train], target), _labelled(frame.iloc[split.test], target)


def _labelled(rows: Any, target: str) -> Any:
    return rows.loc[rows[target].notna()]


def _returns_column(target: str, task: Any, columns: Any, horizon_minutes: Callable[[str], int | None]) -> str | None:
    """The return series the backtest trades: the target itself for returns, a same-horizon fwd_ret_* for labels."""
    if target.startswith("fwd_ret_"):
        return target
    h = horizon_minutes(target)
    same = sorted(c for c in columns if c.startswith("fwd_ret_") and horizon_minutes(c) == h and h is not None)
    return same[0] if same else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m trainpipe.training.worker", description=__doc__.splitlines()[0])
    parser.add_argument("--request", required=True, type=Path, help="request JSON written by trainpipe.training.stage")
    args = parser.parse_args(argv)
    if os.environ.get("TRAINPIPE_BLOCK_FRAMEWORKS") == "1":
        sys.meta_path.insert(0, _FrameworkBlocker())
    try:
        request = read_worker_request(args.request)
    except RequestFileError as exc:
        print(f"trainpipe worker: unusable request: {exc}", file=sys.stderr)
        return 2
    results = Path(request.results_path)
    try:
        with sigterm_raises():
            failures = run_request(request, lambda record: append_unit_result(results, record))
    except Terminated as exc:  # the pod is going away: the unit in progress left no files; the parent records it
        print(f"trainpipe worker: {exc}", file=sys.stderr)
        return EXIT_TERMINATED
    except Exception:  # setup failed (plan, data): every unit of this request is lost; the parent records why
        traceback.print_exc()
        return 2
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
