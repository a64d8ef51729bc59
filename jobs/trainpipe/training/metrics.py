"""Honest holdout metrics of one model's predictions (IC, rank IC, R² or AUC, hit rate), each with its interval; called by the stage worker.

Rank IC is reported two ways: `rank_ic_pooled` (Spearman over all holdout rows) and, when several
symbols share timestamps, `rank_ic_cs_mean` (mean over timestamps of the cross-sectional Spearman,
timestamps with fewer than 3 symbols skipped). `rank_ic` is the cross-sectional mean when it exists,
else the pooled value, and `rank_ic_method` says which.

Every figure with a no-skill value comes with `<name>_se`, `<name>_low` and `<name>_high`: its standard
error and 95% interval with overlapping h-bar labels counted as one period in h (`uncertainty`);
`n_eff` is that count. A metric whose interval holds its no-skill value (0 for IC, 0.5 for AUC) is
not evidence of skill, whatever its point value.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from trainpipe.contract.names import TaskType
from trainpipe.contract.targets import positive_label
from trainpipe.training import uncertainty as unc


def _corr(a: np.ndarray, b: np.ndarray) -> float | None:
    if len(a) < 3 or np.std(a) == 0 or np.std(b) == 0:
        return None
    value = float(np.corrcoef(a, b)[0, 1])
    return value if np.isfinite(value) else None


def _spearman(a: np.ndarray, b: np.ndarray) -> float | None:
    return _corr(pd.Series(a).rank().to_numpy(), pd.Series(b).rank().to_numpy())


def auc(y: np.ndarray, score: np.ndarray) -> float | None:
    """Area under the ROC curve by the rank-sum formula (ties get average ranks); `y` is 1 for the positive class."""
    pos = y == 1
    n_pos, n_neg = int(pos.sum()), int((~pos).sum())
    if n_pos == 0 or n_neg == 0:
        return None
    ranks = pd.Series(score).rank().to_numpy()
    return float((ranks[pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def evaluate(
    y: np.ndarray, pred: np.ndarray, ts: np.ndarray, symbols: np.ndarray, task: TaskType | str, positive: float | None = None,
    horizon_bars: int = 1,
) -> dict[str, float | int | str | None]:
    """Metrics of `pred` against the realised target `y` on the holdout rows, each beside its no-skill baseline and with its interval.

    For a binary target `positive` is the label of the positive class (`positive_label` of the job's
    labels, as training encodes it); the holdout alone may lack a class, so it is passed in.
    `horizon_bars` is the label's horizon: rows less than that apart share part of their label.
    """
    task = TaskType(task)
    y = np.asarray(y, dtype=np.float64)
    if task is TaskType.BINARY:
        top = positive if positive is not None else positive_label(np.unique(y[np.isfinite(y)]))
        y = (y == top).astype(np.float64)
    pred = np.asarray(pred, dtype=np.float64)
    ok = np.isfinite(y) & np.isfinite(pred)
    y, pred, ts, symbols = y[ok], pred[ok], np.asarray(ts)[ok], np.asarray(symbols)[ok]
    h = max(int(horizon_bars), 1)
    out: dict[str, float | int | str | None] = {"n": int(len(y)), "n_dropped_nonfinite": int((~ok).sum())}
    out |= {"n_eff": unc.effective_n(ts, h), "ci_level": unc.LEVEL, "ci_method": unc.METHOD}
    out |= _correlations(y, pred, ts, symbols, h)
    out |= _binary_scores(y, pred, ts, h) if task is TaskType.BINARY else _regression_scores(y, pred, ts, h)
    return out


Scores = dict[str, float | int | str | None]


def _correlations(y: np.ndarray, pred: np.ndarray, ts: np.ndarray, symbols: np.ndarray, h: int) -> Scores:
    """IC, pooled rank IC and, with a cross-section, the mean per-timestamp rank IC; `rank_ic` is the latter when it exists."""
    ic = _corr(pred, y)
    out: Scores = dict(unc.estimate(ic, unc.correlation_influence(pred, y) if ic is not None else None, ts, h, (-1, 1)).fields("ic"))
    pooled = _spearman(pred, y)
    ranks = (pd.Series(pred).rank().to_numpy(), pd.Series(y).rank().to_numpy())
    pooled_est = unc.estimate(pooled, unc.correlation_influence(*ranks) if pooled is not None else None, ts, h, (-1, 1))
    out |= pooled_est.fields("rank_ic_pooled")
    cs_est = unc.Estimate(None)
    if len(np.unique(symbols)) > 1:
        stamps, per_ts = _cross_sectional_rank_ics(ts, pred, y)
        if len(per_ts):
            # The per-timestamp values are the rows here: one per timestamp, h of them per independent period.
            cs_est = unc.estimate(float(per_ts.mean()), per_ts - per_ts.mean(), stamps, h, (-1, 1))
            out["rank_ic_cs_timestamps"] = len(per_ts)
            out["rank_ic_cs_ir"] = float(np.mean(per_ts) / np.std(per_ts)) if np.std(per_ts) > 0 else None
    out |= cs_est.fields("rank_ic_cs_mean")
    out |= (cs_est if cs_est.value is not None else pooled_est).fields("rank_ic")
    out["rank_ic_method"] = "cross_sectional_mean" if cs_est.value is not None else "pooled"
    return out


def _binary_scores(y: np.ndarray, pred: np.ndarray, ts: np.ndarray, h: int) -> Scores:
    """AUC, hit rate beside the majority class's, balanced accuracy; `y` is 1 for the positive class."""
    truth = y == 1
    area = auc(y, pred)
    out: Scores = dict(unc.estimate(area, unc.auc_influence(truth, pred, area) if area is not None else None, ts, h, (0, 1)).fields("auc"))
    said = pred > 0.5
    hits = said == truth
    out |= unc.estimate(float(np.mean(hits)) if len(y) else None, unc.share_influence(hits), ts, h, (0, 1)).fields("hit_rate")
    # A label that is 1 in 63% of rows makes "always 1" 63% right: the hit rate means nothing without it.
    base = float(np.mean(truth)) if len(y) else None
    out["base_rate"] = base
    out["hit_rate_baseline"] = None if base is None else max(base, 1 - base)
    balanced = _balanced_accuracy(truth, said)
    influence = unc.balanced_accuracy_influence(truth, said) if balanced is not None else None
    return out | unc.estimate(balanced, influence, ts, h, (0, 1)).fields("balanced_accuracy")


