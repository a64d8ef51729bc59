"""How stable one target's feature selection is: against the last run's selection and across resamples of the rows.

Called by the select step (`trainpipe.runner.steps.selection`); no file I/O here. Two checks, each a
Jaccard overlap and a Kendall tau graded by `select.stability`'s thresholds:

* against the previous run: the selection of the same target in the pipeline's last succeeded run;
* resampled: LightGBM gain rankings of `RESAMPLES` block-bootstrap resamples of the development rows,
  each one's top k against the top k of the same ranking on all the rows (k = the features the
  selection kept). Its reference is the gain ranking, not the consensus, so the check measures how much
  the ranking moves with the sample, not how much the methods disagree with one another.

`combine` gives the state routing reads: the worse of the checks made; UNKNOWN only when neither was
(nothing earlier to compare with and too few bars to resample), which routing never counts as stable.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from trainpipe.contract.names import Stability, TaskType
from trainpipe.stages.binned import binned_dataset, booster_params, subset
from trainpipe.stages.select import TREES, grade, stability

# Few resamples: each costs one booster per target, and the state only needs to tell a ranking that holds
# from one that reshuffles; the mean over three already separates a planted signal from noise widely.
RESAMPLES = 3
# A resample needs this many blocks, or it is mostly one stretch of the series and says little.
MIN_BLOCKS = 8
# Order of the states from best to worst, for `combine`.
_SEVERITY: dict[Stability, int] = {Stability.STABLE: 0, Stability.DRIFTING: 1, Stability.DIVERGED: 2}


def combine(previous: Stability, resampled: Stability) -> Stability:
    """The state routing reads: the worse of the checks that were made; UNKNOWN only when neither was."""
    made = [s for s in (previous, resampled) if s is not Stability.UNKNOWN]
    return max(made, key=_SEVERITY.__getitem__) if made else Stability.UNKNOWN


def block_bars(n_timestamps: int, horizon_bars: int, embargo_bars: int) -> int:
    """Consecutive timestamps per bootstrap block.

    At least the label's horizon plus the embargo: labels of neighbouring bars overlap over the horizon,
    and a block cut inside it would make a resample look more independent than the data is. Longer series
    get longer blocks (about T^(1/3), the usual rate) so slower dependence, such as volatility regimes,
    stays inside a block too.
    """
    return max(1, horizon_bars + embargo_bars, round(n_timestamps ** (1 / 3)))


def block_bootstrap_counts(n_timestamps: int, block: int, rng: np.random.Generator) -> np.ndarray:
    """How often each timestamp is drawn: ceil(T / block) blocks of consecutive timestamps with uniform starts, cut to T draws."""
    block = min(block, n_timestamps)
    n_blocks = -(-n_timestamps // block)
    starts = rng.integers(0, n_timestamps - block + 1, size=n_blocks)
    drawn = (starts[:, None] + np.arange(block)).ravel()[:n_timestamps]
    return np.bincount(drawn, minlength=n_timestamps)


def top_features(gains: np.ndarray, features: Sequence[str], k: int) -> list[str]:
    """The k features of largest gain, best first (ties by name); features the booster never split on are left out."""
    order = sorted((-float(g), f) for g, f in zip(gains, features, strict=True) if np.isfinite(g) and g > 0)
    return [f for _, f in order[:k]]


@dataclass(frozen=True)
class ResampledStability:
    stability: Stability
    overlap: float | None
    kendall_tau: float | None
    resamples: int
    block_bars: int | None
    note: str | None = None


def grade_resamples(reference: Sequence[str], resampled: Sequence[Sequence[str]], block: int) -> ResampledStability:
    """Mean overlap and tau of each resample's top list against the reference, graded like a comparison of two runs."""
    if not reference:
        return ResampledStability(Stability.UNKNOWN, None, None, 0, block, "the gain ranking on all rows split on no feature")
    reports = [stability(list(r), list(reference)) for r in resampled]
    overlap = float(np.mean([r.overlap or 0.0 for r in reports]))
    # Tau is defined only where two lists share two features: a resample sharing fewer says nothing about the
    # order, and counting its placeholder (1.0) would make a reshuffled set look ordered. One feature has no order.
    taus = [r.kendall_tau for r, drawn in zip(reports, resampled, strict=True)
            if r.kendall_tau is not None and len(set(drawn) & set(reference)) >= 2]
    tau = float(np.mean(taus)) if taus else (1.0 if len(reference) == 1 else 0.0)
    return ResampledStability(grade(overlap, tau), round(overlap, 6), round(tau, 6), len(reports), block)


