"""A simple long/short backtest of holdout predictions (mean return, annualised Sharpe, turnover); called by the stage worker.

Positions are rebalanced every `horizon_bars` timestamps so consecutive holding periods of the
forward-return target do not overlap (overlapping periods would inflate the Sharpe ratio).
* Several symbols at a timestamp: long the top `quantile` by prediction, short the bottom, equal
  weights, gross exposure 1 (0.5 each side).
* One symbol: position sign(prediction − centre) (centre 0 for returns, 0.5 for probabilities).
Turnover is the mean over rebalances of Σ|w_t − w_{t−1}| (gross exposure 1, so 2.0 = full flip).
No costs. Beside it, the baseline over the same rebalances: buy-and-hold (one symbol) or an
equal-weight long book (several): a strategy that only rides the market's drift has no edge over it.
Annualisation uses the bars per year measured on the data's own timestamps (`bars_per_year`), never a
calendar table: weekly bars have about 52, equity days about 252, crypto days 365, 5-minute FX bars
about 74,000.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

_YEAR = np.timedelta64(int(365.2425 * 86400), "s")


def bars_per_year(ts: np.ndarray, symbols: np.ndarray) -> float:
    """Bars a symbol has per year, measured: (bars − 1) / span in years, the median over symbols.

    Per symbol, so symbols on different calendars each count their own; NaN when no symbol spans time.
    """
    frame = pd.DataFrame({"ts": np.asarray(ts, dtype="datetime64[ns]"), "symbol": np.asarray(symbols).astype(str)})
    stats = frame.groupby("symbol")["ts"].agg(["min", "max", "nunique"])
    span = (stats["max"] - stats["min"]).to_numpy() / _YEAR
    rates = (stats["nunique"].to_numpy() - 1) / np.where(span > 0, span, np.nan)
    rates = rates[np.isfinite(rates)]
    return float(np.median(rates)) if len(rates) else float("nan")


def periods_per_year(bars_a_year: float, horizon_bars: int) -> float:
    """Holding periods per year when positions are held `horizon_bars` bars."""
    return bars_a_year / max(horizon_bars, 1)


def sharpe(period_returns: np.ndarray, periods_a_year: float) -> float | None:
    r = np.asarray(period_returns, dtype=np.float64)
    if len(r) < 2 or not np.isfinite(periods_a_year):
        return None
    sd = float(r.std(ddof=1))
    return float(r.mean() / sd * np.sqrt(periods_a_year)) if sd > 0 else None


def long_short_backtest(
    pred: np.ndarray,
    returns: np.ndarray,
    ts: np.ndarray,
    symbols: np.ndarray,
    *,
    horizon_bars: int,
    bars_a_year: float,
    centre: float = 0.0,
    quantile: float = 1 / 3,
) -> dict[str, float | int | str | None]:
    frame = pd.DataFrame({"ts": np.asarray(ts), "symbol": np.asarray(symbols).astype(str), "p": pred, "r": returns})
    frame = frame[np.isfinite(frame["p"]) & np.isfinite(frame["r"])]
    stamps = np.sort(frame["ts"].unique())
    rebalance = set(stamps[:: max(1, horizon_bars)])
    cross_sectional = frame["symbol"].nunique() > 1
    period_returns, baseline_returns, turnovers = [], [], []
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
        baseline_returns.append(float(rets.mean()))  # long every symbol, equal weights (one symbol: buy and hold)
        turnovers.append(float(weights.subtract(previous, fill_value=0.0).abs().sum()))
        previous = weights
    mode = "cross_sectional_long_short" if cross_sectional else "single_symbol_sign"
    baseline_mode = "equal_weight_long" if cross_sectional else "buy_and_hold"
    ppy = periods_per_year(bars_a_year, horizon_bars)
    if len(period_returns) < 2:
        return {"mode": mode, "n_periods": len(period_returns), "mean_return": None, "annualised_return": None, "sharpe": None, "turnover": None,
                "baseline_mode": baseline_mode, "baseline_sharpe": None, "bars_per_year": _finite(bars_a_year)}
    r = np.asarray(period_returns)
    return {
        "mode": mode,
        "n_periods": int(len(r)),
        "rebalance_every_bars": int(max(1, horizon_bars)),
        "mean_return": float(r.mean()),
        "annualised_return": _finite(float(r.mean() * ppy)),
        "sharpe": sharpe(r, ppy),
        "turnover": float(np.mean(turnovers[1:])),  # the first rebalance opens the book; not counted
        "hit_rate": float(np.mean(r > 0)),
        "baseline_mode": baseline_mode,
        "baseline_sharpe": sharpe(np.asarray(baseline_returns), ppy),
        "baseline_hit_rate": float(np.mean(np.asarray(baseline_returns) > 0)),
        "bars_per_year": _finite(bars_a_year),
    }


def _finite(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None
