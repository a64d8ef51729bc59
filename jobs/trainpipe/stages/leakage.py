"""Leakage guards used by rank: features that carry a label not yet known, and scores too good to be true."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from trainpipe.contract.names import TaskType

# Shifts checked beyond the unresolved window: labels of the next rows are future information too.
_FUTURE_SHIFTS = 3
# Resolved labels a feature is compared with: shift h (the label that ended at t) and the next few before it.
# A past-only feature shares with them whatever it shares with the known part of an unresolved label.
_RESOLVED_SHIFTS = 4
# Chance that pure noise stops a run: one label's whole scan (features × shifts × correlations) is one family.
FALSE_ALARM = 0.01
# Horizons built from the shortest return column: each one up to this many of its bars, then a grid growing by
# a quarter, so a copy of any longer horizon's return still correlates ≥ √(1/1.25) ≈ 0.89 with a scanned one.
_EVERY_UNIT_UP_TO = 32
_UNIT_GROWTH = 1.25
_MIN_ROWS = 30
# Shifts whose labels share one pass over the stored features: the pass reads memory, the labels are few rows.
# Eight: a unit horizon's resolved and unresolved shifts take one pass.
_SHIFTS_PER_PASS = 8
# Rows of the features standardised at a time when a pass reads them (a few MiB of float64).
_BLOCK_ROWS = 8192


@dataclass(frozen=True)
class Leak:
    feature: str
    target: str
    shift: int  # feature[t] matches target[t - shift]; shift < horizon means the label was not yet known at t
    correlation: float
    method: str  # "pearson"/"spearman" against the label's "level"/"sign"
    bound: float  # the |correlation| past information, genuine skill and noise explain at this shift (`leak_bound`)
    resolved: float = 0.0  # the feature's |correlation| (same method) with the label once resolved (shift ≥ horizon)

    def describe(self) -> str:
        when = ("the same row's" if self.shift == 0 else f"a label {-self.shift} rows ahead" if self.shift < 0
                else f"the label {self.shift} rows back (not yet resolved at t)")
        return (f"feature '{self.feature}' tracks {when} {self.target} ({self.method}, |corr|={abs(self.correlation):.3f} "
                f"> {self.bound:.3f}, though only {self.resolved:.3f} with it once resolved)")


def leaky_shifts(horizon_bars: int) -> list[int]:
    """Shifts j for which target[t - j] is still unknown at time t: every j < horizon, and future rows (j < 0)."""
    return list(range(-_FUTURE_SHIFTS, max(1, horizon_bars)))


def resolved_shifts(horizon_bars: int) -> list[int]:
    """Shifts j ≥ horizon whose labels are known at t: what a feature built from the past may legitimately track."""
    h = max(1, horizon_bars)
    return list(range(h, h + _RESOLVED_SHIFTS))


def noise_margin(labelled: int, horizon_bars: int, design_effect: float, tests: int) -> float:
    """How far noise alone moves the largest of `tests` correlations, at the FALSE_ALARM rate, in Fisher z units.

    Overlapping labels repeat each return `horizon_bars` times, and rows of one timestamp move together
    (`design_effect`: 1 for independent symbols, up to their number when all move as one), so the rows are
    worth labelled / (horizon · design effect) independent ones; atanh of a correlation has a standard error
    of 1/√ of that, whatever the correlation (so a near-copy is judged as surely as a faint one).
    """
    from scipy.stats import norm

    independent = max(1.0, labelled / (max(1, horizon_bars) * max(1.0, design_effect)))
    z = float(norm.isf(FALSE_ALARM / (2 * max(1, tests))))
    return z / float(np.sqrt(independent))


def leak_bound(resolved: float | np.ndarray, shift: int, horizon_bars: int, floor: float, noise: float) -> np.ndarray:
    """The largest |correlation| at `shift` that information known at t explains, plus skill and noise.

    Known information is what the feature shares with resolved labels (`resolved`), or at least what the
    label's known part explains: the label of t − j sums h one-bar returns of which j are known at t, and a
    feature built from them (a past j-bar return) correlates with it about √(j/h). `floor` is the skill a
    genuine predictor may add; `noise` (Fisher z units, see `noise_margin`) what sampling may.
    """
    known = np.sqrt(min(max(shift, 0), horizon_bars) / max(horizon_bars, 1))
    explained = np.minimum(np.maximum(resolved, known) + floor, 1 - 1e-9)
    return np.asarray(np.tanh(np.arctanh(explained) + noise))


def design_effect(y: np.ndarray, timestamps: np.ndarray | None) -> float:
    """How many rows of one timestamp count as one: 1 + (m − 1)·ρ for m symbols whose labels correlate by ρ.

    Read as m · var(timestamp means) / var(labels), bounded to [1, m]; 1 without timestamps. `timestamps`
    may be any codes that are equal exactly where the timestamps are.
    """
    known = np.isfinite(y)
    if timestamps is None or known.sum() < 2:
        return 1.0
    codes = np.unique(np.asarray(timestamps)[known], return_inverse=True)[1]
    counts = np.bincount(codes)
    values = y[known]
    total = float(values.var())
    if total <= 0 or len(counts) < 2:
        return 1.0
    means = np.bincount(codes, weights=values) / counts
    m = float(counts.mean())
    return float(min(m, max(1.0, m * means.var() / total)))


def unit_horizons(longest: int, step: int = 1) -> list[int]:
    """Horizons (bars) scanned with returns summed from a `step`-bar return column: multiples of `step` up to `longest`.

    Every multiple up to _EVERY_UNIT_UP_TO of them, then a grid growing by a quarter, ending at `longest`'s
    last multiple. The column's own horizon (one multiple) is scanned as a target already and left out.
    """
    top = max(0, longest) // max(1, step)
    multiples = list(range(2, min(top, _EVERY_UNIT_UP_TO) + 1))
    m = _EVERY_UNIT_UP_TO
    while m < top:
        m = min(top, max(m + 1, int(np.ceil(m * _UNIT_GROWTH))))
        multiples.append(m)
    return [k * step for k in multiples]


class LeakScanner:
    """The features of one ranking, standardised once (as values and as ranks), scanned against each target.

    Built once per rank and shared by every target. It holds one float32 copy of the features: their ranks
    (one row per feature, standardised, 0 where unknown); for the values only each feature's mean and scale,
    standardising `x` a block of rows at a time when a pass reads it; and each feature's unknown rows (few:
    warm-up windows). A few shifts' correlations cost one pass over the ranks and over `x`, with all their
    labels at once; counts and sums of squares are whole-column totals less the few rows that drop out. So
    no copy of the features is made per shift, and building makes one column at a time.
    """

    def __init__(self, x: np.ndarray, symbols: np.ndarray, features: Sequence[str], timestamps: np.ndarray | None = None) -> None:
        self.features = list(features)
        rows, width = x.shape[0], len(self.features)
        self.x = x  # the caller's matrix, read again a block at a time (standardised on the fly)
        # Rows of one timestamp move together: the noise margin counts them as fewer. Small codes, found once.
        self.timestamps = None if timestamps is None else np.unique(timestamps, return_inverse=True)[1].astype(np.int32)
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

    def find_leaks(self, y: np.ndarray, horizon_bars: int, floor: float, target: str = "", task: TaskType = TaskType.REGRESSION,
                   shifts: Sequence[int] | None = None, family: int = 1) -> list[Leak]:
        """Features whose value at t tracks a label of `y` not yet resolved at t more than they track it resolved.

        `y` is the target (NaN = unlabelled), rows as the scanner's, in time order within each symbol. Each
        unresolved shift (`shifts`; by default every shift below the horizon and three future rows) is
        compared, per correlation (Pearson and Spearman against the label's level and, for returns, its
        sign), with the feature's largest correlation with the resolved labels (shifts h … h+3). A feature
        built from the past shares with an unresolved label only what the label's known part holds, which
        the resolved labels hold too: a past return, a volatility against a big-move label. It is a leak
        when it exceeds that (see `leak_bound`) by more than `floor` (the skill a genuine predictor may show)
        and the noise of this many rows, horizon and correlations (`family` labels scanned as one family).
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
        methods = [(label_name, method) for label_name in kinds for method in ("pearson", "spearman")]
        unresolved = list(shifts) if shifts is not None else leaky_shifts(horizon_bars)
        # Resolved and unresolved shifts share the passes over the features: the resolved ones come first.
        scanned = self._scan(kinds, resolved_shifts(horizon_bars) + unresolved)
        resolved = np.zeros((len(methods), len(self.features)))
        for shift, correlations in scanned:
            if shift >= horizon_bars:
                resolved = np.maximum(resolved, np.abs(np.asarray(correlations)))
        tests = len(self.features) * len(unresolved) * len(methods) * max(1, family)
        noise = noise_margin(int(np.isfinite(y).sum()), horizon_bars, design_effect(y, self.timestamps), tests)
        for shift, correlations in scanned:
            if shift >= horizon_bars:
                continue
            bounds = leak_bound(resolved, shift, horizon_bars, floor, noise)
            for (label_name, method), corr, bound, shared in zip(methods, correlations, bounds, resolved, strict=True):
                for i in np.flatnonzero(np.abs(corr) > bound):
                    name, excess = self.features[i], abs(corr[i]) - bound[i]
                    if name not in leaks or excess > abs(leaks[name].correlation) - leaks[name].bound:
                        leaks[name] = Leak(name, target, shift, float(corr[i]), f"{method} vs {label_name}", float(bound[i]), float(shared[i]))
        return sorted(leaks.values(), key=lambda leak: (leak.bound - abs(leak.correlation), leak.feature))

    def find_unit_leaks(self, returns: np.ndarray, step: int, longest: int, floor: float, column: str) -> list[Leak]:
        """Leaks of the forward return over every horizon up to `longest` bars, summed from a `step`-bar return column.

        A feature can leak a horizon no target column has (a copy of the 5-day return beside 1- and 20-day
        targets). The sum of the next m `step`-bar returns is the (m·step)-bar return; each is scanned at the
        row itself and the three rows ahead, where nothing of it is known: a copy of part of a longer label
        is a whole copy of a shorter one. All horizons are one family for the noise margin.
        """
        horizons = unit_horizons(longest, step)
        if not horizons:
            return []
        returns = np.asarray(returns, dtype=np.float64)
        total, summed = returns.copy(), 1
        found: dict[str, Leak] = {}
        for h in horizons:
            while summed * step < h:
                source = self.previous(-summed * step)
                total += np.where(source >= 0, returns[np.maximum(source, 0)], np.nan)
                summed += 1
            label = f"{h}-bar return (the sum of {column})"
            for leak in self.find_leaks(total, h, floor, label, shifts=range(-_FUTURE_SHIFTS, 1), family=len(horizons)):
                if leak.feature not in found or abs(leak.correlation) - leak.bound > abs(found[leak.feature].correlation) - found[leak.feature].bound:
                    found[leak.feature] = leak
        return sorted(found.values(), key=lambda leak: (leak.bound - abs(leak.correlation), leak.feature))

    def _scan(self, kinds: dict[str, tuple[np.ndarray, np.ndarray, int]], shifts: Sequence[int]) -> list[tuple[int, list[np.ndarray]]]:
        """The correlations of every shift in `shifts`, a pass of _SHIFTS_PER_PASS of them at a time."""
        shifts = list(shifts)
        return [found for start in range(0, len(shifts), _SHIFTS_PER_PASS)
                for found in self._correlations(kinds, shifts[start:start + _SHIFTS_PER_PASS])]

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
    timestamps: np.ndarray | None = None,
) -> list[Leak]:
    """One target's leaks (see `LeakScanner.find_leaks`); rank builds the scanner once for all targets."""
    return LeakScanner(x, symbols, features, timestamps).find_leaks(y, horizon_bars, floor, target, task)


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


