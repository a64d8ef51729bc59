"""Feature selection: a weighted consensus of importance methods per target, with support, a null and stability.

Called by `trainpipe select` (and the local runner). Pure over a loaded frame: no file I/O here.

The consensus ranks features; it cannot say that none matters, so on pure noise it would always keep
`top_m`. The null can (`stages.null`): a feature may be selected only when its effect on the held-out
predictions correlates with the label (rank IC) more than it does with the labels rotated by whole
timestamps, in all but ALPHA of the rotations. Rotations, not row shuffles: they keep the labels'
autocorrelation (overlapping horizons) and each timestamp's cross-section, which set how far an IC
strays by chance; a row shuffle would make the null too narrow and let noise through. Each feature
faces its own bar: rank has already kept only targets with evidence of skill, and a bar set by the
best of all features kept nothing of real data on such targets. The effects come from the permutation
importance's predictions, so the null adds no model and no prediction. `SelectParams.null_gate` off
(evidence.trainAnyway on targets without evidence) keeps the consensus's top_m; the null's columns are
written either way.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from trainpipe.contract.names import Stability, TaskType
from trainpipe.contract.pipeline import PipelineSpec
from trainpipe.cv import purged_holdout
from trainpipe.data.frames import frame_ts
from trainpipe.memory import release
from trainpipe.stages import metrics, null
from trainpipe.stages.binned import binned_dataset, booster_params, subset
from trainpipe.stages.null import NullEvidence

# Weights of each method in the consensus; permutation importance is measured out of sample, so it counts most.
METHOD_WEIGHTS: Mapping[str, float] = {
    "lightgbm_gain": 1.0,
    "xgboost_gain": 1.0,
    "catboost": 1.0,
    "permutation": 1.2,
    "mutual_info": 0.8,
}
# Where the LightGBM runner leaves a target's NullEvidence among its method scores; it runs as a method would.
_NULL = "null"
# The order methods run in (not their order in the table): CatBoost's copy of the data is the largest,
# so it runs first, before the other libraries' leftovers (thread arenas, caches) sit under it.
_COMPUTE_ORDER = ("catboost", "lightgbm_gain", "permutation", _NULL, "xgboost_gain", "mutual_info")
# A method "supports" a feature when it gives it at least this share of a uniform allotment (1/F).
SUPPORT_SHARE = 0.25
MI_MAX_ROWS = 4_000
MI_MIN_KNOWN = 50  # sampled rows with a known value a feature needs for a mutual-information score
# Shuffles of each feature in permutation importance, at most; fewer on a large holdout (`permutation_repeats`).
PERMUTATION_REPEATS = 3
# Shuffled rows per feature that permutation importance aims at. Each shuffle costs one prediction of the
# whole holdout, the largest cost of select on a large panel; more shuffles only average the shuffle's noise,
# which a holdout of this many rows already averages over its rows. Small holdouts (the example data's is
# about 2,500 rows) keep all PERMUTATION_REPEATS.
PERMUTATION_ROWS = 15_000
TREES = 150

# Stability of the selected set against another ranked list (overlap = Jaccard of the sets, tau = Kendall on common ranks).
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
    # Only features whose held-out effect beats the rotated-label null (stages.null) may be selected;
    # off, the top_m by consensus are kept as before (the null's columns are still written).
    null_gate: bool = True

    @classmethod
    def from_spec(cls, spec: PipelineSpec, threads: int = 2) -> SelectParams:
        # Permutation importance scores on the latest share of the development rows, sized like the run's own holdout.
        return cls(tuple(spec.selection.methods), spec.selection.min_support, spec.features.top_m, spec.training.holdout_fraction,
                   spec.ranking.embargo_bars, spec.seed, threads)


@dataclass(frozen=True)
class Selection:
    target: str
    features: tuple[str, ...]  # selected, best first
    scores: pd.DataFrame  # one row per candidate feature: per-method normalised scores, consensus, support, null columns, selected
    # LightGBM's raw gains in the candidates' order (None when the method is not in the consensus): the
    # resampled stability check compares its resamples with this very booster instead of training it again.
    lightgbm_gains: np.ndarray | None = None


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


def consensus(
    method_scores: Mapping[str, np.ndarray], features: Sequence[str], min_support: int, top_m: int,
    null_evidence: NullEvidence | None = None, null_gate: bool = True,
) -> pd.DataFrame:
    """Weighted mean of normalised scores; a feature needs support from `min_support` methods to be selected.

    With `null_evidence` the table also holds each feature's held-out effect IC (`oos_ic`), the
    null's `null_threshold` and `beats_null`; with `null_gate` as well, only features that beat the null
    may be selected, so fewer than `top_m`, or none, can be.
    """
    names = list(method_scores)
    table = pd.DataFrame({m: normalise(np.asarray(method_scores[m], dtype=float)) for m in names}, index=list(features))
    weights = np.array([METHOD_WEIGHTS.get(m, 1.0) for m in names])
    table["consensus"] = (table[names].to_numpy() * weights).sum(axis=1) / weights.sum()
    threshold = SUPPORT_SHARE / max(1, len(features))
    table["support"] = (table[names].to_numpy() >= threshold).sum(axis=1)
    if null_evidence is not None:
        table["oos_ic"] = null_evidence.ics
        table["null_threshold"] = null_evidence.thresholds
        table["beats_null"] = null_evidence.beats()
    table.index.name = "feature"
    table = table.reset_index()
    table["_key"] = -table["consensus"].round(12)
    table = table.sort_values(["_key", "feature"], kind="stable").drop(columns="_key").reset_index(drop=True)
    eligible = table["support"] >= min_support
    if null_evidence is not None and null_gate:
        eligible &= table["beats_null"]
    chosen = table.loc[eligible, "feature"].head(top_m)
    table["selected"] = table["feature"].isin(set(chosen))
    return table


def stability(current: Sequence[str], previous: Sequence[str] | None) -> StabilityReport:
    """Compare with another ranked list (the previous run's selection, or a resample's); none means UNKNOWN.

    Routing never counts UNKNOWN as stable: `trainpipe.stages.stability` adds a resampled check, so a
    first run still has a measured state.
    """
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
    return StabilityReport(grade(overlap, tau), round(overlap, 6), round(tau, 6), tuple(prev))


def grade(overlap: float, tau: float) -> Stability:
    """The state of an overlap and a tau (or their means over resamples)."""
    if overlap >= STABLE_OVERLAP and tau >= STABLE_TAU:
        return Stability.STABLE
    if overlap >= DRIFTING_OVERLAP and tau >= DRIFTING_TAU:
        return Stability.DRIFTING
    return Stability.DIVERGED


@dataclass(frozen=True)
class TargetToSelect:
    target: str
    task: TaskType
    horizon_bars: int


@dataclass(frozen=True)
class _Labels:
    """One target's labelled rows of the shared feature matrix, and their labels (classes encoded 0..K-1)."""

    rows: np.ndarray  # int32 row indices into x, ascending (time order)
    y: np.ndarray
    ts: np.ndarray  # every row's timestamp (shared, not copied per target): ts[rows] are this target's
    task: TaskType
    horizon_bars: int


