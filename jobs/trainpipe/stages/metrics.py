"""Out-of-sample scoring functions shared by rank, select and plan: IC, rank IC, R², AUC (NaN when undefined)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy.stats import rankdata


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    if len(a) < 3:
        return float("nan")
    a = a - a.mean()
    b = b - b.mean()
    denom = np.sqrt((a * a).sum() * (b * b).sum())
    return float((a * b).sum() / denom) if denom > 0 else float("nan")


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    if len(a) < 3:
        return float("nan")
    return pearson(rankdata(a), rankdata(b))


def spearman_against(y: np.ndarray) -> Callable[[np.ndarray], float]:
    """`spearman(y, ·)` for many predictions of the same labels: the labels are ranked once, the result is the same."""
    if len(y) < 3:
        return lambda pred: float("nan")
    ranked = rankdata(y)
    return lambda pred: pearson(ranked, rankdata(pred))


def r2(y: np.ndarray, pred: np.ndarray) -> float:
    if len(y) < 3:
        return float("nan")
    ss_tot = ((y - y.mean()) ** 2).sum()
    return float(1 - ((y - pred) ** 2).sum() / ss_tot) if ss_tot > 0 else float("nan")


def auc(y: np.ndarray, score: np.ndarray) -> float:
    """ROC AUC via the rank-sum identity; NaN when only one class is present."""
    y = np.asarray(y) > 0.5
    n_pos = int(y.sum())
    n_neg = len(y) - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(score)
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))
