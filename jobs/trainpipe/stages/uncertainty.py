"""Standard errors and intervals of holdout figures under overlapping labels, and what the best of N would show on noise; pure, called by training.metrics, training.backtest and the report.

Why an effective n of (timestamps / h): an h-bar forward label shares h − 1 bars with its neighbours,
and all the symbols of one timestamp share the market's move. So the rows of a metric are summed per
timestamp first (`U_t`, the cross-section as one cluster), and no more than one timestamp in h is
counted as independent. Under no skill (returns unpredictable from the past) `U_t` and `U_{t+k}` are
uncorrelated for k ≥ h, and |corr| ≤ 1 − k/h below it, so

    Var(mean) ≤ h · T · Var(U_t) / n²        (T timestamps, n rows)

with equality for a persistent predictor (the usual case: predictions move slowly) and a wider interval
than needed for one that flips every bar. Var(U_t) is a plain variance over T timestamps, well
estimated even when T / h is small; the interval uses Student's t with T / h − 1 degrees of freedom.
A block bootstrap with blocks of h bars would understate the variance by about a third for a
persistent predictor (it down-weights lags near h), which is why it is not used.

Each metric supplies its influence values (the first-order effect of each row on the estimate), so one
rule serves correlations, AUC, hit rates and R² alike.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import integrate, special, stats

LEVEL = 0.95
METHOD = "effective n = timestamps / horizon; rows summed per timestamp (trainpipe.stages.uncertainty)"


@dataclass(frozen=True)
class Estimate:
    """A figure with its standard error and its `LEVEL` interval (None when too few independent periods to say)."""

    value: float | None
    se: float | None = None
    low: float | None = None
    high: float | None = None

    def fields(self, name: str) -> dict[str, float | None]:
        """The keys `metrics.json` writes: `name`, `name_se`, `name_low`, `name_high`."""
        return {name: self.value, f"{name}_se": self.se, f"{name}_low": self.low, f"{name}_high": self.high}


def effective_n(ts: np.ndarray, horizon_bars: int) -> float:
    """Independent periods in the holdout: distinct timestamps / horizon (bars)."""
    return len(np.unique(np.asarray(ts))) / max(int(horizon_bars), 1)


def t_quantile(n_eff: float, level: float = LEVEL) -> float | None:
    """Student's t quantile for a two-sided `level` interval with n_eff − 1 degrees of freedom; None below 2 periods."""
    if not np.isfinite(n_eff) or n_eff < 2:
        return None
    return float(stats.t.ppf(0.5 + level / 2, n_eff - 1))


def overlap_se(influence: np.ndarray, ts: np.ndarray, horizon_bars: int) -> float | None:
    """Standard error of a metric whose first-order expansion is value + mean(`influence`), rows at timestamps `ts`."""
    psi = np.asarray(influence, dtype=np.float64)
    n = len(psi)
    if n < 3 or not np.all(np.isfinite(psi)):
        return None
    per_ts = pd.Series(psi).groupby(np.asarray(ts), sort=False).sum().to_numpy()
    if len(per_ts) < 2:
        return None
    var_u = float(np.mean((per_ts - per_ts.mean()) ** 2))
    return math.sqrt(max(int(horizon_bars), 1) * len(per_ts) * var_u) / n


def estimate(value: float | None, influence: np.ndarray | None, ts: np.ndarray, horizon_bars: int,
             bounds: tuple[float, float] = (-math.inf, math.inf)) -> Estimate:
    """`value` with its overlap-aware standard error and interval, clipped to the metric's `bounds`."""
    if value is None or influence is None:
        return Estimate(value)
    se = overlap_se(influence, ts, horizon_bars)
    t = t_quantile(effective_n(ts, horizon_bars))
    if se is None or t is None:
        return Estimate(value, se)
    return Estimate(value, se, max(bounds[0], value - t * se), min(bounds[1], value + t * se))


