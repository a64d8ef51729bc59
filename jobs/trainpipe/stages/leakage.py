"""Leakage guards used by rank: features that carry the label, and scores too good to be true."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from trainpipe.contract.names import TaskType

# Shifts checked beyond the unresolved window: labels of the next rows are future information too.
_FUTURE_SHIFTS = 3
# Cap on the shifts scanned per target; beyond this a "copy" would be a long-past label anyway.
_MAX_SHIFTS = 40


@dataclass(frozen=True)
class Leak:
    feature: str
    shift: int  # feature[t] matches target[t - shift]; shift < horizon means the label was not yet known at t
    correlation: float

    def describe(self) -> str:
        when = "the same row's" if self.shift == 0 else (f"a label {-self.shift} rows ahead" if self.shift < 0 else f"the label {self.shift} rows back (not yet resolved at t)")
        return f"feature '{self.feature}' copies {when} target (|corr|={abs(self.correlation):.3f})"


def leaky_shifts(horizon_bars: int) -> list[int]:
    """Shifts j for which target[t - j] is still unknown at time t: j < horizon (and future rows, j < 0)."""
    shifts = list(range(-_FUTURE_SHIFTS, max(1, horizon_bars)))
    return shifts[:_MAX_SHIFTS]


def find_leaks(
    frame: pd.DataFrame,
    features: list[str],
    target: str,
    horizon_bars: int,
    threshold: float,
    symbol_column: str = "symbol",
) -> list[Leak]:
    """Features whose value at t correlates above `threshold` with a label not yet resolved at t.

    A past return equals the label shifted by exactly the horizon and is legitimate; only shifts
    below the horizon (or negative, i.e. future rows) are leaks.
    """
    if not features:
        return []
    x = frame[features].to_numpy(dtype=np.float64)
    groups = frame[symbol_column]
    leaks: dict[str, Leak] = {}
    for shift in leaky_shifts(horizon_bars):
        y = frame.groupby(groups, sort=False, observed=True)[target].shift(shift).to_numpy(dtype=np.float64) if shift else frame[target].to_numpy(dtype=np.float64)
        ok = np.isfinite(y)
        if ok.sum() < 30:
            continue
        corr = _column_correlations(x[ok], y[ok])
        for i in np.flatnonzero(np.abs(corr) >= threshold):
            name = features[i]
            if name not in leaks or abs(corr[i]) > abs(leaks[name].correlation):
                leaks[name] = Leak(name, shift, float(corr[i]))
    return sorted(leaks.values(), key=lambda leak: (-abs(leak.correlation), leak.feature))


def _column_correlations(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Pearson correlation of every column of x with y, ignoring NaN cells column by column."""
    finite = np.isfinite(x)
    out = np.zeros(x.shape[1])
    for j in range(x.shape[1]):
        m = finite[:, j]
        if m.sum() < 30:
            continue
        a = x[m, j] - x[m, j].mean()
        b = y[m] - y[m].mean()
        denom = np.sqrt((a * a).sum() * (b * b).sum())
        out[j] = (a * b).sum() / denom if denom > 0 else 0.0
    return out


def too_good(task: TaskType, r2: float, ic: float, auc: float, max_r2: float, max_auc: float) -> str | None:
    """Reason string when an out-of-sample score is beyond what market data allows, else None."""
    if task is TaskType.REGRESSION:
        if np.isfinite(r2) and r2 > max_r2:
            return f"out-of-sample R²={r2:.3f} exceeds {max_r2} — too good to be true for returns; look for a leaked feature"
        if np.isfinite(ic) and abs(ic) > np.sqrt(max_r2):
            return f"out-of-sample IC={ic:.3f} exceeds {np.sqrt(max_r2):.3f} — too good to be true; look for a leaked feature"
        return None
    if np.isfinite(auc) and auc > max_auc:
        return f"out-of-sample AUC={auc:.3f} exceeds {max_auc} — too good to be true; look for a leaked feature"
    return None