@dataclass(frozen=True)
class ResampleParams:
    seed: int
    embargo_bars: int
    threads: int = 2
    resamples: int = RESAMPLES


@dataclass(frozen=True)
class TargetRows:
    """One target's labelled rows of the feature matrix (ascending, time order), their labels and timestamps."""

    rows: np.ndarray
    y: np.ndarray  # classes encoded 0..K-1 for classification
    ts: np.ndarray  # the timestamp of each labelled row
    task: TaskType
    horizon_bars: int
    k: int  # features to compare: as many as the selection kept


def target_rows(values: np.ndarray, ts: np.ndarray, task: TaskType, horizon_bars: int, k: int) -> TargetRows:
    """The rows of the matrix where the target is known, labelled as select's boosters label them."""
    rows = np.flatnonzero(np.isfinite(values)).astype(np.int32)
    y = values[rows].astype(np.float64)
    if task is not TaskType.REGRESSION:
        y = np.searchsorted(np.unique(y), y).astype(np.float64)
    return TargetRows(rows, y, ts[rows], task, horizon_bars, k)


def resampled_stability(x: np.ndarray, features: Sequence[str], targets: dict[str, TargetRows], params: ResampleParams,
                        on_target: Callable[[str], None] | None = None,
                        reference_gains: Mapping[str, np.ndarray] | None = None) -> dict[str, ResampledStability]:
    """The resampled check of each target, every booster on one binned dataset of `x` (float32, the select step's matrix).

    Resamples weight each labelled row by how often its timestamp was drawn, so a timestamp's symbols stay
    together and no row is copied. Seeded by `params.seed`: the same rows give the same draws and boosters.
    `reference_gains` are the full-data gains select's own LightGBM booster found (the same dataset, rows,
    labels and parameters): given, that booster is not trained a second time.
    """
    if not targets:
        return {}
    base = binned_dataset(x, params.seed)
    out = {}
    for name, t in targets.items():
        out[name] = _one_target(base, list(features), t, params, (reference_gains or {}).get(name))
        if on_target is not None:
            on_target(name)
    return out


def _one_target(base, features: list[str], t: TargetRows, params: ResampleParams, full_gains: np.ndarray | None) -> ResampledStability:
    import lightgbm as lgb

    stamps, at = np.unique(t.ts, return_inverse=True)
    block = block_bars(len(stamps), t.horizon_bars, params.embargo_bars)
    if t.k < 1:
        return ResampledStability(Stability.UNKNOWN, None, None, 0, block, "the selection kept no feature")
    if len(stamps) < MIN_BLOCKS * block:
        return ResampledStability(Stability.UNKNOWN, None, None, 0, block,
                                  f"{len(stamps)} timestamps are fewer than {MIN_BLOCKS} blocks of {block} bars")
    n_classes = int(np.unique(t.y).size)
    p = booster_params(t.task, n_classes, params.seed, params.threads)

    def gains(weight: np.ndarray | None) -> np.ndarray:
        keep = slice(None) if weight is None else weight > 0
        data = subset(base, t.rows[keep], t.y[keep])
        if weight is not None:
            data.set_weight(weight[keep].astype(np.float32))
        return lgb.train(p, data, num_boost_round=TREES).feature_importance(importance_type="gain")

    reference = top_features(gains(None) if full_gains is None else full_gains, features, t.k)
    rng = np.random.default_rng(params.seed)
    drawn = [top_features(gains(block_bootstrap_counts(len(stamps), block, rng)[at].astype(np.float64)), features, t.k)
             for _ in range(params.resamples)]
    return grade_resamples(reference, drawn, block)
