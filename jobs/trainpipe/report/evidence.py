"""Run-level reading of the models' holdout figures: no-timing flags, too-good flags on intervals, deflated Sharpe, and the best-of-N noise line; pure, called by report.html.

A run trains N models and a reader looks at the best. On pure noise the best of N is not zero: it is
about the expected maximum of N draws of each figure's noise. So beside the best model the report
prints that figure ("what the best of these N models would show on pure noise"), and each Sharpe is
deflated by it (Bailey & López de Prado): the probability that the model's true Sharpe beats the best
that N no-skill models would show.

A model with no timing (`no_timing` not empty: constant predictions, or a position that never changes)
is never the best and gets no deflated Sharpe: its figures are the market's, not its own. It still
counts among the N models tried, since it was one of the draws a reader picked from.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from trainpipe.contract.rankings import TooGoodLimits
from trainpipe.stages.uncertainty import deflated_sharpe, expected_max_of_noise


@dataclass(frozen=True)
class Headline:
    """One figure the report leads with: which column, its no-skill value, and the columns of its standard errors."""

    label: str
    column: str
    no_skill: float
    se_column: str
    noise_se_column: str


# Sharpe's noise spread is its standard error at zero skill (the estimate's own grows with |Sharpe|);
# for IC and AUC the two differ little, so the estimate's serves.
HEADLINES = (
    Headline("long/short Sharpe", "bt_sharpe", 0.0, "bt_sharpe_se", "bt_sharpe_noise_se"),
    Headline("rank IC", "rank_ic", 0.0, "rank_ic_se", "rank_ic_se"),
    Headline("AUC", "auc", 0.5, "auc_se", "auc_se"),
)


@dataclass(frozen=True)
class NoiseLine:
    """The best of `n_models` models on one figure, beside what the best of that many would show on pure noise."""

    label: str
    n_models: int
    best_model: str
    best: float
    best_low: float | None
    best_high: float | None
    noise_best: float
    untimed: int = 0  # models of the N with no timing: tried, never picked

    def sentence(self) -> str:
        interval = "" if self.best_low is None or self.best_high is None else f" (95% interval {self.best_low:.3f} to {self.best_high:.3f})"
        verdict = ("no better than" if self.best <= self.noise_best else "above")
        skipped = f" ({self.untimed} of them without timing, never picked)" if self.untimed else ""
        return (f"Best {self.label} of {self.n_models} models{skipped}: {self.best:.3f}{interval}, {self.best_model}. "
                f"What the best of these {self.n_models} models would show on pure noise: {self.noise_best:.3f} — the best is {verdict} that.")


def _numbers(frame: pd.DataFrame, column: str) -> pd.Series:
    if column not in frame.columns:
        return pd.Series(np.nan, index=frame.index, dtype=np.float64)
    return pd.to_numeric(frame[column], errors="coerce")


def with_timing(metrics: pd.DataFrame) -> pd.DataFrame:
    """Add `no_timing`: why a model has no timing, or "" (its metrics.json's verdict; files before v3 are judged from their figures).

    Before v3 a constant prediction left IC and rank IC null, and a position that never changed left a
    turnover of 0; those are the only traces an older file keeps.
    """
    if metrics.empty:
        return metrics
    return metrics.assign(no_timing=[_no_timing(row) for row in metrics.to_dict("records")])


def _no_timing(row: dict) -> str:
    verdict = row.get("timing_has_timing")
    if isinstance(verdict, (bool, np.bool_)):
        return "" if verdict else str(row.get("timing_reason") or row.get("timing_kind") or "no timing")
    if "ic" in row and "rank_ic" in row and _or_none(row["ic"]) is None and _or_none(row["rank_ic"]) is None:
        return "no IC or rank IC in its metrics.json (written before v3): constant predictions"
    if _or_none(row.get("bt_turnover")) == 0:
        return "turnover 0 in its metrics.json (written before v3): the position never changed on the holdout"
    return ""


def _timed(metrics: pd.DataFrame) -> pd.Series:
    """True for the models that may be ranked: those with timing."""
    if "no_timing" not in metrics.columns:
        return pd.Series(True, index=metrics.index)
    return metrics["no_timing"].fillna("") == ""


def noise_lines(metrics: pd.DataFrame) -> list[NoiseLine]:
    """For each headline figure the models report, the best model with timing and the best-of-N figure on noise (models without an SE are left out)."""
    lines = []
    timed = _timed(metrics)
    for head in HEADLINES:
        value, noise_se = _numbers(metrics, head.column), _numbers(metrics, head.noise_se_column)
        ok = value.notna() & noise_se.notna()
        if not (ok & timed).any():
            continue
        n = int(ok.sum())
        best_at = value[ok & timed].idxmax()
        row = metrics.loc[best_at]
        # The root-mean-square of the models' noise spreads: models with fewer periods spread wider.
        spread = float(np.sqrt(np.mean(noise_se[ok] ** 2)))
        lines.append(NoiseLine(head.label, n, f"{row.get('job_id')} / {row.get('family')}", float(value[best_at]),
                               _or_none(_numbers(metrics, head.column + "_low")[best_at]),
                               _or_none(_numbers(metrics, head.column + "_high")[best_at]),
                               head.no_skill + expected_max_of_noise(n, spread), int((ok & ~timed).sum())))
    return lines


def with_deflated_sharpe(metrics: pd.DataFrame) -> pd.DataFrame:
    """Add `bt_dsr`: each model's deflated Sharpe over the number of models in the run with a Sharpe (NaN where it has none, or no timing)."""
    if metrics.empty:
        return metrics
    sharpe, se, noise_se = _numbers(metrics, "bt_sharpe"), _numbers(metrics, "bt_sharpe_se"), _numbers(metrics, "bt_sharpe_noise_se")
    ok = sharpe.notna() & se.notna() & (se > 0) & noise_se.notna()
    n = int(ok.sum())
    noise_best = expected_max_of_noise(n, float(np.sqrt(np.mean(noise_se[ok] ** 2)))) if n else math.nan
    rankable = ok & _timed(metrics)
    dsr = [deflated_sharpe(s, e, noise_best) if good else math.nan for s, e, good in zip(sharpe, se, rankable, strict=True)]
    return metrics.assign(bt_dsr=dsr)


def flag_too_good(metrics: pd.DataFrame, limits: TooGoodLimits | None) -> pd.DataFrame:
    """Add `too_good`: why a model's holdout score is beyond ranking's limits by more than its noise allows, or "".

    The limits are what returns can plausibly give; a score is flagged when its whole 95% interval lies
    beyond one, so a short holdout (wide interval) does not raise a false alarm and a long one (narrow)
    does not hide a leak. A metrics.json written before intervals existed is judged on its point value.
    """
    if metrics.empty or not limits:
        return metrics

    def reason(row: dict) -> str:
        if row.get("task") == "regression":
            return _beyond(row, "rank_ic", "rank IC", -limits.max_rank_ic, limits.max_rank_ic, f"±{limits.max_rank_ic}")
        return _beyond(row, "auc", "AUC", 1 - limits.max_auc, limits.max_auc, f"{limits.max_auc}")

    return metrics.assign(too_good=[reason(row) for row in metrics.to_dict("records")])


def _beyond(row: dict, key: str, label: str, floor: float, ceiling: float, limit: str) -> str:
    value = _or_none(row.get(key))
    if value is None:
        return ""
    low, high = _or_none(row.get(f"{key}_low")), _or_none(row.get(f"{key}_high"))
    if low is None or high is None:
        low = high = value  # no interval recorded
        basis = "(no interval in its metrics.json)"
    else:
        basis = f"(95% interval {low:.3f} to {high:.3f})"
    if low > ceiling or high < floor:
        return f"holdout {label} {value:.3f} {basis} beyond {limit}: look for a leak"
    return ""


def _or_none(value: object) -> float | None:
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def evidence_record(metrics: pd.DataFrame) -> dict:
    """The run-level reading of `metrics` (after `with_timing`, `flag_too_good`, `with_deflated_sharpe`) as JSON.

    Per-model metrics.json files are written as each model finishes, before the run knows how many it
    trains; what depends on all of them (the deflated Sharpe over N, the best-of-N noise figure) lives here.
    """
    lines = noise_lines(metrics)
    models = []
    for row in metrics.to_dict("records") if not metrics.empty else []:
        models.append({
            "job_id": row.get("job_id"), "family": row.get("family"),
            "sharpe": _or_none(row.get("bt_sharpe")), "sharpe_se": _or_none(row.get("bt_sharpe_se")),
            "deflated_sharpe": _or_none(row.get("bt_dsr")),
            "no_timing": row.get("no_timing") or None, "too_good": row.get("too_good") or None,
        })
    sharpes = _numbers(metrics, "bt_sharpe") if not metrics.empty else pd.Series(dtype=float)
    return {
        "schema": "model-evidence/v1",
        "models_trained": len(models),
        "models_with_sharpe": int(sharpes.notna().sum()),
        "noise_lines": [{"figure": ln.label, "models": ln.n_models, "best_model": ln.best_model, "best": ln.best,
                         "best_low": ln.best_low, "best_high": ln.best_high, "best_of_n_on_noise": ln.noise_best,
                         "untimed": ln.untimed} for ln in lines],
        "models": models,
    }
