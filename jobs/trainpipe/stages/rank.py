"""Target ranking: purged walk-forward out-of-sample scores per target, leakage guards, composite, top-N.

Called by `trainpipe rank` (and the local runner). Pure over a loaded frame: no file I/O here.
One LightGBM dataset is binned once for all rows; every target and fold trains on a subset of it.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd
from scipy import stats

from trainpipe.contract.names import REGRESSION_TARGET_PREFIX, SYMBOL_COLUMN, TargetStatus, TaskType
from trainpipe.contract.pipeline import EvidenceSpec, PipelineSpec, RankingSpec, TargetsSpec
from trainpipe.contract.targets import BarCalendar, horizon_bars, horizon_minutes, task_type
from trainpipe.cv import purged_walk_forward
from trainpipe.data.frames import frame_ts
from trainpipe.memory import release
from trainpipe.stages import metrics, uncertainty
from trainpipe.stages.binned import binned_dataset, booster_params, subset
from trainpipe.stages.evidence import SkillTest, Verdicts, gate
from trainpipe.stages.leakage import Leak, LeakScanner, too_good

LGBM_RANK_ROUNDS = 120
MIN_TARGET_ROWS = 200
LINEAR_MAX_ROWS = 50_000
# A target too good to be true puts its strongest features (by LightGBM gain over its folds) under suspicion.
SUSPECTS_PER_TARGET = 3
# Suspects are rescanned against every label with half the allowance for genuine skill: whatever made a score
# too good to be true has lost part of the benefit of the doubt. Not all of it: a real predictor's sample IC
# can cross ranking.maxRankIc on a short panel, and noise alone would then drop it.
SUSPECT_FLOOR_SHARE = 0.5


_DEFAULTS = RankingSpec()


@dataclass(frozen=True)
class RankParams:
    # Defaults are the spec's (one source); tests override what they exercise.
    folds: int = _DEFAULTS.folds
    embargo_bars: int = _DEFAULTS.embargo_bars
    max_rows: int = _DEFAULTS.max_rows
    leak_correlation: float = _DEFAULTS.leak_correlation
    max_rank_ic: float = _DEFAULTS.max_rank_ic
    max_r2: float = _DEFAULTS.max_r2
    max_auc: float = _DEFAULTS.max_auc
    top_n: int = TargetsSpec.model_fields["top_n"].default
    seed: int = PipelineSpec.model_fields["seed"].default
    threads: int = 2
    block_on_leakage: bool = True
    min_symbols_per_timestamp: int = _DEFAULTS.min_symbols_per_timestamp
    alpha: float = EvidenceSpec().alpha
    train_anyway: bool = False
    targets_tried: int = 1  # set by rank_targets: the too-good limits' noise allowance is corrected for them

    @classmethod
    def from_spec(cls, spec: PipelineSpec, threads: int = 2) -> RankParams:
        r = spec.ranking
        return cls(r.folds, r.embargo_bars, r.max_rows, r.leak_correlation, r.max_rank_ic, r.max_r2, r.max_auc, spec.targets.top_n, spec.seed,
                   threads, spec.routing.block_on_leakage, r.min_symbols_per_timestamp, spec.evidence.alpha, spec.evidence.train_anyway)


class LeakageError(ValueError):
    """Features that leak a label, found with routing.blockOnLeakage on: the run stops at rank."""

    def __init__(self, leaks: Sequence[Leak]) -> None:
        self.leaks = tuple(leaks)
        names = sorted({leak.feature for leak in leaks})
        super().__init__(
            f"{len(names)} feature(s) leak a label not yet known at their row: " + "; ".join(leak.describe() for leak in leaks[:6])
            + f". Fix the data, list them in features.exclude ({names}), or set routing.blockOnLeakage: false to drop them from every target's pool"
        )


@dataclass(frozen=True)
class Rankings:
    table: pd.DataFrame  # one row per target, best first (see RANKING_COLUMNS)
    oos_scores: pd.DataFrame  # per target × fold × (pooled | symbol): the evidence routing uses
    selected: tuple[str, ...]
    features: tuple[str, ...] = ()  # the candidate pool after leaking features left it: what select may use
    leaks: tuple[Leak, ...] = ()  # every leak found, for every target (a leaking feature left every target's pool)
    suspects: tuple[str, ...] = ()  # top features of a target still too good that the lower floor found no leak in: kept, reported
    evidence: Verdicts | None = None  # the gate over the scored targets (None when none was scored)
    no_evidence: str | None = None  # why nothing is kept when targets were scored but none carries evidence of skill


# One row per target × fold × side (symbol None = the cross-section): what `plan` builds routing candidates from.
OOS_COLUMNS = ("target", "symbol", "fold", "task", "metric_name", "score", "n_samples", "horizon_minutes", "horizon_bars", "score_sd", "ir", "timestamps")

RANKING_COLUMNS = [
    "rank", "target", "task", "horizon_minutes", "metric_name", "score", "ic", "rank_ic", "r2", "auc",
    "lgbm_score", "linear_score", "consistency", "composite", "skill_se", "composite_low", "evidence", "n_samples", "n_folds", "status", "reason",
    "selected",
]


def sample_recent(frame: pd.DataFrame, max_rows: int) -> pd.DataFrame:
    """Keep the most recent whole timestamps so that at most `max_rows` rows remain (time order kept)."""
    if len(frame) <= max_rows:
        return frame
    ts = frame_ts(frame)
    cutoff = ts[len(ts) - max_rows]
    # Rows are sorted by time, so the kept rows are a tail: slice it (no copy of the whole frame).
    start = int(np.searchsorted(ts, cutoff, side="right"))
    return frame.iloc[start:].reset_index(drop=True)


def infer_task(values: pd.Series, target: str) -> TaskType:
    clean = values.dropna()
    distinct = clean.nunique()
    integer_like = bool(np.all(np.mod(clean.to_numpy(dtype=float), 1) == 0)) if distinct else True
    return task_type(target, distinct, integer_like)


def skill(task: TaskType, rank_ic: float, auc: float) -> float:
    """Predictive skill on one scale: rank IC for regression, 2·(AUC − 0.5) for classification."""
    return rank_ic if task is TaskType.REGRESSION else 2 * (auc - 0.5)


def composite_score(fold_skills: Sequence[float]) -> tuple[float, float]:
    """(composite, consistency): mean skill scaled by the share of folds with positive skill.

    A target that is good on average but only in one fold ranks below one that is steadily good.
    """
    s = np.asarray([v for v in fold_skills if np.isfinite(v)])
    if len(s) == 0:
        return float("nan"), float("nan")
    consistency = float((s > 0).mean())
    return float(s.mean() * (0.5 + 0.5 * consistency)), consistency


def skill_se(task: TaskType, y: np.ndarray, pred: np.ndarray, ts: np.ndarray, bars: int, classes: np.ndarray | None) -> tuple[float, float]:
    """Standard error of a target's out-of-sample skill, and its degrees of freedom (independent periods − 1).

    From the influence values of the skill over every fold's test rows (the blend of both models), summed
    per timestamp and counted at one period per horizon (trainpipe.stages.uncertainty): overlapping
    labels and symbols moving together are not independent evidence. NaN when the predictions are constant.
    """
    if task is TaskType.REGRESSION:
        ry, rp = stats.rankdata(y), stats.rankdata(pred)
        psi = uncertainty.correlation_influence(rp, ry) if ry.std() > 0 and rp.std() > 0 else None
    else:
        assert classes is not None  # a classification target always has its classes
        columns = [(y == classes[-1], pred)] if task is TaskType.BINARY else [(y == c, pred[:, i]) for i, c in enumerate(classes)]
        parts: list[np.ndarray] = []
        for positive, score in columns:
            auc = metrics.auc(positive.astype(float), score)
            if not np.isfinite(auc) or positive.all() or not positive.any():
                parts = []
                break
            parts.append(uncertainty.auc_influence(positive, score, auc))
        # skill = 2·(AUC − 0.5), macro-averaged over classes for multiclass.
        psi = 2 * np.mean(parts, axis=0) if parts else None
    se = uncertainty.overlap_se(psi, ts, bars) if psi is not None else None
    return (float("nan") if se is None else se), uncertainty.effective_n(ts, bars) - 1


def rank_targets(
    frame: pd.DataFrame,
    features: Sequence[str],
    targets: Sequence[str],
    interval_minutes: float,
    params: RankParams,
    on_target: Callable[[str], None] | None = None,
    x: np.ndarray | None = None,
    horizons: Mapping[str, int] | None = None,
) -> Rankings:
    """Rank `targets` of `frame`; `x` may carry the features already as a float32 matrix aligned with `frame`.

    `horizons` gives each target's horizon in bars (the run's cut has them); without it they are read from the names.
    The same as scoring every group with `score_group` and merging the parts with `finish_rankings`, which a
    fanned-out rank (stages.rank.targetGroups) does one pod per group.
    """
    prepared = prepare_ranking(frame, features, targets, interval_minutes, params, x, horizons)
    return finish_rankings([score_group(prepared, prepared.targets, on_target)], prepared.params, lambda: prepared)


@dataclass(frozen=True)
class PreparedRanking:
    """The rows every target is ranked on, their labels, and the candidate pool once the leak scan of *every* label has trimmed it.

    Each rank unit prepares the same object (the scan is cheap beside the models and covers every label, so a
    feature leaking any target leaves every unit's pool alike); the units then score only their own targets.
    """

    frame: pd.DataFrame
    x: np.ndarray
    features: list[str]
    targets: tuple[str, ...]
    symbols: _Symbols
    labels: dict[str, _Label]
    ts: np.ndarray
    leaks: list[Leak]
    params: RankParams


def prepare_ranking(frame: pd.DataFrame, features: Sequence[str], targets: Sequence[str], interval_minutes: float, params: RankParams,
                    x: np.ndarray | None = None, horizons: Mapping[str, int] | None = None) -> PreparedRanking:
    """The most recent ranking.maxRows rows, every label, and the pool after the leak scan (LeakageError under blockOnLeakage)."""
    horizons = dict(horizons) if horizons is not None else {t: horizon_bars(t, BarCalendar.continuous(interval_minutes)) for t in targets}
    params = replace(params, targets_tried=len(targets))

    features = list(features)
    if x is None:
        x = frame[features].to_numpy(dtype=np.float32)
    keep = sample_recent(frame, params.max_rows)
    x, frame = x[len(frame) - len(keep):], keep
    # Symbols as small integer codes (sorted names): the leak scan and the per-symbol scores group by them.
    codes, names = pd.factorize(frame[SYMBOL_COLUMN], sort=True)
    symbols = _Symbols(codes.astype(np.int32), tuple(str(n) for n in names))
    labels = {t: _Label.of(frame, t, horizons[t]) for t in targets}
    ts = frame_ts(frame)

    # Leaks first, for every target: a feature leaking any label leaves the pool of all of them, so no
    # other target can rank (or be selected) through it.
    scanner = LeakScanner(x, symbols.codes, features, ts)
    leaks = _scan(scanner, labels, params.leak_correlation)
    del scanner
    release()  # the scan's standardised copies are freed before the boosters' datasets
    features, x = _without_leaks(features, x, leaks, params)
    return PreparedRanking(frame, x, features, tuple(targets), symbols, labels, ts, leaks, params)


@dataclass(frozen=True)
class RankPart:
    """One target group's scores: what a rank unit writes (runner.steps.rank, as JSON) and `finish_rankings` merges."""

    targets: tuple[str, ...]  # the group, in the ranking's target order
    rows: list[dict]  # one ranking row per target, with the gate's private keys (_skill, _df) still in
    oos_rows: list[tuple]
    gains: dict[str, np.ndarray | None]  # each target's LightGBM gain per feature of `features` (None: not scored)
    features: tuple[str, ...]  # the pool the group was scored with
    leaks: tuple[Leak, ...]  # the leak scan of every label (the same in every part)


def score_group(prepared: PreparedRanking, group: Sequence[str], on_target: Callable[[str], None] | None = None) -> RankPart:
    """Score `group` (some of the prepared targets): each target's folds depend on its own label and the seed only."""
    p = prepared
    rows, oos_rows, gains = _rank_all(p.frame, p.x, p.features, p.symbols, list(group), p.labels, p.leaks, p.params, on_target)
    return RankPart(tuple(group), rows, oos_rows, dict(gains), tuple(p.features), tuple(p.leaks))


def finish_rankings(parts: Sequence[RankPart], params: RankParams, prepare: Callable[[], PreparedRanking]) -> Rankings:
    """Merge the groups' parts (in target order) into the ranking: the too-good rescan, the evidence gate over all targets, the top N.

    `prepare` gives the ranking's rows again; it is called only when a target is too good to be true and its
    top features must be rescanned against every label (and, if one leaks, every target ranked again).
    """
    features, leaks = list(parts[0].features), list(parts[0].leaks)
    rows = [dict(row) for part in parts for row in part.rows]
    oos_rows = [r for part in parts for r in part.oos_rows]
    gains = {t: g for part in parts for t, g in part.gains.items()}
    # A target too good to be true: its top features are rescanned for every label with a lower floor. A leak
    # found leaves every pool and every target is ranked again without it; the rest stay, reported as suspects.
    suspects = _suspects(rows, gains, features)
    suspect_leaks: list[Leak] = []
    if suspects:
        p = prepare()
        x = p.x
        columns = [features.index(f) for f in suspects]
        suspect_leaks = _scan(LeakScanner(x[:, columns], p.symbols.codes, list(suspects), p.ts), p.labels, params.leak_correlation * SUSPECT_FLOOR_SHARE)
        if suspect_leaks:
            leaks = leaks + suspect_leaks
            features, x = _without_leaks(features, x, leaks, params)
            rows, oos_rows, _ = _rank_all(p.frame, x, features, p.symbols, list(p.targets), p.labels, leaks, p.params, None)
    too_good = {row["target"] for row in rows if row["status"] == TargetStatus.TOO_GOOD.value}
    kept_suspects = tuple(f for f, t in suspects.items() if f in features and t in too_good)
    for row in rows:
        if row["target"] in too_good and row["target"] in suspects.values():
            row["reason"] += "; " + _suspect_note(row["target"], suspects, suspect_leaks, params.leak_correlation * SUSPECT_FLOOR_SHARE)
    verdicts = gate_targets(rows, params.alpha)
    table = _finish_table(pd.DataFrame(rows), params.top_n, params.train_anyway)
    oos_frame = pd.DataFrame(oos_rows, columns=list(OOS_COLUMNS))
    selected = tuple(table.loc[table["selected"], "target"])
    return Rankings(table=table, oos_scores=oos_frame, selected=selected, features=tuple(features), leaks=tuple(leaks), suspects=kept_suspects,
                    evidence=verdicts, no_evidence=no_evidence_message(table, verdicts) if verdicts and not selected else None)


def gate_targets(rows: list[dict], alpha: float) -> Verdicts | None:
    """Mark each scored target's composite lower bound and evidence (in place), Benjamini–Hochberg over the targets scored.

    A target carries evidence when its mean skill's lower bound clears zero; the composite scales the mean
    skill by its consistency, and its bound by the same factor, so a positive bound is the same verdict.
    Too-good targets count among those tried (they were tried) but never pass.
    """
    nan = float("nan")
    tested = {row["target"]: (row.pop("_skill", nan), row.pop("_df", None)) for row in rows}
    for row in rows:
        row.setdefault("skill_se", nan)
        row.update(composite_low=nan, evidence=False)
    scored = [row for row in rows if row["status"] in (TargetStatus.OK.value, TargetStatus.TOO_GOOD.value)]
    if not scored:
        return None

    def test(row: dict) -> SkillTest:
        skill, df = tested[row["target"]]
        se = row["skill_se"] if row["status"] == TargetStatus.OK.value and np.isfinite(row["skill_se"]) else None
        return SkillTest(skill, se, 0.0, df)

    verdicts, lows = gate([test(row) for row in scored], alpha)
    for row, low, passed in zip(scored, lows, verdicts.passed, strict=True):
        scale = 0.5 + 0.5 * row["consistency"] if np.isfinite(row["consistency"]) else nan
        row.update(composite_low=nan if low is None else low * scale, evidence=passed)
    return verdicts


def no_evidence_message(table: pd.DataFrame, verdicts: Verdicts) -> str:
    """What a user reads when no target clears the gate: the best few with their bounds, and what to do."""
    ok = table.loc[table["status"] == TargetStatus.OK.value].head(3)
    best = "; ".join(f"{r.target}: composite {r.composite:.4f}, lower bound {r.composite_low:.4f}" for r in ok.itertuples()
                     if np.isfinite(r.composite) and np.isfinite(r.composite_low))
    return (f"no target carries evidence of skill: no composite's lower bound clears zero ({verdicts.describe()})"
            + (f"; best: {best}" if best else "")
            + ". Nothing was trained; add history or symbols, or set evidence.trainAnyway: true to train the best targets anyway")


def _scan(scanner: LeakScanner, labels: Mapping[str, _Label], floor: float) -> list[Leak]:
    """Leaks of every target's label, and of the returns over every horizon summed from the shortest return column."""
    ready = {t: label for t, label in labels.items() if label.problem is None}
    leaks = [leak for t, label in ready.items() for leak in scanner.find_leaks(label.y, label.bars, floor, t, label.task)]
    returns = [(label.bars, t) for t, label in ready.items() if label.task is TaskType.REGRESSION and t.startswith(REGRESSION_TARGET_PREFIX)]
    if returns:
        step, column = min(returns)
        leaks += scanner.find_unit_leaks(ready[column].y, step, max(label.bars for label in ready.values()), floor, column)
    return leaks


def _without_leaks(features: list[str], x: np.ndarray, leaks: Sequence[Leak], params: RankParams) -> tuple[list[str], np.ndarray]:
    """The pool without its leaking features; the run stops instead under blockOnLeakage, or when nothing would be left."""
    if leaks and params.block_on_leakage:
        raise LeakageError(leaks)
    leaking = {leak.feature for leak in leaks}
    kept = [i for i, f in enumerate(features) if f not in leaking]
    if len(kept) == len(features):
        return features, x
    if not kept:
        raise LeakageError(leaks)  # nothing would be left to rank with
    return [features[i] for i in kept], x[:, kept]


def _rank_all(frame, x, features, symbols, targets, labels, leaks, params, on_target) -> tuple[list[dict], list[tuple], dict[str, np.ndarray]]:
    """Every target's ranking row, its out-of-sample evidence, and its features' LightGBM gain summed over folds."""
    base = binned_dataset(x, params.seed, features)
    rows, oos_rows, gains = [], [], {}
    for target in targets:
        row, oos, gains[target] = _rank_one(frame, x, base, symbols, target, labels[target], params)
        own = [leak for leak in leaks if leak.target == target]
        if own and row["status"] == TargetStatus.OK.value:
            row["reason"] = "leaking features left every target's pool: " + "; ".join(leak.describe() for leak in own[:3])
        rows.append(row)
        oos_rows.extend(oos)
        release()  # each target's folds and boosters are freed: hand the pages back before the next target
        if on_target is not None:
            on_target(target)
    return rows, oos_rows, gains


def _suspects(rows: Sequence[dict], gains: Mapping[str, np.ndarray | None], features: Sequence[str]) -> dict[str, str]:
    """Feature → the too-good target that put it under suspicion: each such target's top features by gain."""
    out: dict[str, str] = {}
    for row in rows:
        gain = gains.get(row["target"])
        if row["status"] != TargetStatus.TOO_GOOD.value or gain is None:
            continue
        for i in np.argsort(-gain, kind="stable")[:SUSPECTS_PER_TARGET]:
            if gain[i] > 0:
                out.setdefault(features[i], row["target"])
    return out


def _suspect_note(target: str, suspects: Mapping[str, str], leaks: Sequence[Leak], floor: float) -> str:
    """What the rescan of a too-good target's top features found, for its row's reason."""
    mine = [f for f, t in suspects.items() if t == target]
    leaking = sorted({leak.feature for leak in leaks} & set(mine))
    clean = [f for f in mine if f not in leaking]
    parts = [f"its top features {mine} were rescanned against every label with a lower skill allowance ({floor:g}, half ranking.leakCorrelation)"]
    if leaking:
        parts.append(f"{leaking} leak and left every target's pool")
    if clean:
        parts.append(f"{clean} show no leak and stay, reported as suspects: check how they are built")
    return ": ".join(parts[:1]) + ": " + "; ".join(parts[1:])


def _finish_table(table: pd.DataFrame, top_n: int, train_anyway: bool) -> pd.DataFrame:
    """Rank: OK targets with evidence, then OK ones without, then the rest, each by composite. Keep the top N
    with evidence; with `train_anyway`, the top N OK ones (those with evidence first)."""
    ok = table["status"] == TargetStatus.OK.value
    evidence = ok & table["evidence"].astype(bool)
    order = table.assign(_ok=~ok, _ev=~evidence, _c=-table["composite"].fillna(-np.inf)).sort_values(["_ok", "_ev", "_c", "target"], kind="stable")
    order = order.drop(columns=["_ok", "_ev", "_c"]).reset_index(drop=True)
    order.insert(0, "rank", np.arange(1, len(order) + 1))
    keep = order["status"] == TargetStatus.OK.value if train_anyway else order["evidence"].astype(bool)
    order["selected"] = keep & (keep.cumsum() <= top_n)
    return order[RANKING_COLUMNS]


def _empty_row(target: str, task: TaskType, hmin: int | None, n: int, status: TargetStatus, reason: str) -> dict:
    nan = float("nan")
    return {
        "target": target, "task": task.value, "horizon_minutes": hmin, "metric_name": _metric_name(task),
        "score": nan, "ic": nan, "rank_ic": nan, "r2": nan, "auc": nan, "lgbm_score": nan, "linear_score": nan,
        "consistency": nan, "composite": nan, "skill_se": nan, "n_samples": n, "n_folds": 0, "status": status.value, "reason": reason,
    }


def _metric_name(task: TaskType) -> str:
    return "ic" if task is TaskType.REGRESSION else "auc"


@dataclass(frozen=True)
class _Symbols:
    codes: np.ndarray  # row -> index into names
    names: tuple[str, ...]


@dataclass(frozen=True)
class _Label:
    """One target's labels over the ranked rows, its task and horizon, or why it cannot be ranked."""

    y: np.ndarray
    task: TaskType
    bars: int
    n: int
    problem: tuple[TargetStatus, str] | None

    @classmethod
    def of(cls, frame: pd.DataFrame, target: str, bars: int) -> _Label:
        y = frame[target].to_numpy(dtype=np.float64)
        task = infer_task(frame[target], target)
        mask = np.isfinite(y)
        n = int(mask.sum())
        problem = None
        if n < MIN_TARGET_ROWS:
            problem = (TargetStatus.TOO_FEW_ROWS, f"only {n} labelled rows (need {MIN_TARGET_ROWS})")
        elif np.unique(y[mask]).size < 2:
            problem = (TargetStatus.DEGENERATE, "the target has a single value")
        elif task is TaskType.REGRESSION and np.nanstd(y) < 1e-9:
            problem = (TargetStatus.DEGENERATE, "the target has (near) zero variance")
        return cls(y, task, bars, n, problem)


def _rank_one(frame, x, base, symbols: _Symbols, target, label: _Label, params):
    y_all, task, bars, n = label.y, label.task, label.bars, label.n
    hmin = horizon_minutes(target)
    if label.problem is not None:
        return _empty_row(target, task, hmin, n, *label.problem), [], None
    mask = np.isfinite(y_all)

    idx = np.flatnonzero(mask)
    ts = frame_ts(frame)[idx]
    row_codes = symbols.codes[idx]
    classes = np.unique(y_all[idx]) if task is not TaskType.REGRESSION else None
    fold_metrics, oos, gain = [], [], np.zeros(x.shape[1])
    tested: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []  # (labels, blended predictions, timestamps) per fold
    for fold in purged_walk_forward(ts, params.folds, purge=bars + params.embargo_bars, min_train=max(20, bars)):
        train, test = idx[fold.train], idx[fold.test]
        y_train, y_test = y_all[train], y_all[test]
        if classes is not None and np.unique(y_train).size < len(classes):
            continue
        p_lgbm, fold_gain = _fit_lgbm(base, train, test, y_train, x, task, classes, params)
        gain += fold_gain
        lin = train[-LINEAR_MAX_ROWS:]  # the most recent training rows: plenty for a linear baseline, bounded memory
        p_lin = _fit_linear(x, lin, y_all[lin], test, task, classes, params.seed)
        blended = _blend(task, p_lgbm, p_lin)
        per_model = {name: _score(task, y_test, p, classes) for name, p in (("lgbm", p_lgbm), ("linear", p_lin))}
        fold_metrics.append(per_model)
        tested.append((y_test, blended, ts[fold.test]))
        oos.extend(_oos_rows(target, task, hmin, bars, fold.index, y_test, blended, row_codes[fold.test], ts[fold.test], symbols.names, classes,
                             params.min_symbols_per_timestamp))
        release()
    if not fold_metrics:
        return _empty_row(target, task, hmin, n, TargetStatus.DEGENERATE, "no walk-forward fold had enough history after the purge"), [], None

    def mean_of(key: str) -> float:
        vals = [fm[m][key] for fm in fold_metrics for m in fm if np.isfinite(fm[m][key])]
        return float(np.mean(vals)) if vals else float("nan")

    def mean_of_model(model: str, key: str) -> float:
        vals = [fm[model][key] for fm in fold_metrics if np.isfinite(fm[model][key])]
        return float(np.mean(vals)) if vals else float("nan")

    ic, rank_ic, r2, auc = mean_of("ic"), mean_of("rank_ic"), mean_of("r2"), mean_of("auc")
    fold_skills = [float(np.nanmean([skill(task, fm[m]["rank_ic"], fm[m]["auc"]) for m in fm])) for fm in fold_metrics]
    composite, consistency = composite_score(fold_skills)
    y_oos, p_oos, ts_oos = (np.concatenate(parts) for parts in zip(*tested, strict=True))
    se, df = skill_se(task, y_oos, p_oos, ts_oos, bars, classes)
    score = rank_ic if task is TaskType.REGRESSION else auc
    model_score = {m: float(np.nanmean([fm[m]["rank_ic" if task is TaskType.REGRESSION else "auc"] for fm in fold_metrics])) for m in ("lgbm", "linear")}
    row = {
        "target": target, "task": task.value, "horizon_minutes": hmin, "metric_name": _metric_name(task),
        "score": score, "ic": ic, "rank_ic": rank_ic, "r2": r2, "auc": auc,
        "lgbm_score": model_score["lgbm"], "linear_score": model_score["linear"],
        "consistency": consistency, "composite": composite, "skill_se": se, "n_samples": n, "n_folds": len(fold_metrics),
        "status": TargetStatus.OK.value, "reason": "",
        # Working keys for the gate over every target (gate_targets), not columns of the table.
        "_skill": float(np.mean([v for v in fold_skills if np.isfinite(v)])) if np.isfinite(composite) else float("nan"), "_df": df,
    }
    # Too good is judged on the best model: averaging would halve a leak only the trees exploit.
    def best(key: str, distance: Callable[[float], float]) -> float:
        """The model's mean score farthest from no skill (NaN when no model has one)."""
        scores = [v for v in (mean_of_model(m, key) for m in ("lgbm", "linear")) if np.isfinite(v)]
        return max(scores, key=distance) if scores else float("nan")

    # The limits widen by what noise allows on this many independent periods: on a short panel a real
    # predictor's sample IC can cross a fixed limit. The quantile is corrected for the targets tried.
    noise = float(stats.norm.ppf(1 - params.alpha / max(1, params.targets_tried))) * se if np.isfinite(se) else 0.0
    reason = too_good(task, best("rank_ic", abs), best("r2", float), best("auc", lambda v: abs(v - 0.5)),
                      params.max_rank_ic, params.max_r2, params.max_auc, noise)
    if reason:
        row.update(status=TargetStatus.TOO_GOOD.value, reason=reason)
        return row, [], gain
    return row, oos, gain


def _fit_lgbm(base, train, test, y_train, x, task, classes, params) -> tuple[np.ndarray, np.ndarray]:
    """Predictions for `test`, and each feature's gain (what a too-good target's suspects are read from)."""
    import lightgbm as lgb

    label = y_train
    if task is TaskType.BINARY:
        label = (y_train == classes[-1]).astype(np.float64)
    elif task is TaskType.MULTICLASS:
        label = np.searchsorted(classes, y_train).astype(np.float64)
    p = booster_params(task, 0 if classes is None else len(classes), params.seed, params.threads)
    booster = lgb.train(p, subset(base, train, label), num_boost_round=LGBM_RANK_ROUNDS)
    return np.asarray(booster.predict(x[test])), np.asarray(booster.feature_importance(importance_type="gain"), dtype=np.float64)


def _fit_linear(x, train_rows, y_train, test_rows, task, classes, seed) -> np.ndarray:
    """Ridge (regression) or logistic regression on median-filled, standardised float32 features."""
    from sklearn.linear_model import LogisticRegression, Ridge

    # Runs per target and fold: the two gathered copies are the only copies of the features made here;
    # filling and scaling happen in place, column by column, and both models keep float32.
    xt, xs = x[train_rows], x[test_rows]
    for j in range(xt.shape[1]):
        col, test_col = xt[:, j], xs[:, j]
        known = np.isfinite(col)
        fill = np.float32(np.median(col[known])) if known.any() else np.float32(0.0)
        col[~known] = fill
        test_col[~np.isfinite(test_col)] = fill
        mu = col.mean(dtype=np.float64)
        sd = np.sqrt(np.mean(np.square(col - mu, dtype=np.float64))) or 1.0
        for c in (col, test_col):
            c -= np.float32(mu)
            c /= np.float32(sd)
    if task is TaskType.REGRESSION:
        return Ridge(alpha=10.0, copy_X=False).fit(xt, y_train).predict(xs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # newton-cholesky suits many rows and few features, and keeps float32 (lbfgs would copy to float64).
        model = LogisticRegression(C=0.1, solver="newton-cholesky", max_iter=300, random_state=seed).fit(xt, y_train)
    proba = model.predict_proba(xs)
    return proba[:, -1] if task is TaskType.BINARY else proba


def _blend(task, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    if task is TaskType.REGRESSION:
        return _z(a) + _z(b)
    return (a + b) / 2


def _z(v: np.ndarray) -> np.ndarray:
    sd = v.std()
    return (v - v.mean()) / sd if sd > 0 else v - v.mean()


def _score(task, y, pred, classes) -> dict[str, float]:
    nan = float("nan")
    if task is TaskType.REGRESSION:
        return {"ic": metrics.pearson(y, pred), "rank_ic": metrics.spearman(y, pred), "r2": metrics.r2(y, pred), "auc": nan}
    if task is TaskType.BINARY:
        yb = (y == classes[-1]).astype(float)
        return {"ic": metrics.pearson(yb, pred), "rank_ic": metrics.spearman(yb, pred), "r2": nan, "auc": metrics.auc(yb, pred)}
    return {"ic": nan, "rank_ic": nan, "r2": nan, "auc": _macro_auc(y, pred, classes)}


def _macro_auc(y, proba, classes) -> float:
    vals = [metrics.auc((y == c).astype(float), proba[:, i]) for i, c in enumerate(classes)]
    vals = [v for v in vals if np.isfinite(v)]
    return float(np.mean(vals)) if vals else float("nan")


def _oos_rows(target, task, hmin, bars, fold, y, pred, codes, ts, names, classes, min_symbols) -> list[tuple]:
    """Evidence rows for routing: the cross-sectional score (symbol None) and one per symbol, each on its own rows.

    The cross-sectional score is the mean over timestamps of the score across that timestamp's symbols,
    so it measures ranking symbols against each other, never market timing; without enough symbols on
    most timestamps there is no cross-section to score and no such row (routing then has symbol routes only).
    """
    def one(yy, pp):
        if task is TaskType.REGRESSION:
            return metrics.spearman(yy, pp)
        if task is TaskType.BINARY:
            return metrics.auc((yy == classes[-1]).astype(float), pp)
        return _macro_auc(yy, pp, classes)

    metric = _metric_name(task)
    rows = []
    if task is not TaskType.MULTICLASS:
        label = y if task is TaskType.REGRESSION else (y == classes[-1]).astype(float)
        cs = cross_sectional_score(ts, label, pred, task, min_symbols)
        if cs.eligible_timestamps * 2 > cs.timestamps:  # a cross-section on most timestamps
            rows.append((target, None, fold, task.value, metric, cs.mean, len(y), hmin, bars, cs.sd, cs.ir, cs.eligible_timestamps))
    for code in np.unique(codes):  # codes follow sorted names, so rows come in symbol order
        m = codes == code
        rows.append((target, names[code], fold, task.value, metric, one(y[m], pred[m]), int(m.sum()), hmin, bars, float("nan"), float("nan"), 0))
    return rows


@dataclass(frozen=True)
class CrossSection:
    mean: float  # mean per-timestamp score (rank IC, or AUC for labels) over eligible timestamps
    sd: float  # standard deviation of the per-timestamp scores
    ir: float  # (mean − no-skill score) / sd: the information ratio of the per-timestamp scores
    timestamps: int  # distinct timestamps in the rows
    eligible_timestamps: int  # timestamps with at least the minimum symbols (and both classes, for labels)


def cross_sectional_score(ts: np.ndarray, y: np.ndarray, pred: np.ndarray, task: TaskType, min_symbols: int) -> CrossSection:
    """Per-timestamp rank IC (regression) or AUC (binary labels) across symbols, averaged over timestamps.

    Vectorised over timestamps (a fold holds tens of thousands): ranks within each timestamp, then one
    Pearson correlation of ranks per timestamp from grouped sums.
    """
    frame = pd.DataFrame({"ts": ts, "y": y, "p": pred})
    groups = frame.groupby("ts", sort=False)
    size = groups["y"].transform("size").to_numpy()
    n_ts = int(groups.ngroups)
    frame = frame.loc[size >= min_symbols]
    nan = float("nan")
    if frame.empty:
        return CrossSection(nan, nan, nan, n_ts, 0)
    groups = frame.groupby("ts", sort=False)
    rp = groups["p"].rank().to_numpy()
    if task is TaskType.REGRESSION:
        ry = groups["y"].rank().to_numpy()
        work = pd.DataFrame({"ts": frame["ts"].to_numpy(), "a": rp, "b": ry})
        g = work.groupby("ts", sort=False)
        a = work["a"] - g["a"].transform("mean")
        b = work["b"] - g["b"].transform("mean")
        sums = pd.DataFrame({"ts": work["ts"], "ab": a * b, "aa": a * a, "bb": b * b}).groupby("ts", sort=False).sum()
        denom = np.sqrt(sums["aa"] * sums["bb"])
        per_ts = (sums["ab"] / denom)[denom > 0].to_numpy()
    else:
        pos = frame["y"].to_numpy() > 0.5
        work = pd.DataFrame({"ts": frame["ts"].to_numpy(), "pos": pos.astype(float), "rank_pos": np.where(pos, rp, 0.0), "one": 1.0})
        sums = work.groupby("ts", sort=False).sum()
        n_pos, n_neg = sums["pos"], sums["one"] - sums["pos"]
        ok = (n_pos > 0) & (n_neg > 0)
        per_ts = ((sums["rank_pos"] - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))[ok].to_numpy()
    if len(per_ts) == 0:
        return CrossSection(nan, nan, nan, n_ts, 0)
    sd = float(per_ts.std(ddof=1)) if len(per_ts) > 1 else nan
    mean, null = float(per_ts.mean()), 0.0 if task is TaskType.REGRESSION else 0.5
    return CrossSection(mean, sd, (mean - null) / sd if sd > 0 else nan, n_ts, len(per_ts))
