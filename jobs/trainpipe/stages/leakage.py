"""Leakage guards used by rank: features that carry the label, and scores too good to be true."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

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
    x: np.ndarray,
    y: np.ndarray,
    symbols: np.ndarray,
    features: Sequence[str],
    horizon_bars: int,
    threshold: float,
) -> list[Leak]:
    """Features whose value at t correlates above `threshold` with a label not yet resolved at t.

    `x` holds the features (rows × features), `y` the target (NaN = unlabelled) and `symbols` each row's
    symbol, rows in time order within each symbol. A past return equals the label shifted by exactly the
    horizon and is legitimate; only shifts below the horizon (or negative, i.e. future rows) are leaks.
    """
    if len(features) == 0:
        return []
    previous = _row_shifter(symbols)
    leaks: dict[str, Leak] = {}
    for shift in leaky_shifts(horizon_bars):
        source = previous(shift)  # row whose label is compared with this row's features; -1 = none
        shifted = np.where(source >= 0, y[np.maximum(source, 0)], np.nan)
        ok = np.isfinite(shifted)
        if ok.sum() < 30:
            continue
        corr = _column_correlations(x, shifted, ok)
        for i in np.flatnonzero(np.abs(corr) >= threshold):
            name = features[i]
            if name not in leaks or abs(corr[i]) > abs(leaks[name].correlation):
                leaks[name] = Leak(name, shift, float(corr[i]))
    return sorted(leaks.values(), key=lambda leak: (-abs(leak.correlation), leak.feature))


def _row_shifter(symbols: np.ndarray):
    """shift(k) → for each row, the index of the row k places earlier in the same symbol (later if k < 0), or -1."""
    codes = np.unique(symbols, return_inverse=True)[1]
    order = np.argsort(codes, kind="stable")  # rows of one symbol together, time order kept
    symbols = codes
    sym_sorted = symbols[order]
    starts = np.flatnonzero(np.r_[True, sym_sorted[1:] != sym_sorted[:-1]])
    group = np.repeat(np.arange(len(starts)), np.diff(np.r_[starts, len(order)]))
    position = np.arange(len(order)) - starts[group]
    sizes = np.diff(np.r_[starts, len(order)])[group]

    def shift(k: int) -> np.ndarray:
        out = np.full(len(order), -1, dtype=np.int64)
        src_pos = position - k
        valid = (src_pos >= 0) & (src_pos < sizes)
        out[order[valid]] = order[starts[group[valid]] + src_pos[valid]]
        return out

    return shift


def _column_correlations(x: np.ndarray, y: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Pearson correlation of every column of x with y over `rows`, ignoring NaN cells column by column."""
    out = np.zeros(x.shape[1])
    yr = y[rows]
    for j in range(x.shape[1]):
        col = x[:, j][rows].astype(np.float64)  # gather one column (x[rows, j] would copy whole rows first)
        m = np.isfinite(col)
        if m.sum() < 30:
            continue
        a = col[m] - col[m].mean()
        b = yr[m] - yr[m].mean()
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
