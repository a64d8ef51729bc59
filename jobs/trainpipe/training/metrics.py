"""Honest holdout metrics of one model's predictions (IC, rank IC, R² or AUC, hit rate); called by the stage worker.

Rank IC is reported two ways: `rank_ic_pooled` (Spearman over all holdout rows) and, when several
symbols share timestamps, `rank_ic_cs_mean` (mean over timestamps of the cross-sectional Spearman,
timestamps with fewer than 3 symbols skipped). `rank_ic` is the cross-sectional mean when it exists,
else the pooled value, and `rank_ic_method` says which.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from trainpipe.contract.names import TaskType
from trainpipe.contract.targets import positive_label


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
) -> dict[str, float | int | str | None]:
    """Metrics of `pred` against the realised target `y` on the holdout rows, each beside its no-skill baseline.

    For a binary target `positive` is the label of the positive class (`positive_label` of the job's
    labels, as training encodes it); the holdout alone may lack a class, so it is passed in.
    """
    task = TaskType(task)
    y = np.asarray(y, dtype=np.float64)
    if task is TaskType.BINARY:
        top = positive if positive is not None else positive_label(np.unique(y[np.isfinite(y)]))
        y = (y == top).astype(np.float64)
    pred = np.asarray(pred, dtype=np.float64)
    ok = np.isfinite(y) & np.isfinite(pred)
    y, pred, ts, symbols = y[ok], pred[ok], np.asarray(ts)[ok], np.asarray(symbols)[ok]
    out: dict[str, float | int | str | None] = {"n": int(len(y)), "n_dropped_nonfinite": int((~ok).sum())}
    out["ic"] = _corr(pred, y)
    out["rank_ic_pooled"] = _spearman(pred, y)
    cs = None
    if len(np.unique(symbols)) > 1:
        per_ts = []
        frame = pd.DataFrame({"ts": ts, "p": pred, "y": y})
        for _, group in frame.groupby("ts", sort=True):
            if len(group) >= 3:
                value = _spearman(group["p"].to_numpy(), group["y"].to_numpy())
                if value is not None:
                    per_ts.append(value)
        if per_ts:
            cs = float(np.mean(per_ts))
            out["rank_ic_cs_timestamps"] = len(per_ts)
            out["rank_ic_cs_ir"] = float(np.mean(per_ts) / np.std(per_ts)) if np.std(per_ts) > 0 else None
    out["rank_ic_cs_mean"] = cs
    out["rank_ic"] = cs if cs is not None else out["rank_ic_pooled"]
    out["rank_ic_method"] = "cross_sectional_mean" if cs is not None else "pooled"
    if task is TaskType.BINARY:
        out["auc"] = auc(y, pred)
        said = pred > 0.5
        out["hit_rate"] = float(np.mean(said == (y == 1))) if len(y) else None
        # A label that is 1 in 63% of rows makes "always 1" 63% right: the hit rate means nothing without it.
        base = float(np.mean(y == 1)) if len(y) else None
        out["base_rate"] = base
        out["hit_rate_baseline"] = None if base is None else max(base, 1 - base)
        out["balanced_accuracy"] = _balanced_accuracy(y == 1, said)
    else:
        ss_tot = float(((y - y.mean()) ** 2).sum()) if len(y) else 0.0
        out["r2"] = float(1 - ((y - pred) ** 2).sum() / ss_tot) if ss_tot > 0 else None
        nz = y != 0
        out["hit_rate"] = float(np.mean(np.sign(pred[nz]) == np.sign(y[nz]))) if nz.any() else None
        up = float(np.mean(y[nz] > 0)) if nz.any() else None
        out["base_rate"] = up  # share of rising periods: what always-long gets right
        out["hit_rate_baseline"] = None if up is None else max(up, 1 - up)
    return out


def _balanced_accuracy(truth: np.ndarray, said: np.ndarray) -> float | None:
    """Mean of the true-positive and true-negative rates: 0.5 for any constant guess, whatever the base rate."""
    if truth.all() or (~truth).all():
        return None
    return float((np.mean(said[truth]) + np.mean(~said[~truth])) / 2)
