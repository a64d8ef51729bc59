"""Gradient-boosted tree families: lightgbm, quantile_lightgbm, xgboost, catboost; loaded by the registry.

Each library is imported inside the trainer, so importing this module is cheap. Early stopping always
uses the time-ordered, purged tail of the training rows (`Trainer.tail_split`), never a random split.
Binary tasks use the library's logistic objective and return the probability of class 1.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from trainpipe.contract.names import TaskType
from trainpipe.families.base import FamilyParamError, Rows, Trainer, num_threads


def _lgb_params(p: dict[str, Any], seed: int, objective: str, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    out = {
        "objective": objective,
        "learning_rate": p["learning_rate"],
        "num_leaves": p["num_leaves"],
        "max_depth": p.get("max_depth", -1),
        "min_data_in_leaf": p["min_child_samples"],
        "bagging_fraction": p["subsample"],
        "bagging_freq": 1 if p["subsample"] < 1 else 0,
        "feature_fraction": p["colsample_bytree"],
        "lambda_l1": p.get("reg_alpha", 0.0),
        "lambda_l2": p.get("reg_lambda", 0.0),
        "seed": seed,
        "deterministic": True,
        "force_row_wise": True,  # with `deterministic`, the documented way to get identical models run to run
        "num_threads": num_threads(),
        "verbosity": -1,
    }
    out.update(extra or {})
    return out


def _train_lgb(params: dict[str, Any], x: np.ndarray, y: np.ndarray, fit_idx: np.ndarray, val_idx: np.ndarray, rounds: int, stop: int):
    import lightgbm as lgb

    min_leaf = int(params["min_data_in_leaf"])
    params = {**params, "min_data_in_leaf": max(1, min(min_leaf, len(fit_idx) // 10))}  # tiny sets still split
    train = lgb.Dataset(x[fit_idx], y[fit_idx], free_raw_data=True)
    if len(val_idx) and stop > 0:
        valid = lgb.Dataset(x[val_idx], y[val_idx], reference=train)
        booster = lgb.train(params, train, num_boost_round=rounds, valid_sets=[valid],
                            callbacks=[lgb.early_stopping(stop, verbose=False)])
    else:
        booster = lgb.train(params, train, num_boost_round=rounds)
    return booster


class LightGBMTrainer(Trainer):
    """LightGBM GBDT: L2 regression or binary logloss; early stopping on the purged time-ordered tail."""

    family = "lightgbm"
    libs = ("lightgbm",)

    def _fit(self, x: np.ndarray, y: np.ndarray, rows: Rows, frame: pd.DataFrame) -> None:
        fit_idx, val_idx = self.tail_split(rows)
        objective = "binary" if self.task is TaskType.BINARY else "regression"
        p = self.params
        self.booster = _train_lgb(_lgb_params(p, self.seed, objective), x, y, fit_idx, val_idx, p["n_estimators"], p["early_stopping_rounds"])
        self.extra_meta["best_iteration"] = int(self.booster.best_iteration or self.booster.current_iteration())

    def _predict(self, x: np.ndarray, rows: Rows | None) -> np.ndarray:
        return self.booster.predict(x, num_iteration=self.extra_meta["best_iteration"])

    def _save(self, folder: Path) -> list[str]:
        self.booster.save_model(str(folder / "model.txt"))
        return ["model.txt"]

    def _load(self, folder: Path) -> None:
        import lightgbm as lgb

        self.booster = lgb.Booster(model_file=str(folder / "model.txt"))


class QuantileLightGBMTrainer(Trainer):
    """One LightGBM per quantile with the pinball (quantile) loss; `predict` is the median, `predict_quantiles` all of them."""

    family = "quantile_lightgbm"
    libs = ("lightgbm",)

    def _check(self, params: dict[str, Any]) -> None:
        qs = params["quantiles"]
        if not all(isinstance(q, float | int) and 0 < q < 1 for q in qs) or 0.5 not in qs or len(set(qs)) != len(qs):
            raise FamilyParamError(f"family {self.family!r}: parameter 'quantiles' must be distinct values in (0, 1) including 0.5, got {qs!r}")

    def _fit(self, x: np.ndarray, y: np.ndarray, rows: Rows, frame: pd.DataFrame) -> None:
        fit_idx, val_idx = self.tail_split(rows)
        p = self.params
        self.quantiles = sorted(float(q) for q in p["quantiles"])
        self.boosters = []
        for q in self.quantiles:
            params = _lgb_params({**p, "max_depth": -1}, self.seed, "quantile", {"alpha": q})
            self.boosters.append(_train_lgb(params, x, y, fit_idx, val_idx, p["n_estimators"], p["early_stopping_rounds"]))
        self.extra_meta["quantiles"] = self.quantiles
        self.extra_meta["best_iterations"] = [int(b.best_iteration or b.current_iteration()) for b in self.boosters]

    def _quantiles(self, x: np.ndarray) -> np.ndarray:
        preds = np.column_stack([b.predict(x, num_iteration=it) for b, it in zip(self.boosters, self.extra_meta["best_iterations"], strict=True)])
        return np.sort(preds, axis=1)  # rearrangement: quantile curves never cross

    def _predict(self, x: np.ndarray, rows: Rows | None) -> np.ndarray:
        return self._quantiles(x)[:, self.extra_meta["quantiles"].index(0.5)]

    def predict_quantiles(self, frame: pd.DataFrame) -> pd.DataFrame:
        from trainpipe.families.preprocessing import select_features

        assert self.pre is not None
        x = self.pre.transform(select_features(frame, self.features, self.family))
        return pd.DataFrame(self._quantiles(x), columns=[f"q{q:g}" for q in self.extra_meta["quantiles"]], index=frame.index)

    def _save(self, folder: Path) -> list[str]:
        names = []
        for i, booster in enumerate(self.boosters):
            name = f"model_q{i}.txt"
            booster.save_model(str(folder / name))
            names.append(name)
        return names

    def _load(self, folder: Path) -> None:
        import lightgbm as lgb

        self.boosters = [lgb.Booster(model_file=str(folder / f"model_q{i}.txt")) for i in range(len(self.extra_meta["quantiles"]))]


class XGBoostTrainer(Trainer):
    """XGBoost `hist` trees on CPU (the CPU stage hides GPUs): squared error or logistic, time-ordered early stopping."""

    family = "xgboost"
    libs = ("xgboost",)

    def _fit(self, x: np.ndarray, y: np.ndarray, rows: Rows, frame: pd.DataFrame) -> None:
        import xgboost as xgb

        fit_idx, val_idx = self.tail_split(rows)
        p = self.params
        params = {
            "objective": "binary:logistic" if self.task is TaskType.BINARY else "reg:squarederror",
            "tree_method": "hist",
            "device": "cpu",
            "eta": p["learning_rate"],
            "max_depth": p["max_depth"],
            "min_child_weight": p["min_child_weight"],
            "subsample": p["subsample"],
            "colsample_bytree": p["colsample_bytree"],
            "alpha": p["reg_alpha"],
            "lambda": p["reg_lambda"],
            "seed": self.seed,
            "nthread": num_threads(),
            "verbosity": 0,
        }
        dtrain = xgb.DMatrix(x[fit_idx], label=y[fit_idx])
        kwargs: dict[str, Any] = {}
        if len(val_idx) and p["early_stopping_rounds"] > 0:
            kwargs = {"evals": [(xgb.DMatrix(x[val_idx], label=y[val_idx]), "tail")], "early_stopping_rounds": p["early_stopping_rounds"]}
        self.booster = xgb.train(params, dtrain, num_boost_round=p["n_estimators"], verbose_eval=False, **kwargs)
        best = getattr(self.booster, "best_iteration", None)
        self.extra_meta["n_trees"] = int(best + 1) if kwargs and best is not None else int(self.booster.num_boosted_rounds())

    def _predict(self, x: np.ndarray, rows: Rows | None) -> np.ndarray:
        import xgboost as xgb

        return self.booster.predict(xgb.DMatrix(x), iteration_range=(0, self.extra_meta["n_trees"]))

    def _save(self, folder: Path) -> list[str]:
        self.booster.save_model(str(folder / "model.ubj"))
        return ["model.ubj"]

    def _load(self, folder: Path) -> None:
        import xgboost as xgb

        self.booster = xgb.Booster(params={"nthread": num_threads()})
        self.booster.load_model(str(folder / "model.ubj"))


class CatBoostTrainer(Trainer):
    """CatBoost oblivious trees: RMSE or Logloss, best iteration on the time-ordered tail (`use_best_model`)."""

    family = "catboost"
    libs = ("catboost",)

    def _fit(self, x: np.ndarray, y: np.ndarray, rows: Rows, frame: pd.DataFrame) -> None:
        from catboost import CatBoostClassifier, CatBoostRegressor

        fit_idx, val_idx = self.tail_split(rows)
        p = self.params
        kwargs = {
            "iterations": p["n_estimators"],
            "learning_rate": p["learning_rate"],
            "depth": p["depth"],
            "l2_leaf_reg": p["l2_leaf_reg"],
            "random_seed": self.seed,
            "thread_count": num_threads(),
            "allow_writing_files": False,  # catboost_info/ would land in the working directory
            "verbose": False,
        }
        cls = CatBoostClassifier if self.task is TaskType.BINARY else CatBoostRegressor
        self.model = cls(**kwargs)
        fit_kwargs: dict[str, Any] = {}
        if len(val_idx) and p["early_stopping_rounds"] > 0:
            fit_kwargs = {"eval_set": (x[val_idx], y[val_idx]), "early_stopping_rounds": p["early_stopping_rounds"], "use_best_model": True}
        self.model.fit(x[fit_idx], y[fit_idx], **fit_kwargs)
        self.extra_meta["tree_count"] = int(self.model.tree_count_)

    def _predict(self, x: np.ndarray, rows: Rows | None) -> np.ndarray:
        if self.task is TaskType.BINARY:
            return self.model.predict_proba(x)[:, 1]
        return self.model.predict(x)

    def _save(self, folder: Path) -> list[str]:
        self.model.save_model(str(folder / "model.cbm"))
        return ["model.cbm"]

    def _load(self, folder: Path) -> None:
        from catboost import CatBoostClassifier, CatBoostRegressor

        self.model = CatBoostClassifier() if self.task is TaskType.BINARY else CatBoostRegressor()
        self.model.load_model(str(folder / "model.cbm"))
