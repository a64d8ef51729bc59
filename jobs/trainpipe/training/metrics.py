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


def _corr(a: np.ndarray, b: np.ndarray) -> float | None:
    if len(a) < 3 or np.std(a) == 0 or np.std(b) == 0:
        return None
    value = float(np.corrcoef(a, b)[0, 1])
    return value if np.isfinite(value) else None


def _spearman(a: np.ndarray, b: np.ndarray) -> float | None:
    return _corr(pd.Series(a).rank().to_numpy(), pd.Series(b).rank().to_numpy())


def auc(y: np.ndarray, score: np.ndarray) -> float | None:
    """Area under the ROC curve by the rank-sum formula (ties get average ranks)."""
    pos = y == 1
    n_pos, n_neg = int(pos.sum()), int((~pos).sum())
    if n_pos == 0 or n_neg == 0:
        return None
    ranks = pd.Series(score).rank().to_numpy()
    return float((ranks[pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def evaluate(y: np.ndarray, pred: np.ndarray, ts: np.ndarray, symbols: np.ndarray, task: TaskType | str) -> dict[str, float | int | str | None]:
    """Metrics of `pred` against the realised target `y` on the holdout rows."""
    task = TaskType(task)
    y = np.asarray(y, dtype=np.float64)
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
        out["hit_rate"] = float(np.mean((pred > 0.5) == (y == 1))) if len(y) else None
    else:
        ss_tot = float(((y - y.mean()) ** 2).sum()) if len(y) else 0.0
        out["r2"] = float(1 - ((y - pred) ** 2).sum() / ss_tot) if ss_tot > 0 else None
        nz = y != 0
        out["hit_rate"] = float(np.mean(np.sign(pred[nz]) == np.sign(y[nz]))) if nz.any() else None
    return out