def select_features(
    frame: pd.DataFrame, target: str, task: TaskType, features: Sequence[str], horizon_bars: int, params: SelectParams, x: np.ndarray | None = None
) -> Selection:
    """Consensus selection for one target (see `select_all`)."""
    return select_all(frame, [TargetToSelect(target, task, horizon_bars)], features, params, x=x)[target]


def select_all(
    frame: pd.DataFrame,
    targets: Sequence[TargetToSelect],
    features: Sequence[str],
    params: SelectParams,
    x: np.ndarray | None = None,
    on_step: Callable[[str, str], None] | None = None,
) -> dict[str, Selection]:
    """Consensus selection for every target; `x` may carry the features as a float32 matrix aligned with `frame`.

    Method by method, not target by target: each library's copy of the data (LightGBM's bins, XGBoost's
    quantiles) is built once from the shared matrix for all targets and released before the next library
    builds its own, and a target's unlabelled rows are left out by row index or zero weight, never by
    copying the labelled rows. `on_step(target, method)` is called after each method of each target.
    """
    features = list(features)
    if x is None:
        x = frame[features].to_numpy(dtype=np.float32)
    ts = frame_ts(frame)

    def labels(t: TargetToSelect) -> _Labels:
        values = frame[t.target].to_numpy(dtype=np.float64)
        rows = np.flatnonzero(np.isfinite(values)).astype(np.int32)
        y = values[rows]
        del values
        if t.task is not TaskType.REGRESSION:
            y = np.searchsorted(np.unique(y), y).astype(np.float64)
        return _Labels(rows, y, ts, t.task, t.horizon_bars)

    runners: dict[str, Callable[..., Any]] = {
        "lightgbm_gain": _lightgbm_methods,
        "permutation": _lightgbm_methods,
        "xgboost_gain": _xgboost_gain,
        "catboost": _catboost,
        "mutual_info": _mutual_info,
        _NULL: _lightgbm_methods,
    }
    # The null needs a model trained on the purged development rows, so it runs with the LightGBM methods.
    computed = (*params.methods, _NULL)
    scores: dict[str, dict[str, Any]] = {t.target: {} for t in targets}
    done: set[str] = set()
    for method in sorted(computed, key=_COMPUTE_ORDER.index):
        if method in done:
            continue
        # LightGBM gain and permutation importance share one binned dataset, so they run together.
        wanted = [m for m in computed if runners[m] is runners[method]]
        # Labels are made per target when a method reaches it, so one target's arrays are alive at a time.
        results = runners[method](x, targets, labels, wanted, params, on_step)
        for t, by_method in zip(targets, results, strict=True):
            scores[t.target].update(by_method)
        done.update(wanted)
        release()  # this library's dataset is gone: return its pages before the next library builds its own
    out = {}
    for t in targets:
        method_scores = {m: scores[t.target][m] for m in params.methods}  # the spec's order, for the table's columns
        table = consensus(method_scores, features, params.min_support, params.top_m, scores[t.target].get(_NULL), params.null_gate)
        out[t.target] = Selection(target=t.target, features=tuple(table.loc[table["selected"], "feature"]), scores=table,
                                  lightgbm_gains=scores[t.target].get("lightgbm_gain"))
    return out


