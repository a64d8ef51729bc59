"""Leakage guards used by rank: features that carry a label not yet known, and scores too good to be true."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from trainpipe.contract.names import TaskType

# Shifts checked beyond the unresolved window: labels of the next rows are future information too.
_FUTURE_SHIFTS = 3
_MIN_ROWS = 30
# Shifts whose labels share one pass over the stored features: the pass reads memory, the labels are few rows.
_SHIFTS_PER_PASS = 4
# Rows of the features standardised at a time when a pass reads them (a few MiB of float64).
_BLOCK_ROWS = 8192


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

    Built once per rank and shared by every target. It holds one float32 copy of the features: their ranks
    (one row per feature, standardised, 0 where unknown); for the values only each feature's mean and scale,
    standardising `x` a block of rows at a time when a pass reads it; and each feature's unknown rows (few:
    warm-up windows). A few shifts' correlations cost one pass over the ranks and over `x`, with all their
    labels at once; counts and sums of squares are whole-column totals less the few rows that drop out. So
    no copy of the features is made per shift, and building makes one column at a time.
    """

    def __init__(self, x: np.ndarray, symbols: np.ndarray, features: Sequence[str]) -> None:
        self.features = list(features)
        rows, width = x.shape[0], len(self.features)
        self.x = x  # the caller's matrix, read again a block at a time (standardised on the fly)
        self.centre, self.scale = np.zeros(width), np.ones(width)
        self.ranks = np.empty((width, rows), dtype=np.float32)
        self.square_sums = np.empty((2, width))  # Σ z² of each column, values then ranks
        self.unknown: list[np.ndarray] = []  # per feature, its rows without a value
        for j in range(width):  # column by column: the float64 temporaries are one column long
            column = np.asarray(x[:, j], dtype=np.float64)
            known = np.isfinite(column)
            self.unknown.append(np.flatnonzero(~known).astype(np.int32))
            self.centre[j], self.scale[j] = _moments(column, known)
            values = _standardise(column, known, self.centre[j], self.scale[j]).astype(np.float32).astype(np.float64)
            ranks = _rank_finite(column)
            self.ranks[j] = _standardise(ranks, known, *_moments(ranks, known))
            stored = self.ranks[j].astype(np.float64)
            self.square_sums[:, j] = values @ values, stored @ stored
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
        y = np.asarray(y, dtype=np.float64)
        # Ties of y (and of its sign) are found once: a shift only picks which labels take part, and the
        # ranks of those are counted from the ties without sorting again.
        kinds = {"level": (y, *_tie_groups(y))}
        if task is TaskType.REGRESSION:
            sign = np.sign(y)
            kinds["sign"] = (sign, *_tie_groups(sign))
        shifts = leaky_shifts(horizon_bars)
        for start in range(0, len(shifts), _SHIFTS_PER_PASS):
            for shift, correlations in self._correlations(kinds, shifts[start:start + _SHIFTS_PER_PASS]):
                bound = leak_bound(shift, horizon_bars, floor)
                methods = ((label_name, method) for label_name in kinds for method in ("pearson", "spearman"))
                for (label_name, method), corr in zip(methods, correlations, strict=True):
                    for i in np.flatnonzero(np.abs(corr) > bound):
                        name, excess = self.features[i], abs(corr[i]) - bound
                        if name not in leaks or excess > abs(leaks[name].correlation) - leaks[name].bound:
                            leaks[name] = Leak(name, target, shift, float(corr[i]), f"{method} vs {label_name}", bound)
        return sorted(leaks.values(), key=lambda leak: (leak.bound - abs(leak.correlation), leak.feature))

    def _correlations(self, kinds: dict[str, tuple[np.ndarray, np.ndarray, int]], shifts: Sequence[int]) -> list[tuple[int, list[np.ndarray]]]:
        """Each feature's correlations with the labels of `shifts`, per shift: per label kind, Pearson then Spearman.

        Pearson of the standardised values with the label, Spearman of the standardised ranks with the label's
        ranks among the labelled rows: Σzy / √(Σz²·Σy²), every sum over the rows where both are known. All the
        shifts' labels share one pass over the ranks and over `x`. Shifts with too few labelled rows are left out.
        """
        rows = len(kinds["level"][0])
        labels: np.ndarray = np.empty((2, len(shifts), len(kinds), rows), dtype=np.float32)  # method × shift × kind × row, centred
        kept: list[tuple[int, np.ndarray, np.ndarray, list[np.ndarray]]] = []
        for shift in shifts:
            sums = self._label_sums(kinds, shift, labels[:, len(kept)])
            if sums is not None:
                kept.append((shift, *sums))
        n = len(kept)
        if n == 0:
            return []
        # (shifts · kinds) × features; the label rows are contiguous, so each pass reads the ranks and `x` once.
        pearson, spearman = (labels[m, :n].reshape(n * len(kinds), rows) for m in range(2))
        sxy = [np.zeros((n * len(kinds), len(self.features)), dtype=np.float32), spearman @ self.ranks.T]
        for start in range(0, rows, _BLOCK_ROWS):
            block = slice(start, start + _BLOCK_ROWS)
            sxy[0] += pearson[:, block] @ self._values(block)
        out = []
        for i, (shift, count, syy, sxx) in enumerate(kept):
            correlations = []
            for k in range(len(kinds)):
                for m in range(2):
                    denom = np.sqrt(sxx[m] * syy[:, 2 * k + m])
                    safe = (denom > 0) & (count >= _MIN_ROWS)
                    correlations.append(np.where(safe, sxy[m][i * len(kinds) + k].astype(np.float64) / np.where(safe, denom, 1.0), 0.0))
            out.append((shift, correlations))
        return out

    def _label_sums(self, kinds: dict[str, tuple[np.ndarray, np.ndarray, int]], shift: int,
                    labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]] | None:
        """Write the centred labels at `shift` into `labels` (method × kind × row); return what goes with them.

        That is, per feature: the labelled rows it knows, each label's Σy² over those rows (per kind, values
        then ranks), and Σz² of its values and of its ranks over the labelled rows. None when too few rows
        have a label at this shift.
        """
        source = self.previous(shift)  # row whose label is compared with this row's features; -1 = none
        ok = source >= 0
        ok[ok] = np.isfinite(kinds["level"][0][source[ok]])
        if ok.sum() < _MIN_ROWS:
            return None
        at = np.flatnonzero(ok)  # indices, not the mask: each of the writes below would find them again
        labelled = source[at]
        per_row = np.zeros((1 + 2 * len(kinds), len(ok)))  # labelled, then each label's centred square
        per_row[0] = ok
        for k, (values, groups, n_groups) in enumerate(kinds.values()):
            for m, v in enumerate((values[labelled], _tie_ranks(groups[labelled], n_groups))):
                centred = v - v.mean()
                labels[m, k] = 0.0
                labels[m, k, at] = centred
                per_row[1 + 2 * k + m, at] = centred * centred
        # Counts and Σy² over each feature's known rows: the totals less the sums over its unknown rows.
        totals = per_row.sum(axis=1)
        known = np.array([totals - per_row[:, unknown].sum(axis=1) for unknown in self.unknown])
        # Σz² over the labelled rows: the column's total less its unlabelled rows, or the labelled ones when fewer.
        dropped = np.flatnonzero(~ok)
        if len(dropped) <= len(ok) // 2:
            sxx = list(self.square_sums - self._square_sums(dropped))
        else:
            sxx = list(self._square_sums(at))
        return known[:, 0], known[:, 1:], sxx

    def _values(self, rows: slice | np.ndarray) -> np.ndarray:
        """The standardised values of `rows` of `x` (rows × features, float32; 0 where unknown)."""
        block = np.asarray(self.x[rows], dtype=np.float64)
        with np.errstate(invalid="ignore"):
            return np.where(np.isfinite(block), (block - self.centre) / self.scale, 0.0).astype(np.float32)

    def _square_sums(self, rows: np.ndarray) -> np.ndarray:
        """Σ z² over `rows` of each feature's standardised values and of its ranks (2 × features), a block at a time."""
        out = np.zeros((2, len(self.features)))
        for start in range(0, len(rows), _BLOCK_ROWS):
            part = rows[start:start + _BLOCK_ROWS]
            values, ranks = self._values(part).astype(np.float64), self.ranks[:, part].astype(np.float64)
            out[0] += np.einsum("ij,ij->j", values, values)
            out[1] += np.einsum("ij,ij->i", ranks, ranks)
        return out


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


