"""A simple long/short backtest of holdout predictions (mean return, annualised Sharpe, turnover); called by the stage worker.

Positions are rebalanced every `horizon_bars` timestamps so consecutive holding periods of the
forward-return target do not overlap (overlapping periods would inflate the Sharpe ratio); each of the
`horizon_bars` rebalance phases is run and the figures are their means.
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

from trainpipe.training.uncertainty import Estimate, sharpe_se, t_quantile

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


def _books(frame: pd.DataFrame, *, cross_sectional: bool, centre: float, quantile: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The book opened at every timestamp: its weights (timestamps × symbols), holding-period return, and the baseline's.

    The baseline is long every symbol with equal weights (one symbol: buy and hold). Cross-sectional
    books skip timestamps with fewer than 2 symbols.
    """
    frame = frame.sort_values(["ts", "p", "symbol"], kind="stable")
    if frame.empty:
        return np.zeros((0, 0)), np.zeros(0), np.zeros(0)
    if cross_sectional:
        frame = frame[frame.groupby("ts")["ts"].transform("size") >= 2]
        size = frame.groupby("ts")["ts"].transform("size").to_numpy()
        place = frame.groupby("ts").cumcount().to_numpy()  # 0 = lowest prediction
        k = np.maximum(1, np.floor(size * quantile)).astype(int)
        weight = np.where(place >= size - k, 0.5 / k, 0.0) - np.where(place < k, 0.5 / k, 0.0)
    else:
        weight = np.sign(frame["p"].to_numpy() - centre)
    frame = frame.assign(w=weight, wr=weight * frame["r"].to_numpy())
    weights = frame.pivot_table(index="ts", columns="symbol", values="w", aggfunc="sum", fill_value=0.0, sort=True)
    by_ts = frame.groupby("ts", sort=True)
    return weights.to_numpy(), by_ts["wr"].sum().to_numpy(), by_ts["r"].mean().to_numpy()


def _phase(weights: np.ndarray, ret: np.ndarray, baseline: np.ndarray, ppy: float) -> dict[str, float | None]:
    """One rebalance calendar's figures: its books are `horizon_bars` apart, so their holding periods do not overlap."""
    # Σ|w_t − w_{t−1}| between consecutive books; the first book opens the position and is not counted.
    turnover = float(np.abs(np.diff(weights, axis=0)).sum(axis=1).mean()) if len(weights) > 1 else None
    return {"sharpe": sharpe(ret, ppy), "baseline_sharpe": sharpe(baseline, ppy), "hit_rate": float(np.mean(ret > 0)),
            "baseline_hit_rate": float(np.mean(baseline > 0)), "turnover": turnover}


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
    """The long/short backtest averaged over its `horizon_bars` rebalance phases, the Sharpe with its standard error and interval.

    Which bar the first rebalance falls on is arbitrary, and with few periods the phases' Sharpes
    differ by a good part of their standard error; so every phase (start at bar 0, 1, …, h − 1) is run and the figures
    are their means (`sharpe_phase_min/max` show the spread). The standard error counts timestamps / h
    independent periods, with the returns' skew and kurtosis (`uncertainty.sharpe_se`).
    """
    frame = pd.DataFrame({"ts": np.asarray(ts), "symbol": np.asarray(symbols).astype(str), "p": pred, "r": returns})
    frame = frame[np.isfinite(frame["p"]) & np.isfinite(frame["r"])]
    cross_sectional = frame["symbol"].nunique() > 1
    h = max(1, int(horizon_bars))
    weights, ret, baseline = _books(frame, cross_sectional=cross_sectional, centre=centre, quantile=quantile)
    mode = "cross_sectional_long_short" if cross_sectional else "single_symbol_sign"
    baseline_mode = "equal_weight_long" if cross_sectional else "buy_and_hold"
    ppy = periods_per_year(bars_a_year, h)
    phases = [_phase(weights[p::h], ret[p::h], baseline[p::h], ppy) for p in range(min(h, len(ret)))]
    sharpes = [ph["sharpe"] for ph in phases if ph["sharpe"] is not None]
    if len(ret) < 2 * h or not sharpes:
        return {"mode": mode, "n_periods": len(ret) // h, "mean_return": None, "annualised_return": None, "sharpe": None, "turnover": None,
                "baseline_mode": baseline_mode, "baseline_sharpe": None, "bars_per_year": _finite(bars_a_year)}
    n_eff = len(ret) / h
    out: dict[str, float | int | str | None] = {
        "mode": mode,
        "n_periods": int(n_eff),
        "n_eff": n_eff,
        "rebalance_every_bars": h,
        "phases": len(phases),
        "mean_return": float(ret.mean()),
        "annualised_return": _finite(float(ret.mean() * ppy)),
        "periods_per_year": _finite(ppy),
    }
    out |= _sharpe_estimate(float(np.mean(sharpes)), ret, n_eff, ppy).fields("sharpe")
    out |= {
        "sharpe_phase_min": float(min(sharpes)),
        "sharpe_phase_max": float(max(sharpes)),
        "sharpe_noise_se": _finite(float(np.sqrt(ppy / n_eff))),  # the standard error at zero skill: what noise alone spreads
        "turnover": _mean(ph["turnover"] for ph in phases),
        "hit_rate": _mean(ph["hit_rate"] for ph in phases),
        "baseline_mode": baseline_mode,
        "baseline_sharpe": _mean(ph["baseline_sharpe"] for ph in phases),
        "baseline_hit_rate": _mean(ph["baseline_hit_rate"] for ph in phases),
        "bars_per_year": _finite(bars_a_year),
    }
    return out


def _sharpe_estimate(annualised: float, r: np.ndarray, n_eff: float, ppy: float) -> Estimate:
    """The annualised Sharpe with its standard error and interval, from the period returns' skew and kurtosis."""
    if not np.isfinite(ppy):
        return Estimate(annualised)
    per_period = annualised / np.sqrt(ppy)
    sd = r.std()
    skew = float(np.mean(((r - r.mean()) / sd) ** 3)) if sd > 0 else 0.0
    kurt = float(np.mean(((r - r.mean()) / sd) ** 4)) if sd > 0 else 3.0
    se = sharpe_se(per_period, skew, kurt, n_eff)
    t = t_quantile(n_eff)
    if se is None or t is None:
        return Estimate(annualised)
    se_a = se * float(np.sqrt(ppy))
    return Estimate(annualised, se_a, annualised - t * se_a, annualised + t * se_a)


def _mean(values) -> float | None:
    kept = [v for v in values if v is not None]
    return float(np.mean(kept)) if kept else None


def _finite(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None
