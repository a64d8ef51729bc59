"""ngboost: natural-gradient boosting that predicts a distribution, not just a point; loaded by the registry.

Regression fits a Normal(loc, scale) per row (the loc is the point forecast; `predict_distribution`
gives both); binary fits a Bernoulli and returns P(class 1). Early stopping uses the purged,
time-ordered tail of the training rows, never ngboost's own random validation split.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pandas as pd

from trainpipe.contract.names import TaskType
from trainpipe.families.base import Rows, Trainer


class NGBoostTrainer(Trainer):
    """NGBoost with shallow regression trees as base learners (Normal for regression, Bernoulli for binary)."""

    family = "ngboost"
    libs = ("ngboost",)

    def _fit(self, x: np.ndarray, y: np.ndarray, rows: Rows, frame: pd.DataFrame) -> None:
        from ngboost import NGBClassifier, NGBRegressor
        from ngboost.distns import Bernoulli, Normal
        from sklearn.tree import DecisionTreeRegressor

        p = self.params
        base = DecisionTreeRegressor(criterion="squared_error", max_depth=p["max_depth"], random_state=self.seed)
        common = {"Base": base, "n_estimators": p["n_estimators"], "learning_rate": p["learning_rate"],
                  "minibatch_frac": p["minibatch_frac"], "random_state": self.seed, "verbose": False}
        if self.task is TaskType.BINARY:
            self.model = NGBClassifier(Dist=Bernoulli, **common)
        else:
            self.y_scale = float(y.std() or 1.0)  # returns are ~1e-2: a unit-scale target keeps the Normal's log-scale well conditioned
            self.model = NGBRegressor(Dist=Normal, **common)
        target = y.astype(np.int64) if self.task is TaskType.BINARY else y / self.y_scale
        fit_idx, val_idx = self.tail_split(rows)
        if len(val_idx) and p["early_stopping_rounds"] > 0:
            self.model.fit(x[fit_idx], target[fit_idx], X_val=x[val_idx], Y_val=target[val_idx], early_stopping_rounds=p["early_stopping_rounds"])
        else:
            self.model.fit(x[fit_idx], target[fit_idx])
        self.extra_meta["best_iteration"] = int(getattr(self.model, "best_val_loss_itr", None) or len(self.model.base_models))
        self.extra_meta["distribution"] = "Bernoulli" if self.task is TaskType.BINARY else "Normal"

    def _predict(self, x: np.ndarray, rows: Rows | None) -> np.ndarray:
        if self.task is TaskType.BINARY:
            return self.model.predict_proba(x, max_iter=self.extra_meta["best_iteration"])[:, 1]
        return self.model.predict(x, max_iter=self.extra_meta["best_iteration"]) * self.y_scale

    def predict_distribution(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Per-row Normal parameters (loc, scale) in target units; regression only."""
        from trainpipe.families.preprocessing import select_features

        assert self.pre is not None and self.task is TaskType.REGRESSION
        dist = self.model.pred_dist(self.pre.transform(select_features(frame, self.features, self.family)), max_iter=self.extra_meta["best_iteration"])
        return pd.DataFrame({"loc": dist.params["loc"] * self.y_scale, "scale": dist.params["scale"] * self.y_scale}, index=frame.index)

    def _save(self, folder: Path) -> list[str]:
        with open(folder / "model.pkl", "wb") as handle:
            pickle.dump({"model": self.model, "y_scale": getattr(self, "y_scale", 1.0)}, handle, protocol=5)
        return ["model.pkl"]

    def _load(self, folder: Path) -> None:
        with open(folder / "model.pkl", "rb") as handle:  # checksum verified by Trainer.load before unpickling
            raw = pickle.load(handle)  # noqa: S301
        self.model, self.y_scale = raw["model"], raw["y_scale"]