def _regression_scores(y: np.ndarray, pred: np.ndarray, ts: np.ndarray, h: int) -> Scores:
    """R² and the sign hit rate beside always-long's (rows with a zero return left out of both hit rates)."""
    ss_tot = float(((y - y.mean()) ** 2).sum()) if len(y) else 0.0
    r2 = float(1 - ((y - pred) ** 2).sum() / ss_tot) if ss_tot > 0 else None
    out: Scores = dict(unc.estimate(r2, unc.r2_influence(y, pred) if r2 is not None else None, ts, h, (-math.inf, 1)).fields("r2"))
    nz = y != 0
    hits = np.sign(pred[nz]) == np.sign(y[nz])
    out |= unc.estimate(float(np.mean(hits)) if nz.any() else None, unc.share_influence(hits), ts[nz], h, (0, 1)).fields("hit_rate")
    up = float(np.mean(y[nz] > 0)) if nz.any() else None
    out["base_rate"] = up  # share of rising periods: what always-long gets right
    out["hit_rate_baseline"] = None if up is None else max(up, 1 - up)
    return out


def _cross_sectional_rank_ics(ts: np.ndarray, pred: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Spearman of `pred` and `y` within each timestamp of 3 symbols or more (none where either is constant): (timestamps, values)."""
    frame = pd.DataFrame({"ts": ts, "p": pred, "y": y})
    frame = frame[frame.groupby("ts")["ts"].transform("size") >= 3]
    groups = frame.groupby("ts", sort=True)
    frame = frame.assign(a=groups["p"].rank(), b=groups["y"].rank())
    by_ts = frame.groupby("ts", sort=True)
    a = frame["a"] - by_ts["a"].transform("mean")
    b = frame["b"] - by_ts["b"].transform("mean")
    sums = pd.DataFrame({"ts": frame["ts"], "ab": a * b, "aa": a * a, "bb": b * b}).groupby("ts", sort=True).sum()
    sums = sums[(sums["aa"] > 0) & (sums["bb"] > 0)]
    return sums.index.to_numpy(), (sums["ab"] / np.sqrt(sums["aa"] * sums["bb"])).to_numpy()


def _balanced_accuracy(truth: np.ndarray, said: np.ndarray) -> float | None:
    """Mean of the true-positive and true-negative rates: 0.5 for any constant guess, whatever the base rate."""
    if truth.all() or (~truth).all():
        return None
    return float((np.mean(said[truth]) + np.mean(~said[~truth])) / 2)
