"""Honest holdout metrics of one model's predictions (IC, rank IC, AUC, hit rate, R², Brier score, log loss), each with its interval; called by the stage worker.

Figures that match the job. A cross-sectional job (several symbols sharing timestamps) picks symbols
at each timestamp, so its IC, rank IC, AUC and hit rate are per-timestamp figures averaged over
timestamps (`<figure>_method` "cross_sectional_mean"; timestamps with fewer than 3 symbols, or where
the figure is undefined, skipped; `<figure>_cs_timestamps` counts the rest). Its pooled figures (over
all rows at once, where a symbol that rises more often than another, or a market that rises on some
days, passes for skill) stand beside them as `<figure>_pooled`. A one-symbol job has only pooled ones.
The cross-sectional hit rate calls a row "up" when its prediction is above its timestamp's median and
checks it against the return above its timestamp's median (or a label above its timestamp's share of
positives): 0.5 without skill.
Classifiers get the Brier score (with `brier_skill`, 1 − Brier / the base rate's, 0 without skill)
and the log loss beside the base rate's; both are pooled, as a probability is judged row by row.

Every figure with a no-skill value comes with `<name>_se`, `<name>_low` and `<name>_high`: its standard
error and 95% interval with overlapping h-bar labels counted as one period in h (`uncertainty`);
`n_eff` is that count. A metric whose interval holds its no-skill value (0 for IC, 0.5 for AUC) is
not evidence of skill, whatever its point value. A figure that cannot be computed is null, and
`undefined` says why.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from trainpipe.contract.names import TaskType
from trainpipe.contract.targets import positive_label
from trainpipe.stages import uncertainty as unc


def _corr(a: np.ndarray, b: np.ndarray) -> float | None:
    if len(a) < 3 or np.std(a) == 0 or np.std(b) == 0:
        return None
    value = float(np.corrcoef(a, b)[0, 1])
    return value if np.isfinite(value) else None


def _spearman(a: np.ndarray, b: np.ndarray) -> float | None:
    return _corr(pd.Series(a).rank().to_numpy(), pd.Series(b).rank().to_numpy())


def auc(y: np.ndarray, score: np.ndarray) -> float | None:
    """Area under the ROC curve by the rank-sum formula (ties get average ranks); `y` is 1 for the positive class."""
    pos = y == 1
    n_pos, n_neg = int(pos.sum()), int((~pos).sum())
    if n_pos == 0 or n_neg == 0:
        return None
    ranks = pd.Series(score).rank().to_numpy()
    return float((ranks[pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def evaluate(
    y: np.ndarray, pred: np.ndarray, ts: np.ndarray, symbols: np.ndarray, task: TaskType | str, positive: float | None = None,
    horizon_bars: int = 1,
) -> dict[str, Any]:
    """Metrics of `pred` against the realised target `y` on the holdout rows, each beside its no-skill baseline and with its interval.

    For a binary target `positive` is the label of the positive class (`positive_label` of the job's
    labels, as training encodes it); the holdout alone may lack a class, so it is passed in.
    `horizon_bars` is the label's horizon: rows less than that apart share part of their label.
    """
    task = TaskType(task)
    y = np.asarray(y, dtype=np.float64)
    if task is TaskType.BINARY:
        top = positive if positive is not None else positive_label(np.unique(y[np.isfinite(y)]))
        y = (y == top).astype(np.float64)
    pred = np.asarray(pred, dtype=np.float64)
    ok = np.isfinite(y) & np.isfinite(pred)
    y, pred, ts, symbols = y[ok], pred[ok], np.asarray(ts)[ok], np.asarray(symbols)[ok]
    h = max(int(horizon_bars), 1)
    binary = task is TaskType.BINARY
    cs = _cross_section(ts, symbols, pred, y, binary)
    out: dict[str, Any] = {"n": int(len(y)), "n_dropped_nonfinite": int((~ok).sum())}
    out |= {"n_eff": unc.effective_n(ts, h), "ci_level": unc.LEVEL, "ci_method": unc.METHOD}
    out |= _correlations(y, pred, ts, h, cs)
    out |= _binary_scores(y, pred, ts, h, cs) if binary else _regression_scores(y, pred, ts, h, cs)
    out["undefined"] = _undefined(out, y, pred, binary, cs is not None)
    return out


Scores = dict[str, float | int | str | None]
CS_MEAN, POOLED = "cross_sectional_mean", "pooled"


def _headline(name: str, pooled: unc.Estimate, cs: CrossSection | None, per_ts: tuple[np.ndarray, np.ndarray] | None, h: int,
              bounds: tuple[float, float]) -> Scores:
    """`name` (the per-timestamp mean for a cross-sectional job, else the pooled figure), `name_pooled` beside it, and `name_method`."""
    out: Scores = dict(pooled.fields(f"{name}_pooled"))
    if cs is None or per_ts is None:
        return out | pooled.fields(name) | {f"{name}_method": POOLED}
    stamps, values = per_ts
    # The per-timestamp values are the rows here: one per timestamp, h of them per independent period.
    est = unc.estimate(float(values.mean()), values - values.mean(), stamps, h, bounds) if len(values) else unc.Estimate(None)
    out |= est.fields(f"{name}_cs_mean") | est.fields(name)
    return out | {f"{name}_method": CS_MEAN, f"{name}_cs_timestamps": len(values)}


def _correlations(y: np.ndarray, pred: np.ndarray, ts: np.ndarray, h: int, cs: CrossSection | None) -> Scores:
    """IC and rank IC: per-timestamp means for a cross-sectional job, pooled ones beside them."""
    ic = _corr(pred, y)
    pooled_ic = unc.estimate(ic, unc.correlation_influence(pred, y) if ic is not None else None, ts, h, (-1, 1))
    out = _headline("ic", pooled_ic, cs, cs.correlations(ranked=False) if cs else None, h, (-1, 1))
    rank = _spearman(pred, y)
    ranks = (pd.Series(pred).rank().to_numpy(), pd.Series(y).rank().to_numpy())
    pooled_rank = unc.estimate(rank, unc.correlation_influence(*ranks) if rank is not None else None, ts, h, (-1, 1))
    per_ts = cs.correlations(ranked=True) if cs else None
    out |= _headline("rank_ic", pooled_rank, cs, per_ts, h, (-1, 1))
    if per_ts is not None:
        values = per_ts[1]
        out["rank_ic_cs_ir"] = float(np.mean(values) / np.std(values)) if len(values) and np.std(values) > 0 else None
    return out


def _binary_scores(y: np.ndarray, pred: np.ndarray, ts: np.ndarray, h: int, cs: CrossSection | None) -> Scores:
    """AUC and hit rate (per timestamp for a cross-sectional job), balanced accuracy, Brier score and log loss; `y` is 1 for the positive class."""
    truth = y == 1
    area = auc(y, pred)
    pooled_auc = unc.estimate(area, unc.auc_influence(truth, pred, area) if area is not None else None, ts, h, (0, 1))
    out = _headline("auc", pooled_auc, cs, cs.aucs() if cs else None, h, (0, 1))
    said = pred > 0.5
    hits = said == truth
    pooled_hits = unc.estimate(float(np.mean(hits)) if len(y) else None, unc.share_influence(hits), ts, h, (0, 1))
    out |= _headline("hit_rate", pooled_hits, cs, cs.hits() if cs else None, h, (0, 1))
    # A label that is 1 in 63% of rows makes "always 1" 63% right: the pooled hit rate means nothing without it.
    base = float(np.mean(truth)) if len(y) else None
    out["base_rate"] = base
    out |= _hit_baselines(None if base is None else max(base, 1 - base), cs)
    balanced = _balanced_accuracy(truth, said)
    influence = unc.balanced_accuracy_influence(truth, said) if balanced is not None else None
    out |= unc.estimate(balanced, influence, ts, h, (0, 1)).fields("balanced_accuracy")
    return out | _probability_scores(y, pred, ts, h)


def _regression_scores(y: np.ndarray, pred: np.ndarray, ts: np.ndarray, h: int, cs: CrossSection | None) -> Scores:
    """R² and the sign hit rate beside always-long's (rows with a zero return left out of both hit rates); per timestamp for a cross-section."""
    ss_tot = float(((y - y.mean()) ** 2).sum()) if len(y) else 0.0
    r2 = float(1 - ((y - pred) ** 2).sum() / ss_tot) if ss_tot > 0 else None
    out: Scores = dict(unc.estimate(r2, unc.r2_influence(y, pred) if r2 is not None else None, ts, h, (-math.inf, 1)).fields("r2"))
    nz = y != 0
    hits = np.sign(pred[nz]) == np.sign(y[nz])
    pooled_hits = unc.estimate(float(np.mean(hits)) if nz.any() else None, unc.share_influence(hits), ts[nz], h, (0, 1))
    out |= _headline("hit_rate", pooled_hits, cs, cs.hits() if cs else None, h, (0, 1))
    up = float(np.mean(y[nz] > 0)) if nz.any() else None
    out["base_rate"] = up  # share of rising periods: what always-long gets right
    return out | _hit_baselines(None if up is None else max(up, 1 - up), cs)


