"""A simple long/short backtest of holdout predictions (mean return, annualised Sharpe, turnover); called by the stage worker.

Positions are rebalanced every `horizon_bars` timestamps so consecutive holding periods of the
forward-return target do not overlap (overlapping periods would inflate the Sharpe ratio).
* Several symbols at a timestamp: long the top `quantile` by prediction, short the bottom, equal
  weights, gross exposure 1 (0.5 each side).
* One symbol: position sign(prediction − centre) (centre 0 for returns, 0.5 for probabilities).
Turnover is the mean over rebalances of Σ|w_t − w_{t−1}| (gross exposure 1, so 2.0 = full flip).
No costs. Annualisation: 252 trading days; intraday bars assume 390 minutes per session.
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def periods_per_year(interval_minutes: float, horizon_bars: int) -> float:
    if interval_minutes >= 1440:
        bars = 252.0 * 1440.0 / interval_minutes
    else:
        bars = 252.0 * 390.0 / max(interval_minutes, 1e-9)
    return bars / max(horizon_bars, 1)


def long_short_backtest(
    pred: np.ndarray,
    returns: np.ndarray,
    ts: np.ndarray,
    symbols: np.ndarray,
    *,
    horizon_bars: int,
    interval_minutes: float,
    centre: float = 0.0,
    quantile: float = 1 / 3,
) -> dict[str, float | int | str | None]:
    frame = pd.DataFrame({"ts": np.asarray(ts), "symbol": np.asarray(symbols).astype(str), "p": pred, "r": returns})
    frame = frame[np.isfinite(frame["p"]) & np.isfinite(frame["r"])]
    stamps = np.sort(frame["ts"].unique())
    rebalance = set(stamps[:: max(1, horizon_bars)])
    cross_sectional = frame["symbol"].nunique() > 1
    period_returns, turnovers = [], []
    previous = pd.Series(dtype=np.float64)
    for _stamp, group in frame[frame["ts"].isin(rebalance)].groupby("ts", sort=True):
        if cross_sectional:
            if len(group) < 2:
                continue
            k = max(1, int(np.floor(len(group) * quantile)))
            ranked = group.sort_values(["p", "symbol"], kind="stable")
            weights = pd.Series(0.0, index=ranked["symbol"].to_numpy())
            weights.iloc[-k:] += 0.5 / k
            weights.iloc[:k] -= 0.5 / k
        else:
            weights = pd.Series(np.sign(group["p"].to_numpy() - centre), index=group["symbol"].to_numpy())
        rets = pd.Series(group["r"].to_numpy(), index=group["symbol"].to_numpy())
        period_returns.append(float((weights * rets).sum()))
        turnovers.append(float(weights.subtract(previous, fill_value=0.0).abs().sum()))
        previous = weights
    mode = "cross_sectional_long_short" if cross_sectional else "single_symbol_sign"
    if len(period_returns) < 2:
        return {"mode": mode, "n_periods": len(period_returns), "mean_return": None, "annualised_return": None, "sharpe": None, "turnover": None}
    r = np.asarray(period_returns)
    ppy = periods_per_year(interval_minutes, horizon_bars)
    sd = float(r.std(ddof=1))
    return {
        "mode": mode,
        "n_periods": int(len(r)),
        "rebalance_every_bars": int(max(1, horizon_bars)),
        "mean_return": float(r.mean()),
        "annualised_return": float(r.mean() * ppy),
        "sharpe": float(r.mean() / sd * np.sqrt(ppy)) if sd > 0 else None,
        "turnover": float(np.mean(turnovers[1:])),  # the first rebalance opens the book; not counted
        "hit_rate": float(np.mean(r > 0)),
    }
