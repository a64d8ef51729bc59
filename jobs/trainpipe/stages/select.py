"""Feature selection: a weighted consensus of importance methods per target, with support and stability.

Called by `trainpipe select` (and the local runner). Pure over a loaded frame: no file I/O here.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from trainpipe.contract.names import TIMESTAMP_COLUMN, Stability, TaskType
from trainpipe.contract.pipeline import PipelineSpec
from trainpipe.cv import purged_holdout
from trainpipe.stages import metrics
from trainpipe.stages.rank import BIN_SAMPLE_ROWS, MAX_BIN

# Weights of each method in the consensus; permutation importance is measured out of sample, so it counts most.
METHOD_WEIGHTS: Mapping[str, float] = {
    "lightgbm_gain": 1.0,
    "xgboost_gain": 1.0,
    "catboost": 1.0,
    "permutation": 1.2,
    "mutual_info": 0.8,
}
# A method "supports" a feature when it gives it at least this share of a uniform allotment (1/F).
SUPPORT_SHARE = 0.25
MI_MAX_ROWS = 4_000
PERMUTATION_REPEATS = 3
TREES = 150

# Stability of the selected set against the previous run (overlap = Jaccard of the sets, tau = Kendall on common ranks).
STABLE_OVERLAP, STABLE_TAU = 0.7, 0.6
DRIFTING_OVERLAP, DRIFTING_TAU = 0.5, 0.4


@dataclass(frozen=True)
class SelectParams:
    methods: tuple[str, ...]
    min_support: int
    top_m: int
    holdout_fraction: float
    embargo_bars: int
    seed: int
    threads: int = 2

    @classmethod
    def from_spec(cls, spec: PipelineSpec, threads: int = 2) -> SelectParams:
        return cls(tuple(spec.selection.methods), spec.selection.min_support, spec.features.top_m, 0.2, spec.ranking.embargo_bars, spec.seed, threads)


@dataclass(frozen=True)
class Selection:
    target: str
    features: tuple[str, ...]  # selected, best first
    scores: pd.DataFrame  # one row per candidate feature: per-method normalised scores, consensus, support, selected


@dataclass(frozen=True)
class StabilityReport:
    stability: Stability
    overlap: float | None
    kendall_tau: float | None
    previous: tuple[str, ...] | None


def normalise(raw: np.ndarray) -> np.ndarray:
    """Non-negative shares summing to 1; NaN/inf/negative count as 0; all-zero stays all-zero."""
    v = np.where(np.isfinite(raw), raw, 0.0)
    v = np.clip(v, 0.0, None)
    total = v.sum()
    return v / total if total > 0 else v


def consensus(method_scores: Mapping[str, np.ndarray], features: Sequence[str], min_support: int, top_m: int) -> pd.DataFrame:
    """Weighted mean of normalised scores; a feature needs support from `min_support` methods to be selected."""
    names = list(method_scores)
    table = pd.DataFrame({m: normalise(np.asarray(method_scores[m], dtype=float)) for m in names}, index=list(features))
    weights = np.array([METHOD_WEIGHTS.get(m, 1.0) for m in names])
    table["consensus"] = (table[names].to_numpy() * weights).sum(axis=1) / weights.sum()
    threshold = SUPPORT_SHARE / max(1, len(features))
    table["support"] = (table[names].to_numpy() >= threshold).sum(axis=1)
    table.index.name = "feature"
    table = table.reset_index()
    table["_key"] = -table["consensus"].round(12)
    table = table.sort_values(["_key", "feature"], kind="stable").drop(columns="_key").reset_index(drop=True)
    eligible = table["support"] >= min_support
    chosen = table.loc[eligible, "feature"].head(top_m)
    table["selected"] = table["feature"].isin(set(chosen))
    return table


def stability(current: Sequence[str], previous: Sequence[str] | None) -> StabilityReport:
    """Compare with the previous run's selection; no previous run means UNKNOWN (first runs are allowed by routing)."""
    if not previous:
        return StabilityReport(Stability.UNKNOWN, None, None, None)
    cur, prev = list(current), list(previous)
    union = set(cur) | set(prev)
    overlap = len(set(cur) & set(prev)) / len(union) if union else 1.0
    common = [f for f in cur if f in set(prev)]
    tau = 1.0
    if len(common) >= 2:
        from scipy.stats import kendalltau

        tau = float(kendalltau([cur.index(f) for f in common], [prev.index(f) for f in common]).statistic)
        tau = 0.0 if not np.isfinite(tau) else tau
    if overlap >= STABLE_OVERLAP and tau >= STABLE_TAU:
        state = Stability.STABLE
    elif overlap >= DRIFTING_OVERLAP and tau >= DRIFTING_TAU:
        state = Stability.DRIFTING
    else:
        state = Stability.DIVERGED
    return StabilityReport(state, round(overlap, 6), round(tau, 6), tuple(prev))