def _hit_baselines(pooled: float | None, cs: CrossSection | None) -> Scores:
    """What a constant guess gets right: the majority class pooled; half of a cross-section split at its median."""
    return {"hit_rate_baseline": pooled if cs is None else 0.5, "hit_rate_pooled_baseline": pooled}


# Far enough from 0 and 1 that one confident miss costs 34.5 nats, not infinity.
_CLIP = 1e-15


def _probability_scores(y: np.ndarray, prob: np.ndarray, ts: np.ndarray, h: int) -> Scores:
    """Brier score, its skill over the base rate's, and log loss beside the base rate's; null when the predictions are not probabilities."""
    names = ("brier", "brier_skill", "log_loss")
    if not len(y) or prob.min() < 0 or prob.max() > 1:
        empty: Scores = {k: v for name in names for k, v in unc.Estimate(None).fields(name).items()}
        return empty | {"brier_baseline": None, "log_loss_baseline": None}
    sq = (prob - y) ** 2
    base = float(y.mean())
    out: Scores = dict(unc.estimate(float(sq.mean()), sq - sq.mean(), ts, h, (0, 1)).fields("brier"))
    # The base rate forecast every row: the best constant in hindsight, so a model must beat the holdout's own rate.
    out["brier_baseline"] = base * (1 - base)
    # 1 − Brier / Var(y) is R² of the probabilities: the same influence values serve.
    skill = float(1 - sq.mean() / out["brier_baseline"]) if 0 < base < 1 else None
    out |= unc.estimate(skill, unc.r2_influence(y, prob) if skill is not None else None, ts, h, (-math.inf, 1)).fields("brier_skill")
    p = np.clip(prob, _CLIP, 1 - _CLIP)
    loss = -(y * np.log(p) + (1 - y) * np.log(1 - p))
    out |= unc.estimate(float(loss.mean()), loss - loss.mean(), ts, h, (0, math.inf)).fields("log_loss")
    b = min(max(base, _CLIP), 1 - _CLIP)
    out["log_loss_baseline"] = float(-(base * math.log(b) + (1 - base) * math.log(1 - b)))
    return out


