"""Linear families written in numpy/scipy: ftrl_proximal (true FTRL-Proximal) and reward_based (Sharpe objective).

Loaded by the registry. Both standardise features (the base Preprocessor) and save their weights as JSON.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from trainpipe.contract.names import TaskType
from trainpipe.families.base import FamilyParamError, Rows, Trainer


def _sigmoid(z: np.ndarray | float) -> np.ndarray | float:
    return 0.5 * (1.0 + np.tanh(0.5 * np.asarray(z)))  # overflow-free logistic


class FTRLProximalTrainer(Trainer):
    """FTRL-Proximal (McMahan et al., "Ad Click Prediction: a View from the Trenches", KDD 2013, Algorithm 1).

    Per coordinate i the learner keeps z_i and n_i; the weight is closed-form:
        w_i = 0                                                  if |z_i| <= l1
        w_i = -(z_i - sign(z_i) l1) / ((beta + sqrt(n_i)) / alpha + l2)   otherwise
    and after the gradient g of row t:  sigma_i = (sqrt(n_i + g_i^2) - sqrt(n_i)) / alpha,
    z_i += g_i - sigma_i w_i,  n_i += g_i^2.  Rows are visited once per epoch in time order (the
    online setting), so there is nothing random and the seed has no effect. Squared loss on the
    standardised target for regression (the prediction is mapped back), log loss for binary.
    """

    family = "ftrl_proximal"
    scale = True

    def _check(self, params: dict[str, Any]) -> None:
        if params["alpha"] <= 0:
            raise FamilyParamError(f"family {self.family!r}: parameter 'alpha' (the per-coordinate learning rate) must be > 0, got {params['alpha']!r}")

    def _weights(self, z: np.ndarray, n: np.ndarray) -> np.ndarray:
        p = self.params
        shrunk = z - np.sign(z) * p["l1"]
        return np.where(np.abs(z) <= p["l1"], 0.0, -shrunk / ((p["beta"] + np.sqrt(n)) / p["alpha"] + p["l2"]))

    def _fit(self, x: np.ndarray, y: np.ndarray, rows: Rows, frame: pd.DataFrame) -> None:
        binary = self.task is TaskType.BINARY
        self.y_mean, self.y_std = (0.0, 1.0) if binary else (float(y.mean()), float(y.std() or 1.0))
        target = y if binary else (y - self.y_mean) / self.y_std
        xb = np.hstack([x, np.ones((len(x), 1))])  # last coordinate is the bias
        z = np.zeros(xb.shape[1])
        n = np.zeros(xb.shape[1])
        alpha = self.params["alpha"]
        for _ in range(self.params["epochs"]):
            for t in range(len(xb)):
                xt = xb[t]
                w = self._weights(z, n)
                raw = float(xt @ w)
                pred = float(_sigmoid(raw)) if binary else raw
                g = (pred - target[t]) * xt
                sigma = (np.sqrt(n + g * g) - np.sqrt(n)) / alpha
                z += g - sigma * w
                n += g * g
        self.w = self._weights(z, n)
        self.extra_meta["nonzero_weights"] = int(np.count_nonzero(self.w[:-1]))

    def _predict(self, x: np.ndarray, rows: Rows | None) -> np.ndarray:
        raw = x @ self.w[:-1] + self.w[-1]
        if self.task is TaskType.BINARY:
            return _sigmoid(raw)
        return raw * self.y_std + self.y_mean

    def _save(self, folder: Path) -> list[str]:
        (folder / "model.json").write_text(json.dumps({"w": self.w.tolist(), "y_mean": self.y_mean, "y_std": self.y_std}))
        return ["model.json"]

    def _load(self, folder: Path) -> None:
        raw = json.loads((folder / "model.json").read_text())
        self.w, self.y_mean, self.y_std = np.asarray(raw["w"]), raw["y_mean"], raw["y_std"]


class RewardBasedTrainer(Trainer):
    """A linear trading rule trained on a return-based objective: the Sharpe ratio of its own P&L.

    Position p_t = tanh(x_t·w + b); realised reward r_t = p_t · y_t with y the target's forward
    return (for a binary target y is mapped to ±1, i.e. a sign-reward). The weights maximise
    mean(r)/std(r) − l2·|w|² with L-BFGS from a ridge start (deterministic, no sampling).
    Output: regression → c · p_t, with c the least-squares scale of y on p in training (so the
    forecast is in return units and R² is meaningful); binary → (1 + p_t) / 2 as a class-1 score.
    """

    family = "reward_based"
    scale = True

    def _fit(self, x: np.ndarray, y: np.ndarray, rows: Rows, frame: pd.DataFrame) -> None:
        from scipy.optimize import minimize

        binary = self.task is TaskType.BINARY
        reward = 2.0 * y - 1.0 if binary else y / (y.std() or 1.0)
        xb = np.hstack([x, np.ones((len(x), 1))])
        n, d = xb.shape
        l2 = self.params["l2"]
        # Ridge start scaled to moderate positions: tanh is then neither flat nor saturated.
        w0 = np.linalg.solve(xb.T @ xb + 1.0 * np.eye(d), xb.T @ reward)
        spread = float((xb @ w0).std())
        w0 = w0 * (0.5 / spread) if spread > 1e-12 else np.zeros(d)

        def objective(w: np.ndarray) -> tuple[float, np.ndarray]:
            pos = np.tanh(xb @ w)
            r = pos * reward
            m = r.mean()
            s = np.sqrt(r.var() + 1e-8)
            sharpe = m / s
            d_r = (1.0 / s) / n - m * (r - m) / (n * s**3)  # dSharpe/dr_t
            grad = xb.T @ (d_r * (1.0 - pos**2) * reward)
            penalty = l2 * float(w[:-1] @ w[:-1])
            grad_pen = np.r_[2 * l2 * w[:-1], 0.0]
            return -sharpe + penalty, -grad + grad_pen

        result = minimize(objective, w0, jac=True, method="L-BFGS-B", options={"maxiter": self.params["max_iter"]})
        self.w = result.x
        pos = np.tanh(xb @ self.w)
        self.scale_c = 1.0 if binary else float((pos @ y) / max(pos @ pos, 1e-12))
        self.extra_meta.update({"train_sharpe_per_bar": float(-result.fun), "optimizer_iterations": int(result.nit), "objective": "sharpe"})

    def _predict(self, x: np.ndarray, rows: Rows | None) -> np.ndarray:
        pos = np.tanh(x @ self.w[:-1] + self.w[-1])
        return (1.0 + pos) / 2.0 if self.task is TaskType.BINARY else self.scale_c * pos

    def _save(self, folder: Path) -> list[str]:
        (folder / "model.json").write_text(json.dumps({"w": self.w.tolist(), "scale_c": self.scale_c}))
        return ["model.json"]

    def _load(self, folder: Path) -> None:
        raw = json.loads((folder / "model.json").read_text())
        self.w, self.scale_c = np.asarray(raw["w"]), raw["scale_c"]