def _n_classes(y: np.ndarray) -> int:
    return int(np.unique(y).size)


def _lightgbm_methods(x, targets, labels, methods, params, on_step) -> list[dict[str, Any]]:
    """LightGBM gain, purged out-of-sample permutation importance and the null, every target on one binned dataset."""
    import lightgbm as lgb

    base = binned_dataset(x, params.seed)

    def train(rows: np.ndarray, y: np.ndarray, lab: _Labels):
        return lgb.train(booster_params(lab.task, _n_classes(lab.y), params.seed, params.threads), subset(base, rows, y), num_boost_round=TREES)

    out = []
    for t in targets:
        name, lab = t.target, labels(t)
        found = {}
        if "lightgbm_gain" in methods:
            found["lightgbm_gain"] = train(lab.rows, lab.y, lab).feature_importance(importance_type="gain")
            _step(on_step, name, "lightgbm_gain")
        if "permutation" in methods or _NULL in methods:
            booster, test = _holdout_model(lab, params, train)
            drops, evidence = _permutation(x, lab, test, booster, params.seed)
            del booster
            if _NULL in methods:
                found[_NULL] = evidence
            if "permutation" in methods:
                found["permutation"] = drops
                _step(on_step, name, "permutation")
            else:  # the null alone is not a step the caller counts
                release()
        out.append(found)
    return out