# The figures `undefined` explains when null, and why each may be null beyond the general reasons.
_EXPLAINED = ("ic", "rank_ic", "auc", "hit_rate", "r2", "balanced_accuracy", "brier", "brier_skill", "log_loss")


def _undefined(out: Scores, y: np.ndarray, pred: np.ndarray, binary: bool, cross_sectional: bool) -> dict[str, str]:
    """Why each null headline figure is null, in words: a reader of `metrics.json` should never meet a bare null."""
    general = _first([
        (len(y) < 3, "fewer than 3 holdout rows"),
        (len(y) > 0 and np.ptp(pred) == 0, "the predictions are constant on the holdout: the model has no timing"),
        (len(y) > 0 and np.ptp(y) == 0, "the realised target is constant on the holdout"),
    ])
    per_ts = ("no holdout timestamp has 3 or more symbols whose predictions and outcomes both vary"
              + (" and which holds both classes" if binary else ""))
    specific = {
        "auc": "the holdout holds one class only" if binary and len(y) and np.ptp(y) == 0 else None,
        "balanced_accuracy": "the holdout holds one class only",
        "brier": "the predictions are not probabilities (some lie outside [0, 1])",
        "brier_skill": "the predictions are not probabilities, or the holdout holds one class only",
        "log_loss": "the predictions are not probabilities (some lie outside [0, 1])",
    }
    reasons = {}
    for key in _EXPLAINED:
        if key in out and out[key] is None:
            cs_reason = per_ts if cross_sectional and out.get(f"{key}_method") == CS_MEAN else None
            reasons[key] = general or cs_reason or specific.get(key) or "undefined on these rows"
    return reasons


