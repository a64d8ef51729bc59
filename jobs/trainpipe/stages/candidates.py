"""Routing candidates: per-target and per-symbol out-of-sample evidence, built from ranking's fold scores; called by `plan`.

Input is `ranking/oos_scores.parquet` (one row per target × side × fold). Output is one
`RoutingCandidate` per side that has at least one usable fold: the cross-sectional (CS) row, whose
`symbol` is None, and one row per symbol.

Decisions (documented here because routing reads the result):

* A fold whose score is NaN (e.g. a symbol fold holding a single class, or constant predictions) is
  ignored: it contributes neither to the mean nor to the sample size.
* A side whose folds are *all* NaN gets **no candidate**. Routing treats a missing candidate as
  DISALLOWED with the reason "no out-of-sample score", so the side can never be trained; keeping
  scores and intervals finite means the parquet and JSON consumers never see NaN.
* The cross-sectional row's fold score is already the mean over timestamps of the score across that
  timestamp's symbols (rank computes it), so it measures ranking symbols, not timing the market; a
  symbol's row is that symbol's own score.
* score = mean of the valid fold scores. Its standard error comes from each fold's own sample at its
  *effective* size, n / horizon bars (overlapping labels are not independent): for the cross-section the
  per-timestamp spread over its timestamps, for a symbol the sampling error of a correlation (1/√(n−3))
  or of an AUC (1/√(3n)); the mean of k folds has √(Σ se²)/k. Not the spread of the k fold scores: with
  2–4 folds that spread is itself too noisy to test against (a t with 1–3 degrees of freedom).
  CI = mean ± t(0.975, n_eff − 1)·se, n_eff the folds' effective sizes summed; routing gates on its own
  lower bound, corrected for the number of sides (trainpipe.stages.routing).
* ir (cross-sectional row only) = mean over the valid folds of each fold's information ratio of its
  per-timestamp scores, (mean − no-skill) / sd, averaged the same way as the score; None when no fold has
  one (too few timestamps) and for symbol rows, whose score is one correlation with no per-timestamp spread.
* sample_size = sum of `n_samples` over the valid folds: the real number of out-of-sample rows the
  score rests on (the seed always wrote 0 here and blocked every route).
* Stability and leakage come per target (selection and ranking judge a target, not a symbol) and are
  copied onto every side of that target; a target missing from either mapping is UNKNOWN.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import pandas as pd
from scipy.stats import t as student_t

from trainpipe.contract.names import Leakage, Stability, TaskType
from trainpipe.contract.plan import RoutingCandidate

OOS_SCORE_COLUMNS: tuple[str, ...] = (
    "target", "symbol", "fold", "task", "metric_name", "score", "n_samples", "horizon_minutes", "horizon_bars", "score_sd", "timestamps", "ir",
)

CANDIDATE_COLUMNS: tuple[str, ...] = tuple(RoutingCandidate.model_fields)


def build_candidates(
    oos_scores: pd.DataFrame,
    stability: Mapping[str, Stability],
    leakage: Mapping[str, Leakage],
) -> list[RoutingCandidate]:
    """One candidate per (target, side) with a valid fold, sorted by target, CS row first, then symbol."""
    missing = [c for c in OOS_SCORE_COLUMNS if c not in oos_scores.columns]
    if missing:
        raise ValueError(
            f"oos_scores lacks column(s) {missing}; expected {list(OOS_SCORE_COLUMNS)} as written by `trainpipe rank` "
            "(ranking/oos_scores.parquet): rerun rank"
        )
    frame = oos_scores.loc[:, list(OOS_SCORE_COLUMNS)].copy()
    # Parquet gives None or NaN for the pooled row depending on the column's type; one spelling here.
    frame["symbol"] = frame["symbol"].astype(object).where(frame["symbol"].notna(), None)

    candidates: list[RoutingCandidate] = []
    for target, rows in frame.groupby("target", sort=True):
        task, metric_name, horizon = _target_identity(str(target), rows)
        for symbol, side_rows in _sides(rows):
            candidate = _side_candidate(
                target=str(target),
                symbol=symbol,
                rows=side_rows,
                task=task,
                metric_name=metric_name,
                horizon=horizon,
                stability=Stability(stability.get(str(target), Stability.UNKNOWN)),
                leakage=Leakage(leakage.get(str(target), Leakage.UNKNOWN)),
            )
            if candidate is not None:
                candidates.append(candidate)
    return sorted(candidates, key=candidate_sort_key)


def cross_sectional_irs(oos_scores: pd.DataFrame) -> dict[str, float]:
    """Each target's cross-sectional IR as its routing candidate carries it; targets without one are left out. For the report."""
    cs = oos_scores.loc[oos_scores["symbol"].isna() & np.isfinite(oos_scores["score"].astype(float))]
    irs = {str(target): _mean_fold_ir(rows) for target, rows in cs.groupby("target", sort=True)}
    return {target: ir for target, ir in irs.items() if ir is not None}


def _mean_fold_ir(valid: pd.DataFrame) -> float | None:
    """Mean of the folds' IRs (valid folds only), like the score; None when no fold had enough timestamps for one."""
    irs = valid["ir"].astype(float).to_numpy()
    irs = irs[np.isfinite(irs)]
    return float(irs.mean()) if len(irs) else None


def candidate_sort_key(candidate: RoutingCandidate) -> tuple[str, int, str]:
    """Target, then the CS row (symbol None) before symbols, then symbol name."""
    return (candidate.target, 0 if candidate.symbol is None else 1, candidate.symbol or "")