def too_good(task: TaskType, best_rank_ic: float, best_r2: float, best_auc: float, max_rank_ic: float, max_r2: float, max_auc: float,
             noise: float = 0.0) -> str | None:
    """Reason string when the best model's out-of-sample score is beyond what market data allows, else None.

    Judged on the best model, not an average: a leak only trees exploit would be halved by averaging
    with a linear model. An AUC far below 0.5 is as suspicious as one far above (a leak with its sign flipped).
    `noise` is what sampling error allows on top of the limits, in skill units (rank IC; 2·(AUC − 0.5)):
    a limit is crossed only by more than that, so a short panel's lucky estimate is not called a leak.
    """
    ic_limit, auc_limit = max_rank_ic + noise, max_auc + noise / 2

    def allowance(extra: float) -> str:
        return f" + {extra:.3f} for noise" if extra > 0 else ""

    if task is TaskType.REGRESSION:
        if np.isfinite(best_rank_ic) and abs(best_rank_ic) > ic_limit:
            return (f"best model's out-of-sample rank IC={best_rank_ic:.3f} exceeds ±{max_rank_ic}{allowance(noise)} (ranking.maxRankIc): "
                    "too good to be true for returns; look for a leaked feature")
        if np.isfinite(best_r2) and best_r2 > max_r2:
            return (f"best model's out-of-sample R²={best_r2:.3f} exceeds {max_r2} (ranking.maxR2): "
                    "too good to be true for returns; look for a leaked feature")
        return None
    if np.isfinite(best_auc) and max(best_auc, 1 - best_auc) > auc_limit:
        return (f"best model's out-of-sample AUC={best_auc:.3f} is beyond {max_auc}{allowance(noise / 2)} (ranking.maxAuc): "
                "too good to be true; look for a leaked feature")
    return None
