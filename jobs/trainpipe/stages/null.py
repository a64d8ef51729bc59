"""The shuffled-target null of feature selection: each feature's held-out evidence, and the bar chance alone reaches.

Called by `stages.select`, whose permutation importance hands over each feature's effects on the
held-out rows. Pure numpy: no model, no file.

The evidence for a feature is the rank IC, on the purged held-out rows, between its effect on the
model's prediction and the label. A correlation is scale-free, so every feature's IC has about the
same spread under the null however much the model leans on it, and one bar serves all features (a
permutation-importance drop does not: its spread grows with the feature's use). The null is the same
IC against the labels rotated by whole timestamps; scoring a rotation needs no model and no
prediction, only one product per feature, so there can be many.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.stats import rankdata

from trainpipe.cv import timestamp_positions

# Label rotations scored per target: enough that the (1 − ALPHA) quantile of their maxima is the second largest.
ROTATIONS = 19
# The chance that a noise feature clears its bar: the bar is the (1 − ALPHA) quantile of its ICs against rotated labels.
ALPHA = 0.1
# A rotation moves the labels at least this share of the held-out timestamps (and at least a horizon):
# a persistent real feature still predicts labels moved a little, which would put its signal in the null.
MIN_SHIFT_SHARE = 0.1
# The seed stream of the rotations, apart from every other draw of select (permutation importance's own
# column shuffles among them), so the other methods' scores are the same with or without the null.
SEED_STREAM = 20


@dataclass(frozen=True)
class NullEvidence:
    """One target's null: each feature's held-out effect IC, and the IC chance alone reaches for it."""

    ics: np.ndarray  # per feature: rank IC of its held-out effect with the real labels (NaN: never used)
    thresholds: np.ndarray  # per feature: the (1 − ALPHA) quantile of its ICs against rotated labels (NaN: nothing to rotate)

    def beats(self) -> np.ndarray:
        """Features whose IC is positive and above their own bar; NaN never beats (no evidence is not evidence)."""
        with np.errstate(invalid="ignore"):
            return (self.ics > 0) & (self.ics > self.thresholds)


def evidence(ics: np.ndarray) -> NullEvidence:
    """From ICs of shape (features, 1 + rotations): column 0 against the real labels, the others against rotations.

    Each feature faces its own bar, the (1 − ALPHA) quantile of its ICs against the rotations. Not the
    quantile of the best feature per rotation: that controls the chance of keeping any noise feature, and
    on a panel of a few thousand held-out rows it kept nothing of real data whose targets had already shown
    evidence of skill. The family is controlled where it matters, at the target (rank's gate); here the
    null trims, per feature, what its held-out effect cannot tell from chance, so a pure-noise target keeps
    about ALPHA of its candidates before the consensus's support rule, and often none after it.
    """
    null = ics[:, 1:]
    if ics.shape[1] < 2:
        return NullEvidence(ics=ics[:, 0].copy(), thresholds=np.full(len(ics), np.nan))
    with np.errstate(invalid="ignore"):
        bars = np.array([np.quantile(row[np.isfinite(row)], 1 - ALPHA, method="higher") if np.isfinite(row).sum() == null.shape[1]
                         else np.nan for row in null])
    return NullEvidence(ics=ics[:, 0].copy(), thresholds=bars)


def rotations(ts: np.ndarray, horizon: int, shuffles: int, rng: np.random.Generator) -> np.ndarray | None:
    """Row orders, shape (shuffles, rows), that rotate the labels by whole timestamps: y[order] is one shuffle.

    A rotation is the block shuffle with the longest blocks: the labels are cut at one timestamp and the
    two pieces swapped. Whole timestamps, so each timestamp's cross-section of labels moves together;
    one seam only, so the labels keep the autocorrelation (overlapping horizons, slow regimes) that sets
    how far an IC strays by chance; short blocks break it at every edge and make the null narrower than
    chance, which then lets noise of persistent features through. Every shift is at least `min_shift`
    timestamps from the real alignment either way: a horizon, so no label meets a row whose horizon it
    overlaps, and MIN_SHIFT_SHARE of the timestamps.
    Distinct shifts, drawn with the seeded `rng`; fewer when fewer exist; None when none does.
    """
    pos, n_ts = timestamp_positions(ts)
    min_shift = max(1, horizon, int(np.ceil(MIN_SHIFT_SHARE * n_ts)))
    allowed = np.arange(min_shift, n_ts - min_shift + 1)
    if allowed.size == 0:
        return None
    shifts = np.sort(rng.choice(allowed, size=min(shuffles, allowed.size), replace=False))
    time_order = np.argsort(pos, kind="stable")
    sorted_pos = pos[time_order]
    out = np.empty((len(shifts), len(ts)), dtype=np.int64)
    for s, shift in enumerate(shifts):
        start = np.searchsorted(sorted_pos, shift)  # the first row of timestamp `shift` leads the rotated labels
        # On a full panel the rotated rows line up symbol by symbol; on a ragged one they are off by a few rows, still a null.
        out[s, time_order] = np.roll(time_order, -start)
    return out


@dataclass(frozen=True)
class ShuffledLabels:
    """One target's held-out labels beside their rotations, ranked and centred once for every feature's IC.

    `columns[k]` is rows × (1 + shuffles) for class k: the labels themselves (regression, two classes,
    one entry) or the indicator of class k (several classes), real first.
    """

    columns: np.ndarray  # classes × rows × (1 + shuffles), centred ranks scaled to unit length

    def ics(self, effect: np.ndarray) -> np.ndarray:
        """Rank IC of one feature's effect (classes × rows) with the real labels and each rotation, averaged over classes.

        NaN when the effect never varies (the model never used the feature).
        """
        out = np.zeros(self.columns.shape[2])
        for k, cols in enumerate(self.columns):
            r = rankdata(effect[k])
            r -= r.mean()
            norm = np.sqrt((r * r).sum())
            out += (r @ cols) / norm if norm > 0 else np.nan
        return out / len(self.columns)


def shuffled_labels(y: np.ndarray, ts: np.ndarray, horizon: int, seed: int, classes: int) -> ShuffledLabels:
    """The held-out labels `y` (classes 0..K-1 for classification; `classes` > 1 for one effect per class) and their rotations."""
    orders = rotations(ts, horizon, ROTATIONS, np.random.default_rng([seed, SEED_STREAM]))
    labels = np.column_stack([y, *(y[o] for o in orders)]) if orders is not None else y[:, None]
    per_class = [labels] if classes == 1 else [(labels == k).astype(np.float64) for k in range(classes)]
    columns = []
    for cols in per_class:
        r = rankdata(cols, axis=0)
        r -= r.mean(axis=0)
        norms = np.sqrt((r * r).sum(axis=0))
        with np.errstate(invalid="ignore", divide="ignore"):
            columns.append(r / norms)  # a class absent from the rows: NaN, and so no evidence
    return ShuffledLabels(np.array(columns))
