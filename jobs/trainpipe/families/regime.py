"""Regime families: gmm_regime (Gaussian-mixture regimes, soft-blended experts) and change_point (ruptures segments).

Loaded by the registry. Both fit one ridge (regression) or logistic (binary) model per regime on
standardised features and pickle the sklearn objects (checksummed in model_meta.json).
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from trainpipe.contract.names import TaskType
from trainpipe.families.base import Rows, Trainer


def _expert(task: TaskType, alpha: float, seed: int):
    from sklearn.linear_model import LogisticRegression, Ridge

    if task is TaskType.BINARY:
        return LogisticRegression(C=1.0 / max(alpha, 1e-6), max_iter=500, random_state=seed)
    return Ridge(alpha=alpha)


def _expert_predict(model: Any, task: TaskType, x: np.ndarray) -> np.ndarray:
    return model.predict_proba(x)[:, 1] if task is TaskType.BINARY else model.predict(x)


def _dump(path: Path, payload: dict) -> None:
    with open(path, "wb") as handle:
        pickle.dump(payload, handle, protocol=5)


def _read(path: Path) -> dict:
    with open(path, "rb") as handle:  # checksum verified by Trainer.load before unpickling
        return pickle.load(handle)  # noqa: S301


class GMMRegimeTrainer(Trainer):
    """Regimes = components of a Gaussian mixture on the PCA of the features (one row's own features only).

    One expert per regime is fitted on all rows weighted by that regime's posterior (soft assignment);
    a prediction is the posterior-weighted blend of the experts for that row.
    """

    family = "gmm_regime"
    scale = True

    def _fit(self, x: np.ndarray, y: np.ndarray, rows: Rows, frame: pd.DataFrame) -> None:
        from sklearn.decomposition import PCA
        from sklearn.mixture import GaussianMixture

        p = self.params
        self.pca = PCA(n_components=min(p["n_components"], x.shape[1], len(x)), random_state=self.seed).fit(x)
        comps = self.pca.transform(x)
        self.gmm = GaussianMixture(n_components=p["n_regimes"], covariance_type=p["covariance_type"], reg_covar=1e-4,
                                   max_iter=p["max_iter"], random_state=self.seed).fit(comps)
        resp = self.gmm.predict_proba(comps)
        self.experts = []
        for k in range(p["n_regimes"]):
            weight = resp[:, k] + 1e-6  # a regime with ~no mass still gets a (heavily regularised, global-like) expert
            self.experts.append(_expert(self.task, p["alpha"], self.seed).fit(x, y, sample_weight=weight))
        self.extra_meta["regime_weights"] = [float(v) for v in self.gmm.weights_]

    def _predict(self, x: np.ndarray, rows: Rows | None) -> np.ndarray:
        resp = self.gmm.predict_proba(self.pca.transform(x))
        preds = np.column_stack([_expert_predict(m, self.task, x) for m in self.experts])
        return (resp * preds).sum(axis=1)

    def _save(self, folder: Path) -> list[str]:
        _dump(folder / "model.pkl", {"pca": self.pca, "gmm": self.gmm, "experts": self.experts})
        return ["model.pkl"]

    def _load(self, folder: Path) -> None:
        raw = _read(folder / "model.pkl")
        self.pca, self.gmm, self.experts = raw["pca"], raw["gmm"], raw["experts"]


class ChangePointTrainer(Trainer):
    """Change points found by ruptures' binary segmentation on the training period's target series.

    The series is, per timestamp, the cross-sectional mean of the target and its absolute value
    (shifts in level and in volatility), standardised; the cost is `l2`, the penalty
    `penalty · log(T) · 2` (BIC-like). One expert is fitted per segment; predictions use the expert of
    the latest segment (the regime in force at the end of training), the others are kept for audit.
    """

    family = "change_point"
    scale = True
    libs = ("ruptures",)

    def _fit(self, x: np.ndarray, y: np.ndarray, rows: Rows, frame: pd.DataFrame) -> None:
        import ruptures as rpt

        p = self.params
        uniq, pos = np.unique(rows.ts, return_inverse=True)
        n_ts = len(uniq)
        level = np.bincount(pos, weights=y) / np.bincount(pos)
        signal = np.column_stack([level, np.abs(level - level.mean())])
        signal = (signal - signal.mean(axis=0)) / np.where(signal.std(axis=0) > 0, signal.std(axis=0), 1.0)
        min_size = max(5, int(p["min_segment_fraction"] * n_ts))
        bkps: list[int] = [n_ts]
        if n_ts >= 2 * min_size:
            algo = rpt.Binseg(model="l2", min_size=min_size, jump=max(1, min_size // 10)).fit(signal)
            bkps = algo.predict(pen=p["penalty"] * np.log(n_ts) * signal.shape[1])
            if len(bkps) - 1 > p["max_breakpoints"]:
                bkps = algo.predict(n_bkps=p["max_breakpoints"])
        starts = [0, *bkps[:-1]]
        self.segments = []
        for lo, hi in zip(starts, bkps, strict=True):
            mask = (pos >= lo) & (pos < hi)
            usable = mask.sum() >= 10 and (self.task is not TaskType.BINARY or len(np.unique(y[mask])) == 2)
            model = _expert(self.task, p["alpha"], self.seed).fit(x[mask], y[mask]) if usable else None
            self.segments.append({"start": str(uniq[lo]), "end": str(uniq[hi - 1]), "rows": int(mask.sum()), "model": model})
        # The latest segment predicts; if it could not be fitted (too few rows / one class) fall back to all rows.
        self.latest = self.segments[-1]["model"] or _expert(self.task, p["alpha"], self.seed).fit(x, y)
        self.extra_meta["segments"] = [{k: v for k, v in s.items() if k != "model"} for s in self.segments]
        self.extra_meta["latest_segment_fallback"] = self.segments[-1]["model"] is None

    def _predict(self, x: np.ndarray, rows: Rows | None) -> np.ndarray:
        return _expert_predict(self.latest, self.task, x)

    def _save(self, folder: Path) -> list[str]:
        _dump(folder / "model.pkl", {"segments": self.segments, "latest": self.latest})
        return ["model.pkl"]

    def _load(self, folder: Path) -> None:
        raw = _read(folder / "model.pkl")
        self.segments, self.latest = raw["segments"], raw["latest"]
