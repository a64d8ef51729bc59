"""Families built on other CPU families' out-of-fold predictions: ensemble (stacking) and meta_learning; loaded by the registry.

Both run a purged, expanding walk-forward (`trainpipe.cv.purged_walk_forward`, purge = target horizon)
over the training rows: each base family is fitted on the past and predicts the next block, so every
out-of-fold (OOF) prediction is truly out of sample and time-ordered. The base families are then refitted
on all training rows and saved under `base/<family>/` with their own preprocessing and checksums.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from trainpipe.contract.names import TaskType
from trainpipe.families.base import FamilyParamError, Rows, Trainer
from trainpipe.families.catalogue import FAMILIES
from trainpipe.families.preprocessing import select_features

_STACKABLE = {name for name, spec in FAMILIES.items() if spec.stage == "cpu" and name not in ("ensemble", "meta_learning")}


class _OOFStacker(Trainer):
    """Shared machinery: walk-forward OOF predictions of the base families, refit, save/load of the bases."""

    libs = ("lightgbm", "xgboost", "catboost", "ngboost", "ruptures")

    def _check(self, params: dict[str, Any]) -> None:
        bases = params["base_families"]
        bad = [b for b in bases if b not in _STACKABLE]
        if bad or len(set(bases)) != len(bases) or len(bases) < 2:
            raise FamilyParamError(
                f"family {self.family!r}: parameter 'base_families' must list at least two distinct CPU families from "
                f"{sorted(_STACKABLE)}, got {bases!r}"
            )
        unknown = [k for k in params["base_params"] if k not in bases]
        if unknown:
            raise FamilyParamError(f"family {self.family!r}: parameter 'base_params' has entries for {unknown} which are not in base_families")

    def _make_base(self, family: str) -> Trainer:
        from trainpipe.families.registry import make_trainer

        return make_trainer(family, features=self.features, target=self.target, task=self.task,
                            params=self.params["base_params"].get(family), seed=self.seed, horizon_bars=self.horizon_bars)

    def _oof(self, frame: pd.DataFrame, rows: Rows) -> tuple[np.ndarray, np.ndarray]:
        """(row indices with OOF predictions, matrix rows × base families), in time order."""
        from trainpipe.cv import purged_walk_forward

        idx_parts, pred_parts = [], []
        for fold in purged_walk_forward(rows.ts, self.params["n_folds"], purge=self.horizon_bars, min_train=10):
            train = frame.iloc[fold.train]
            if self.task is TaskType.BINARY and train[self.target].nunique() < 2:
                continue
            test = frame.iloc[fold.test]
            preds = [self._make_base(b).fit(train).predict(test) for b in self.params["base_families"]]
            idx_parts.append(fold.test)
            pred_parts.append(np.column_stack(preds))
        if not idx_parts:
            raise ValueError(self.err("too little history for walk-forward out-of-fold predictions; lower n_folds or give more rows"))
        return np.concatenate(idx_parts), np.vstack(pred_parts)

    def _fit(self, x: np.ndarray, y: np.ndarray, rows: Rows, frame: pd.DataFrame) -> None:
        oof_idx, oof = self._oof(frame, rows)
        self._fit_combiner(oof, y[oof_idx], rows.ts[oof_idx])
        self.bases = [self._make_base(b).fit(frame) for b in self.params["base_families"]]
        self.extra_meta["n_oof_rows"] = int(len(oof_idx))

    def _base_matrix(self, frame: pd.DataFrame) -> np.ndarray:
        return np.column_stack([b.predict(frame) for b in self.bases])

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        select_features(frame, self.features, self.family)  # a missing feature names this family, not a base
        return np.asarray(self._combine(self._base_matrix(frame)), dtype=np.float64)

    def _predict(self, x: np.ndarray, rows: Rows | None) -> np.ndarray:  # predict() is overridden: bases need the frame
        raise NotImplementedError

    def _fit_combiner(self, oof: np.ndarray, y: np.ndarray, ts: np.ndarray) -> None:
        raise NotImplementedError

    def _combine(self, preds: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _save(self, folder: Path) -> list[str]:
        names = []
        for family, base in zip(self.params["base_families"], self.bases, strict=True):
            sub = folder / "base" / family
            meta = base.save(sub)
            names += [f"base/{family}/{n}" for n in (*meta["files"], "model_meta.json")]
        (folder / "combiner.json").write_text(json.dumps(self._combiner_state()))
        return [*names, "combiner.json"]

    def _load(self, folder: Path) -> None:
        from trainpipe.families.registry import load_model

        self.bases = [load_model(folder / "base" / family) for family in self.params["base_families"]]
        self._set_combiner_state(json.loads((folder / "combiner.json").read_text()))

    def _combiner_state(self) -> dict:
        raise NotImplementedError

    def _set_combiner_state(self, state: dict) -> None:
        raise NotImplementedError


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-6, 1 - 1e-6)
    return np.log(p / (1 - p))


class EnsembleTrainer(_OOFStacker):
    """Stacking: a non-negative ridge (logistic on logits for binary) over standardised OOF predictions of the bases."""

    family = "ensemble"

    def _inputs(self, preds: np.ndarray) -> np.ndarray:
        z = _logit(preds) if self.task is TaskType.BINARY else preds
        return (z - self.mu) / self.sd

    def _fit_combiner(self, oof: np.ndarray, y: np.ndarray, ts: np.ndarray) -> None:
        from sklearn.linear_model import LogisticRegression, Ridge

        z = _logit(oof) if self.task is TaskType.BINARY else oof
        self.mu, sd = z.mean(axis=0), z.std(axis=0)
        self.sd = np.where(sd > 1e-12, sd, 1.0)
        zs = (z - self.mu) / self.sd
        if self.task is TaskType.BINARY:
            model = LogisticRegression(C=1.0 / max(self.params["alpha"], 1e-6), max_iter=500).fit(zs, y)
            self.coef, self.intercept = model.coef_[0], float(model.intercept_[0])
        else:
            # positive=True: a base can be switched off but never shorted (Breiman's stacked regression)
            model = Ridge(alpha=self.params["alpha"], positive=True).fit(zs, y)
            self.coef, self.intercept = model.coef_, float(model.intercept_)
        self.extra_meta["stack_weights"] = dict(zip(self.params["base_families"], map(float, self.coef), strict=True))

    def _combine(self, preds: np.ndarray) -> np.ndarray:
        raw = self._inputs(preds) @ self.coef + self.intercept
        return 0.5 * (1 + np.tanh(0.5 * raw)) if self.task is TaskType.BINARY else raw

    def _combiner_state(self) -> dict:
        return {"mu": self.mu.tolist(), "sd": self.sd.tolist(), "coef": np.asarray(self.coef).tolist(), "intercept": self.intercept}

    def _set_combiner_state(self, state: dict) -> None:
        self.mu, self.sd = np.asarray(state["mu"]), np.asarray(state["sd"])
        self.coef, self.intercept = np.asarray(state["coef"]), state["intercept"]


class MetaLearningTrainer(_OOFStacker):
    """Weights the base families by their *recent* out-of-sample skill: softmax(IC / temperature).

    IC is the Pearson correlation of each base's OOF prediction with the target over the latest
    `recent_fraction` of OOF timestamps (so a family that worked long ago but not lately loses weight).
    The forecast is the weighted mean of the refitted bases' predictions (probabilities for binary).
    """

    family = "meta_learning"

    def _fit_combiner(self, oof: np.ndarray, y: np.ndarray, ts: np.ndarray) -> None:
        uniq = np.unique(ts)
        cutoff = uniq[int(np.floor(len(uniq) * (1 - self.params["recent_fraction"])))] if len(uniq) > 1 else uniq[0]
        recent = ts >= cutoff
        ics = []
        for k in range(oof.shape[1]):
            a, b = oof[recent, k], y[recent]
            ic = float(np.corrcoef(a, b)[0, 1]) if a.std() > 0 and b.std() > 0 else 0.0
            ics.append(ic if np.isfinite(ic) else 0.0)
        logits = np.asarray(ics) / self.params["temperature"]
        w = np.exp(logits - logits.max())
        self.weights = w / w.sum()
        self.extra_meta["recent_ic"] = dict(zip(self.params["base_families"], ics, strict=True))
        self.extra_meta["weights"] = dict(zip(self.params["base_families"], map(float, self.weights), strict=True))

    def _combine(self, preds: np.ndarray) -> np.ndarray:
        return preds @ self.weights

    def _combiner_state(self) -> dict:
        return {"weights": self.weights.tolist()}

    def _set_combiner_state(self, state: dict) -> None:
        self.weights = np.asarray(state["weights"])