def _first(cases: list[tuple[bool, str]]) -> str | None:
    return next((reason for hit, reason in cases if hit), None)


@dataclass(frozen=True)
class CrossSection:
    """The holdout rows of timestamps with 3 symbols or more, for per-timestamp figures."""

    frame: pd.DataFrame  # ts, p, y
    binary: bool

    def correlations(self, *, ranked: bool) -> tuple[np.ndarray, np.ndarray]:
        """Pearson (or, `ranked`, Spearman) of prediction and outcome within each timestamp where both vary: (timestamps, values)."""
        frame, by_ts = self.frame, self.frame.groupby("ts", sort=True)
        a, b = (by_ts["p"].rank(), by_ts["y"].rank()) if ranked else (frame["p"], frame["y"])
        a = a - a.groupby(frame["ts"]).transform("mean")
        b = b - b.groupby(frame["ts"]).transform("mean")
        sums = pd.DataFrame({"ts": frame["ts"], "ab": a * b, "aa": a * a, "bb": b * b}).groupby("ts", sort=True).sum()
        sums = sums[(sums["aa"] > 0) & (sums["bb"] > 0)]
        return sums.index.to_numpy(), (sums["ab"] / np.sqrt(sums["aa"] * sums["bb"])).to_numpy()

    def aucs(self) -> tuple[np.ndarray, np.ndarray]:
        """AUC within each timestamp that holds both classes (rank-sum formula, ties at average ranks): (timestamps, values)."""
        frame = self.frame.assign(r=self.frame.groupby("ts", sort=True)["p"].rank(), pos=self.frame["y"] == 1)
        per = frame.assign(rpos=frame["r"].where(frame["pos"], 0.0)).groupby("ts", sort=True).agg(n=("pos", "size"), n_pos=("pos", "sum"),
                                                                                                  rsum=("rpos", "sum"))
        per = per[(per["n_pos"] > 0) & (per["n_pos"] < per["n"])]
        n_neg = per["n"] - per["n_pos"]
        return per.index.to_numpy(), ((per["rsum"] - per["n_pos"] * (per["n_pos"] + 1) / 2) / (per["n_pos"] * n_neg)).to_numpy()

    def hits(self) -> tuple[np.ndarray, np.ndarray]:
        """Share of rows called right within each timestamp: prediction above the timestamp's median against outcome above its centre.

        The outcome's centre is the timestamp's median return, or its share of positives for a label
        (a timestamp where every label is the same says nothing about ranking and is skipped). Rows at
        a centre are left out, so half the rows are called up and no skill scores 0.5; with labels, a
        perfect ranker scores below 1 where a timestamp's classes are unbalanced.
        """
        frame, by_ts = self.frame, self.frame.groupby("ts")
        said = frame["p"] - by_ts["p"].transform("median")
        truth = frame["y"] - by_ts["y"].transform("mean" if self.binary else "median")
        keep = (said != 0) & (truth != 0)
        hit = ((said > 0) == (truth > 0))[keep]
        per = hit.groupby(frame["ts"][keep], sort=True).mean()
        return per.index.to_numpy(), per.to_numpy(dtype=np.float64)


def _cross_section(ts: np.ndarray, symbols: np.ndarray, pred: np.ndarray, y: np.ndarray, binary: bool) -> CrossSection | None:
    """The job's cross-section when several symbols share timestamps (3 or more on some), else None: one-symbol figures are pooled."""
    if len(np.unique(symbols)) < 2:
        return None
    frame = pd.DataFrame({"ts": ts, "p": pred, "y": y})
    frame = frame[frame.groupby("ts")["ts"].transform("size") >= 3].reset_index(drop=True)
    if frame.empty:
        return None
    return CrossSection(frame, binary)


def _balanced_accuracy(truth: np.ndarray, said: np.ndarray) -> float | None:
    """Mean of the true-positive and true-negative rates: 0.5 for any constant guess, whatever the base rate."""
    if truth.all() or (~truth).all():
        return None
    return float((np.mean(said[truth]) + np.mean(~said[~truth])) / 2)