def _moments(v: np.ndarray, known: np.ndarray) -> tuple[float, float]:
    """Mean and standard deviation of the known cells (scale 1 for a constant or empty column)."""
    count = max(int(known.sum()), 1)
    filled = np.where(known, v, 0.0)
    mean = filled.sum() / count
    centred = np.where(known, filled - mean, 0.0)
    scale = np.sqrt((centred * centred).sum() / count)
    return float(mean), float(scale) if scale > 0 else 1.0


def _standardise(v: np.ndarray, known: np.ndarray, mean: float, scale: float) -> np.ndarray:
    """Centred and scaled; unknown cells 0, so they add nothing to a product."""
    with np.errstate(invalid="ignore"):
        return np.where(known, (v - mean) / scale, 0.0)


def _tie_groups(v: np.ndarray) -> tuple[np.ndarray, int]:
    """Each finite value's index among the distinct finite values of `v` (-1 where not finite), and their number."""
    groups = np.full(len(v), -1, dtype=np.intp)
    finite = np.isfinite(v)
    distinct, groups[finite] = np.unique(v[finite], return_inverse=True)
    return groups, len(distinct)


def _tie_ranks(groups: np.ndarray, n_groups: int) -> np.ndarray:
    """Ranks of values given as tie groups (ascending), ties sharing their mean rank as scipy's rankdata does."""
    counts = np.bincount(groups, minlength=n_groups)
    below = np.cumsum(counts) - counts
    return (below + (counts + 1) / 2)[groups]


def _rank_finite(v: np.ndarray) -> np.ndarray:
    """Ranks of the finite values (NaN elsewhere), so a Pearson correlation of ranks is a Spearman correlation."""
    groups, n_groups = _tie_groups(v)
    out = np.full(len(v), np.nan)
    known = groups >= 0
    out[known] = _tie_ranks(groups[known], n_groups)
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