def correlation_influence(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Influence values of Pearson's r of `a` and `b` (on ranks: Spearman's, to first order)."""
    za = (a - a.mean()) / a.std()
    zb = (b - b.mean()) / b.std()
    r = float(np.mean(za * zb))
    return za * zb - r / 2 * (za * za + zb * zb)


def share_influence(hits: np.ndarray) -> np.ndarray:
    """Influence values of a share (hit rate): each row's indicator minus the share."""
    h = np.asarray(hits, dtype=np.float64)
    return h - h.mean()


def auc_influence(positive: np.ndarray, score: np.ndarray, auc: float) -> np.ndarray:
    """DeLong's components of the AUC, scaled to row influence: a positive's share of negatives it outranks, and the converse."""
    pos = np.asarray(positive, dtype=bool)
    all_ranks = pd.Series(score).rank().to_numpy()
    n_pos, n_neg = int(pos.sum()), int((~pos).sum())
    pos_ranks = pd.Series(score[pos]).rank().to_numpy()
    neg_ranks = pd.Series(score[~pos]).rank().to_numpy()
    psi = np.empty(len(pos))
    # A positive's rank among all minus its rank among positives = negatives below it (ties count half).
    psi[pos] = ((all_ranks[pos] - pos_ranks) / n_neg - auc) / (n_pos / len(pos))
    psi[~pos] = ((n_pos - (all_ranks[~pos] - neg_ranks)) / n_pos - auc) / (n_neg / len(pos))
    return psi


def balanced_accuracy_influence(truth: np.ndarray, said: np.ndarray) -> np.ndarray:
    """Influence values of (true-positive rate + true-negative rate) / 2."""
    truth, said = np.asarray(truth, dtype=bool), np.asarray(said, dtype=bool)
    share = truth.mean()
    tpr, tnr = said[truth].mean(), (~said[~truth]).mean()
    return np.where(truth, (said - tpr) / (2 * share), ((~said) - tnr) / (2 * (1 - share)))


def r2_influence(y: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """Influence values of R² = 1 − MSE / Var(y)."""
    err2 = (y - pred) ** 2
    dev2 = (y - y.mean()) ** 2
    mse, var = err2.mean(), dev2.mean()
    return -((err2 - mse) - (mse / var) * (dev2 - var)) / var


def sharpe_se(sharpe_per_period: float, skew: float, kurtosis: float, n_eff: float) -> float | None:
    """Standard error of a per-period Sharpe ratio over n_eff independent periods, with the returns' skew and (non-excess) kurtosis.

    Var = (1 − skew·SR + (kurtosis − 1)/4 · SR²) / n (Mertens; Bailey & López de Prado): fat tails and a
    negative skew widen it beyond the normal-returns 1/n.
    """
    if not np.isfinite(n_eff) or n_eff < 2:
        return None
    var = (1 - skew * sharpe_per_period + (kurtosis - 1) / 4 * sharpe_per_period**2) / n_eff
    return math.sqrt(var) if var > 0 else None


def expected_max_of_noise(n_trials: int, se: float) -> float:
    """What the best of `n_trials` estimates would show with no skill at all, each with standard error `se`.

    The expected maximum of n independent N(0, se²) draws, integrated exactly (Bailey & López de
    Prado's closed form is 8% low at n = 2 and 2.5% high at n = 5). Models of one run share their
    data, so they are less than independent and this is an upper bound of the noise figure.
    """
    if n_trials < 2:
        return 0.0

    def x_times_density_of_max(x: float) -> float:
        return x * n_trials * math.exp(-x * x / 2) / math.sqrt(2 * math.pi) * float(special.ndtr(x)) ** (n_trials - 1)

    return se * float(integrate.quad(x_times_density_of_max, -12, 12)[0])


def deflated_sharpe(sharpe: float, se: float, noise_best: float) -> float:
    """Deflated Sharpe ratio: the probability that the true Sharpe exceeds `noise_best`, what the best of the run's models would show on noise.

    Φ((SR − SR₀) / se), SR₀ = `expected_max_of_noise(models, noise se)` (Bailey & López de Prado);
    `se` already carries the returns' skew and kurtosis (`sharpe_se`). Near 0.5 or below on noise;
    above 0.95 is evidence.
    """
    return float(stats.norm.cdf((sharpe - noise_best) / se))