def select_features(
    frame: pd.DataFrame, target: str, task: TaskType, features: Sequence[str], horizon_bars: int, params: SelectParams, x: np.ndarray | None = None
) -> Selection:
    """Consensus selection for one target; `x` may carry the features as a float32 matrix aligned with `frame`."""
    features = list(features)
    labelled = frame[target].notna().to_numpy()
    if x is None:
        x = frame[features].to_numpy(dtype=np.float32)
    # Only the labelled rows' features are copied, never the whole frame.
    x = x if labelled.all() else x[labelled]
    y = frame[target].to_numpy(dtype=np.float64)[labelled]
    ts = frame[TIMESTAMP_COLUMN].to_numpy()[labelled]
    if task is not TaskType.REGRESSION:
        y = np.searchsorted(np.unique(y), y).astype(np.float64)
    runners = {
        "lightgbm_gain": _lightgbm_gain,
        "xgboost_gain": _xgboost_gain,
        "catboost": _catboost,
        "permutation": _permutation,
        "mutual_info": _mutual_info,
    }
    method_scores = {}
    for method in params.methods:
        method_scores[method] = runners[method](x, y, task, ts, horizon_bars, params)
    table = consensus(method_scores, features, params.min_support, params.top_m)
    chosen = tuple(table.loc[table["selected"], "feature"])
    return Selection(target=target, features=chosen, scores=table)


def _n_classes(y: np.ndarray) -> int:
    return int(np.unique(y).size)


def _lightgbm_gain(x, y, task, ts, horizon_bars, params) -> np.ndarray:
    booster = _lgbm_train(x, y, task, params)
    return booster.feature_importance(importance_type="gain")


def _lgbm_train(x, y, task, params, rows: np.ndarray | None = None):
    """LightGBM on float32 features through the native API: no float64 copy, and `rows` subsets the binned data."""
    import lightgbm as lgb

    n_classes = _n_classes(y)
    p = {"learning_rate": 0.05, "num_leaves": 15, "min_data_in_leaf": 50, "bagging_fraction": 0.8, "bagging_freq": 1,
         "feature_fraction": 0.8, "lambda_l2": 1.0, "seed": params.seed, "num_threads": params.threads, "verbose": -1,
         "deterministic": True, "force_row_wise": True, "max_bin": MAX_BIN}
    if task is TaskType.REGRESSION:
        p["objective"] = "regression"
    elif n_classes <= 2:
        p["objective"] = "binary"
    else:
        p.update(objective="multiclass", num_class=n_classes)
    data = lgb.Dataset(x, label=y, params={"max_bin": MAX_BIN, "bin_construct_sample_cnt": BIN_SAMPLE_ROWS, "verbose": -1}, free_raw_data=True)
    if rows is not None:
        data = data.construct().subset(rows)
    return lgb.train(p, data, num_boost_round=TREES)


def _xgboost_gain(x, y, task, ts, horizon_bars, params) -> np.ndarray:
    import xgboost as xgb

    common = dict(n_estimators=TREES, learning_rate=0.05, max_depth=4, subsample=0.8, colsample_bytree=0.8, reg_lambda=1.0,
                  tree_method="hist", max_bin=64, random_state=params.seed, n_jobs=params.threads)
    model = xgb.XGBRegressor(**common) if task is TaskType.REGRESSION else xgb.XGBClassifier(**common)
    model.fit(x, y)
    gains = model.get_booster().get_score(importance_type="total_gain")
    return np.array([gains.get(f"f{i}", 0.0) for i in range(x.shape[1])])


def _catboost(x, y, task, ts, horizon_bars, params) -> np.ndarray:
    import catboost as cb

    common = dict(iterations=TREES, learning_rate=0.08, depth=4, random_seed=params.seed, thread_count=params.threads,
                  verbose=False, allow_writing_files=False, border_count=64)
    model = cb.CatBoostRegressor(**common) if task is TaskType.REGRESSION else cb.CatBoostClassifier(**common)
    pool = cb.Pool(x, y)
    pool.quantize(border_count=64)  # drops the raw float copy; training only needs the borders
    model.fit(pool)
    return np.asarray(model.get_feature_importance(type="PredictionValuesChange"))


def _permutation(x, y, task, ts, horizon_bars, params) -> np.ndarray:
    """Drop in out-of-sample skill when one feature is shuffled, on a purged time-ordered holdout."""
    fold = purged_holdout(ts, params.holdout_fraction, horizon_bars + params.embargo_bars)
    booster = _lgbm_train(x, y, task, params, rows=fold.train)
    xt, yt = x[fold.test], y[fold.test]
    score = _skill_fn(task, booster, yt)
    base = score(xt)
    rng = np.random.default_rng(params.seed)
    drops = np.zeros(x.shape[1])
    for j in range(x.shape[1]):
        col = xt[:, j].copy()
        total = 0.0
        for _ in range(PERMUTATION_REPEATS):
            xt[:, j] = rng.permutation(col)
            total += base - score(xt)
        xt[:, j] = col
        drops[j] = total / PERMUTATION_REPEATS
    return drops


def _skill_fn(task, booster, y):
    if task is TaskType.REGRESSION:
        return lambda x: metrics.spearman(y, booster.predict(x))
    if _n_classes(y) <= 2:
        return lambda x: metrics.auc(y, booster.predict(x))
    return lambda x: float((np.argmax(booster.predict(x), axis=1) == y).mean())


def _mutual_info(x, y, task, ts, horizon_bars, params) -> np.ndarray:
    from sklearn.feature_selection import mutual_info_classif, mutual_info_regression

    rng = np.random.default_rng(params.seed)
    rows = np.sort(rng.choice(len(y), size=min(MI_MAX_ROWS, len(y)), replace=False))
    xs = np.nan_to_num(x[rows], nan=0.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if task is TaskType.REGRESSION:
            return mutual_info_regression(xs, y[rows], random_state=params.seed, n_neighbors=5)
        return mutual_info_classif(xs, y[rows].astype(int), random_state=params.seed, n_neighbors=5)
