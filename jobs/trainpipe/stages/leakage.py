"""Leakage guards used by rank: features that carry a label not yet known, and scores too good to be true."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.stats import rankdata

from trainpipe.contract.names import TaskType

# Shifts checked beyond the unresolved window: labels of the next rows are future information too.
_FUTURE_SHIFTS = 3
_MIN_ROWS = 30


@dataclass(frozen=True)
class Leak:
    feature: str
    target: str
    shift: int  # feature[t] matches target[t - shift]; shift < horizon means the label was not yet known at t
    correlation: float
    method: str  # "pearson"/"spearman" against the label's "level"/"sign"
    bound: float  # the |correlation| a feature built from information known at t could reach at this shift

    def describe(self) -> str:
        when = ("the same row's" if self.shift == 0 else f"a label {-self.shift} rows ahead" if self.shift < 0
                else f"the label {self.shift} rows back (not yet resolved at t)")
        return (f"feature '{self.feature}' tracks {when} {self.target} ({self.method}, |corr|={abs(self.correlation):.3f} "
                f"> {self.bound:.3f})")


def leaky_shifts(horizon_bars: int) -> list[int]:
    """Shifts j for which target[t - j] is still unknown at time t: every j < horizon, and future rows (j < 0)."""
    return list(range(-_FUTURE_SHIFTS, max(1, horizon_bars)))


def leak_bound(shift: int, horizon_bars: int, floor: float) -> float:
    """Largest |correlation| at `shift` that information known at t explains, plus `floor` of the rest.

    The label of t − j sums h one-bar returns of which j are known at t. A feature built only from known
    returns (a past j-bar return, say) correlates with it at most about sqrt(j / h); a feature that also
    tracks the unknown part goes beyond that. At j ≤ 0 nothing of the label is known, so the bound is `floor`:
    the correlation no genuine predictor of returns reaches (real daily ICs stay well under 0.1).
    """
    known = np.sqrt(min(max(shift, 0), horizon_bars) / max(horizon_bars, 1))
    return float(known + floor * (1 - known))


class LeakScanner:
    """The features of one ranking, standardised once (as values and as ranks), scanned against each target.

    Built once per rank and shared by every target: three float32 copies of the feature matrix (values,
    ranks, which cells are known) make each correlation one matrix-vector product.
    """

    def __init__(self, x: np.ndarray, symbols: np.ndarray, features: Sequence[str]) -> None:
        known = np.isfinite(x)
        self.features = list(features)
        self.known = known.astype(np.float32)
        self.values = _standardise(np.where(known, x, 0.0), known)
        self.ranks = _standardise(np.column_stack([_rank_finite(x[:, j]) for j in range(x.shape[1])]) if x.shape[1] else x, known)
        self.previous = _row_shifter(symbols)

    def find_leaks(self, y: np.ndarray, horizon_bars: int, floor: float, target: str = "", task: TaskType = TaskType.REGRESSION) -> list[Leak]:
        """Features whose value at t tracks a label of `y` not yet resolved at t, by any of four correlations.

        `y` is the target (NaN = unlabelled), rows as the scanner's, in time order within each symbol. Every
        shift below the horizon is scanned (and three future rows), with Pearson and Spearman against the
        label's level and, for returns, its sign: a noisy copy, a rank or the direction of the future
        return, the next bar's return, part of the horizon. A past return equal to the label shifted by
        exactly the horizon is legitimate and not scanned.
        """
        leaks: dict[str, Leak] = {}
        if not self.features:
            return []
        for shift in leaky_shifts(horizon_bars):
            source = self.previous(shift)  # row whose label is compared with this row's features; -1 = none
            shifted = np.where(source >= 0, y[np.maximum(source, 0)], np.nan)
            ok = np.isfinite(shifted)
            if ok.sum() < _MIN_ROWS:
                continue
            bound = leak_bound(shift, horizon_bars, floor)
            labels = {"level": shifted}
            if task is TaskType.REGRESSION:
                labels["sign"] = np.sign(shifted)
            for label_name, label in labels.items():
                for method, matrix, values in (("pearson", self.values, label), ("spearman", self.ranks, _rank_finite(label))):
                    corr = self._correlations(matrix, values, ok)
                    for i in np.flatnonzero(np.abs(corr) > bound):
                        name, excess = self.features[i], abs(corr[i]) - bound
                        if name not in leaks or excess > abs(leaks[name].correlation) - leaks[name].bound:
                            leaks[name] = Leak(name, target, shift, float(corr[i]), f"{method} vs {label_name}", bound)
        return sorted(leaks.values(), key=lambda leak: (leak.bound - abs(leak.correlation), leak.feature))

    def _correlations(self, z: np.ndarray, y: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """Pearson correlation of every column of `z` with `y` over `rows` and each column's known cells."""
        weight = rows.astype(np.float32)
        yc = np.where(rows, y - y[rows].mean(), 0.0).astype(np.float32)
        n = self.known.T @ weight
        sxy = (z.T @ yc).astype(np.float64)
        sxx = np.square(z).T @ weight
        syy = self.known.T @ (yc * yc)
        denom = np.sqrt(sxx.astype(np.float64) * syy)
        safe = (denom > 0) & (n >= _MIN_ROWS)
        return np.where(safe, sxy / np.where(safe, denom, 1.0), 0.0)