def candidates_frame(candidates: list[RoutingCandidate]) -> pd.DataFrame:
    """The candidates as the routing_candidates.parquet table: snake_case columns, enums as strings, stable dtypes."""
    records = [c.model_dump(mode="json") for c in candidates]
    frame = pd.DataFrame.from_records(records, columns=list(CANDIDATE_COLUMNS))
    # Explicit dtypes so an empty table, or one without any CS row, has the same schema as a full one.
    return frame.astype(
        {
            "target": "string",
            "symbol": "string",
            "task": "string",
            "horizon_minutes": "Int64",
            "metric_name": "string",
            "score": "float64",
            "score_ci_low": "float64",
            "score_ci_high": "float64",
            "sample_size": "int64",
            "n_folds": "int64",
            "stability": "string",
            "leakage_status": "string",
            "ir": "float64",
            "score_se": "float64",
            "effective_n": "float64",
        }
    )


def _target_identity(target: str, rows: pd.DataFrame) -> tuple[TaskType, str, int | None]:
    """Task, metric and horizon of a target; every row of it must agree, else ranking wrote something inconsistent."""
    tasks = sorted({str(t) for t in rows["task"].dropna()})
    metrics = sorted({str(m) for m in rows["metric_name"].dropna()})
    horizons = sorted({int(h) for h in rows["horizon_minutes"].dropna()})
    if len(tasks) != 1 or len(metrics) != 1 or len(horizons) > 1:
        raise ValueError(
            f"oos_scores rows of target {target!r} disagree: task={tasks}, metric_name={metrics}, "
            f"horizon_minutes={horizons}; each target needs one task, one metric and one horizon: rerun rank"
        )
    try:
        task = TaskType(tasks[0])
    except ValueError:
        raise ValueError(
            f"oos_scores target {target!r} has task {tasks[0]!r}; expected one of {[t.value for t in TaskType]}"
        ) from None
    return task, metrics[0], (horizons[0] if horizons else None)


def _sides(rows: pd.DataFrame) -> list[tuple[str | None, pd.DataFrame]]:
    """(symbol, rows) per side of one target, the pooled CS side (symbol None) first."""
    pooled = rows["symbol"].isna()
    sides: list[tuple[str | None, pd.DataFrame]] = []
    if pooled.any():
        sides.append((None, rows.loc[pooled]))
    for symbol, side_rows in rows.loc[~pooled].groupby("symbol", sort=True):
        sides.append((str(symbol), side_rows))
    return sides


def effective_size(n: float, horizon_bars: float) -> float:
    """Independent observations in n overlapping h-bar labels: about n / h."""
    return n / max(1.0, horizon_bars) if np.isfinite(horizon_bars) else n


def _one_sample_se(row: pd.Series, cross_sectional: bool, metric_name: str) -> float:
    """Standard error of one fold's score from its own sample, counted at its effective size."""
    h = float(row["horizon_bars"])
    if cross_sectional and np.isfinite(row["score_sd"]) and row["timestamps"] > 1:
        return float(row["score_sd"]) / math.sqrt(max(1.0, effective_size(float(row["timestamps"]), h)))
    n_eff = effective_size(float(row["n_samples"]), h)
    if metric_name == "auc":
        return 1.0 / math.sqrt(max(1.0, 3.0 * n_eff))
    return 1.0 / math.sqrt(max(1.0, n_eff - 3.0))


def _side_candidate(
    *,
    target: str,
    symbol: str | None,
    rows: pd.DataFrame,
    task: TaskType,
    metric_name: str,
    horizon: int | None,
    stability: Stability,
    leakage: Leakage,
) -> RoutingCandidate | None:
    scores = rows["score"].astype(float)
    valid = rows.loc[np.isfinite(scores)]
    if valid["fold"].duplicated().any():
        where = "cross-sectional" if symbol is None else f"symbol {symbol!r}"
        raise ValueError(f"oos_scores has the same fold twice for target {target!r}, {where}: rerun rank")
    k = len(valid)
    if k == 0:
        return None
    values = valid["score"].astype(float).to_numpy()
    mean = float(values.mean())
    ses = [_one_sample_se(row, symbol is None, metric_name) for _, row in valid.iterrows()]
    se = math.sqrt(sum(v * v for v in ses)) / k
    n_eff = sum(_effective_periods(row, symbol is None) for _, row in valid.iterrows())
    half_width = float(student_t.ppf(0.975, max(1.0, n_eff - 1))) * se
    return RoutingCandidate(
        target=target,
        symbol=symbol,
        task=task,
        horizon_minutes=horizon,
        metric_name=metric_name,
        score=mean,
        score_ci_low=mean - half_width,
        score_ci_high=mean + half_width,
        sample_size=int(valid["n_samples"].astype("int64").sum()),
        n_folds=k,
        stability=stability,
        leakage_status=leakage,
        ir=_mean_fold_ir(valid) if symbol is None else None,
        score_se=se,
        effective_n=n_eff,
    )


def _effective_periods(row: pd.Series, cross_sectional: bool) -> float:
    """Independent periods in one fold's score: its timestamps (cross-section) or rows (symbol) over the horizon."""
    h = float(row["horizon_bars"])
    if cross_sectional and np.isfinite(row["score_sd"]) and row["timestamps"] > 1:
        return effective_size(float(row["timestamps"]), h)
    return effective_size(float(row["n_samples"]), h)