def _step(on_step, target: str, method: str) -> None:
    """One method finished one target: return its freed pages (see trainpipe.memory), then report."""
    release()
    if on_step is not None:
        on_step(target, method)


def _xgboost_gain(x, targets, labels, methods, params, on_step) -> list[dict[str, np.ndarray]]:
    """XGBoost total gain; one quantile matrix for every target, unlabelled rows weighted zero."""
    import xgboost as xgb

    data = xgb.QuantileDMatrix(x, max_bin=64, nthread=params.threads)
    out = []
    for t in targets:
        name, lab = t.target, labels(t)
        label, weight = _zero_weighted(len(x), lab)
        data.set_label(label)
        data.set_weight(weight)
        n_classes = _n_classes(lab.y)
        p = {"learning_rate": 0.05, "max_depth": 4, "subsample": 0.8, "colsample_bytree": 0.8, "reg_lambda": 1.0,
             "tree_method": "hist", "max_bin": 64, "seed": params.seed, "nthread": params.threads}
        if lab.task is TaskType.REGRESSION:
            p["objective"] = "reg:squarederror"
        elif n_classes <= 2:
            p["objective"] = "binary:logistic"
        else:
            p.update(objective="multi:softprob", num_class=n_classes)
        booster = xgb.train(p, data, num_boost_round=TREES)
        gains = booster.get_score(importance_type="total_gain")
        out.append({"xgboost_gain": np.array([gains.get(f"f{i}", 0.0) for i in range(x.shape[1])])})
        _step(on_step, name, "xgboost_gain")
    return out


def _zero_weighted(n: int, lab: _Labels) -> tuple[np.ndarray, np.ndarray]:
    """Labels and weights for all n rows of x: unlabelled rows get label 0 and weight 0, so they count for nothing."""
    label, weight = np.zeros(n, dtype=np.float32), np.zeros(n, dtype=np.float32)
    label[lab.rows], weight[lab.rows] = lab.y, 1.0
    return label, weight


def _catboost(x, targets, labels, methods, params, on_step) -> list[dict[str, np.ndarray]]:
    """CatBoost prediction-values change; unlabelled rows weighted zero rather than copied out."""
    import catboost as cb

    out = []
    for t in targets:
        name, lab = t.target, labels(t)
        common = dict(iterations=TREES, learning_rate=0.08, depth=4, random_seed=params.seed, thread_count=params.threads,
                      verbose=False, allow_writing_files=False, border_count=64)
        model = cb.CatBoostRegressor(**common) if lab.task is TaskType.REGRESSION else cb.CatBoostClassifier(**common)
        label, weight = _zero_weighted(len(x), lab)
        pool = cb.Pool(x, label if lab.task is TaskType.REGRESSION else label.astype(np.int32), weight=weight)
        pool.quantize(border_count=64)  # drops CatBoost's float copy; training only needs the borders
        model.fit(pool)
        out.append({"catboost": np.asarray(model.get_feature_importance(type="PredictionValuesChange"))})
        del pool, model
        _step(on_step, name, "catboost")
    return out


def _holdout_model(lab: _Labels, params, train):
    """The model of permutation importance and the null: trained on the development rows purged before a time-ordered holdout.

    Returns it and the holdout's positions among the target's labelled rows.
    """
    fold = purged_holdout(lab.ts[lab.rows], params.holdout_fraction, lab.horizon_bars + params.embargo_bars)
    return train(lab.rows[fold.train], lab.y[fold.train], lab), fold.test