def find_leaks(
    x: np.ndarray,
    y: np.ndarray,
    symbols: np.ndarray,
    features: Sequence[str],
    horizon_bars: int,
    floor: float,
    target: str = "",
    task: TaskType = TaskType.REGRESSION,
) -> list[Leak]:
    """One target's leaks (see `LeakScanner.find_leaks`); rank builds the scanner once for all targets."""
    return LeakScanner(x, symbols, features).find_leaks(y, horizon_bars, floor, target, task)


def _standardise(x: np.ndarray, known: np.ndarray) -> np.ndarray:
    """Columns centred and scaled over their known cells; unknown cells 0, so they add nothing to a product."""
    count = np.maximum(known.sum(axis=0), 1)
    filled = np.where(known, x, 0.0).astype(np.float64)
    centred = np.where(known, filled - filled.sum(axis=0) / count, 0.0)
    scale = np.sqrt((centred * centred).sum(axis=0) / count)
    scale[scale == 0] = 1.0
    return (centred / scale).astype(np.float32)


def _rank_finite(v: np.ndarray) -> np.ndarray:
    """Ranks of the finite values (NaN elsewhere), so a Pearson correlation of ranks is a Spearman correlation."""
    out = np.full(len(v), np.nan)
    ok = np.isfinite(v)
    out[ok] = rankdata(v[ok])
    return out


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


def too_good(task: TaskType, best_rank_ic: float, best_r2: float, best_auc: float, max_rank_ic: float, max_r2: float, max_auc: float) -> str | None:
    """Reason string when the best model's out-of-sample score is beyond what market data allows, else None.

    Judged on the best model, not an average: a leak only trees exploit would be halved by averaging
    with a linear model. An AUC far below 0.5 is as suspicious as one far above (a leak with its sign flipped).
    """
    if task is TaskType.REGRESSION:
        if np.isfinite(best_rank_ic) and abs(best_rank_ic) > max_rank_ic:
            return (f"best model's out-of-sample rank IC={best_rank_ic:.3f} exceeds ±{max_rank_ic} (ranking.maxRankIc): "
                    "too good to be true for returns; look for a leaked feature")
        if np.isfinite(best_r2) and best_r2 > max_r2:
            return (f"best model's out-of-sample R²={best_r2:.3f} exceeds {max_r2} (ranking.maxR2): "
                    "too good to be true for returns; look for a leaked feature")
        return None
    if np.isfinite(best_auc) and max(best_auc, 1 - best_auc) > max_auc:
        return (f"best model's out-of-sample AUC={best_auc:.3f} is beyond {max_auc} (ranking.maxAuc): "
                "too good to be true; look for a leaked feature")
    return None