def _permutation(x, lab: _Labels, test: np.ndarray, booster, seed: int) -> tuple[np.ndarray, NullEvidence]:
    """Drop in out-of-sample skill when one feature is shuffled, on the purged holdout rows `test`, and the null.

    The null scores each feature's effect on a row: the prediction less the mean prediction with the
    feature shuffled, what the model makes of that feature there (see `stages.null`). It comes from the
    predictions the drops need, so it costs no prediction of its own.
    """
    xt, yt = x[lab.rows[test]], lab.y[test]
    score = _skill_fn(lab.task, yt)
    pred = booster.predict(xt)
    base = score(pred)
    per_class = pred.reshape(len(pred), -1).T  # classes × rows: one row for regression and two classes
    labels = null.shuffled_labels(yt, lab.ts[lab.rows[test]], lab.horizon_bars, seed, len(per_class))
    rng = np.random.default_rng(seed)
    repeats = permutation_repeats(len(test))
    drops = np.zeros(x.shape[1])
    ics = np.zeros((x.shape[1], labels.columns.shape[2]))
    for j in range(x.shape[1]):
        col = xt[:, j].copy()
        total, shuffled = 0.0, np.zeros_like(per_class)
        for _ in range(repeats):
            xt[:, j] = rng.permutation(col)
            p = booster.predict(xt)
            total += base - score(p)
            shuffled += p.reshape(len(p), -1).T
        xt[:, j] = col
        drops[j] = total / repeats
        ics[j] = labels.ics(per_class - shuffled / repeats)
    return drops, null.evidence(ics)


def permutation_repeats(holdout_rows: int) -> int:
    """Shuffles per feature: as many as keep the shuffled rows within PERMUTATION_ROWS, from 1 to PERMUTATION_REPEATS."""
    return max(1, min(PERMUTATION_REPEATS, PERMUTATION_ROWS // max(1, holdout_rows)))


def _skill_fn(task, y):
    if task is TaskType.REGRESSION:
        # The labels' ranks are the same for every prediction scored against them: rank them once.
        return metrics.spearman_against(y)
    if _n_classes(y) <= 2:
        return lambda pred: metrics.auc(y, pred)
    return lambda pred: float((np.argmax(pred, axis=1) == y).mean())


def _mutual_info(x, targets, labels, methods, params, on_step) -> list[dict[str, np.ndarray]]:
    """Mutual information on a seeded sample of each target's labelled rows, each feature on the rows where it is known.

    Filling NaN with 0 would invent values: a spike at 0 that tracks whatever made the value missing, far
    from a feature's real range. A feature known on fewer than MI_MIN_KNOWN sampled rows scores 0 (no evidence).
    """
    from joblib import parallel_config
    from sklearn.feature_selection import mutual_info_classif, mutual_info_regression

    out = []
    for t in targets:
        name, lab = t.target, labels(t)
        rng = np.random.default_rng(params.seed)
        pick = np.sort(rng.choice(len(lab.y), size=min(MI_MAX_ROWS, len(lab.y)), replace=False))
        xs, ys = x[lab.rows[pick]], lab.y[pick]
        known = np.isfinite(xs)
        mi = np.zeros(xs.shape[1])
        # Features are scored one by one (the noise sklearn adds is drawn before), so threads give the same scores;
        # threads, not processes: a worker process would start and copy the sample for a fraction of a second's work.
        with warnings.catch_warnings(), parallel_config(backend="threading", n_jobs=params.threads):
            warnings.simplefilter("ignore")
            if known.all():  # the usual case: one call for every feature
                mi = _mi(xs, ys, lab.task, params.seed, mutual_info_regression, mutual_info_classif)
            else:
                for j in range(xs.shape[1]):
                    rows = known[:, j]
                    if rows.sum() >= MI_MIN_KNOWN:
                        mi[j] = _mi(xs[rows, j:j + 1], ys[rows], lab.task, params.seed, mutual_info_regression, mutual_info_classif)[0]
        out.append({"mutual_info": mi})
        _step(on_step, name, "mutual_info")
    return out


def _mi(xs, ys, task, seed, regression, classification) -> np.ndarray:
    if task is TaskType.REGRESSION:
        return regression(xs, ys, random_state=seed, n_neighbors=5)
    return classification(xs, ys.astype(int), random_state=seed, n_neighbors=5)
