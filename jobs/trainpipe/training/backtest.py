"""The holdout backtests of a model's predictions, net of trading costs: long/short against zero, long-only against buy-and-hold; called by the stage worker.

Positions are rebalanced every `horizon_bars` timestamps so consecutive holding periods of the
forward-return target do not overlap (overlapping periods would inflate the Sharpe ratio); each of the
`horizon_bars` rebalance phases is run and the figures are their means.

Two books, each judged against what it must beat:
* **Long/short**, compared with zero. Several symbols at a timestamp: long the top `quantile` by
  prediction, short the bottom, equal weights, gross exposure 1 (0.5 each side), so it carries no
  market drift. One symbol: position sign(prediction − centre) (centre 0 for returns, 0.5 for
  probabilities).
* **Long-only**, compared with buy-and-hold. Several symbols: long the top `quantile` (weights sum to 1)
  against an equal-weight long book of every symbol present; one symbol: long when the prediction is
  above the centre, flat otherwise, against holding it throughout. A long-only book rides the market's
  drift, so its own Sharpe says nothing about skill: its excess over buy-and-hold does
  (`long_only_excess_sharpe`, the Sharpe of the difference, with its interval).
Costs: each rebalance pays `cost_bps` / 10,000 of the value it trades, Σ|w_t − w_{t−1}| (the first book
trades from flat); weights are the book's at rebalance, drift in between ignored. Every Sharpe is net
of costs, `sharpe_gross` beside the long/short one. Turnover is the mean over rebalances after the
first of Σ|w_t − w_{t−1}| (gross exposure 1, so 2.0 = a full flip of the long/short book).
Annualisation uses the bars per year measured on the data's own timestamps (`bars_per_year`), never a
calendar table: weekly bars have about 52, equity days about 252, crypto days 365, 5-minute FX bars
about 74,000.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from trainpipe.stages.uncertainty import Estimate, sharpe_se, t_quantile

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


QUANTILE = 1 / 3  # the share of a cross-section each side of the book holds


@dataclass(frozen=True)
class Books:
    """The books opened at each holdout timestamp (rows, in time order) over the symbols (columns), and what each symbol returned."""

    returns: np.ndarray  # each symbol's forward return from that timestamp (0 where it has no row)
    long_short: np.ndarray  # gross exposure 1, or 0 where the model is flat
    long_only: np.ndarray  # weights summing to 1, or 0 where the model is flat
    market: np.ndarray  # equal weights over the symbols present: buy and hold for one symbol
    cross_sectional: bool  # several symbols: books rank them at each timestamp

    def __len__(self) -> int:
        return len(self.returns)


def books(pred: np.ndarray, returns: np.ndarray | None, ts: np.ndarray, symbols: np.ndarray, *, centre: float,
          quantile: float = QUANTILE) -> Books:
    """The long/short, long-only and market books of `pred` (rows with a non-finite prediction or return left out).

    Cross-sectional (several symbols) books skip timestamps with fewer than 2 symbols; ties in the
    prediction are broken by symbol name. `returns` None gives the positions alone (returns 0).
    """
    r = np.zeros(len(pred)) if returns is None else np.asarray(returns, dtype=np.float64)
    frame = pd.DataFrame({"ts": np.asarray(ts), "symbol": np.asarray(symbols).astype(str), "p": np.asarray(pred, dtype=np.float64), "r": r})
    frame = frame[np.isfinite(frame["p"]) & np.isfinite(frame["r"])].sort_values(["ts", "p", "symbol"], kind="stable")
    cross_sectional = frame["symbol"].nunique() > 1
    if cross_sectional:
        frame = frame[frame.groupby("ts")["ts"].transform("size") >= 2]
        size = frame.groupby("ts")["ts"].transform("size").to_numpy()
        place = frame.groupby("ts").cumcount().to_numpy()  # 0 = lowest prediction
        k = np.maximum(1, np.floor(size * quantile)).astype(int)
        top, bottom = place >= size - k, place < k
        frame = frame.assign(ls=np.where(top, 0.5 / k, 0.0) - np.where(bottom, 0.5 / k, 0.0), lo=np.where(top, 1.0 / k, 0.0), mk=1.0 / size)
    else:
        p = frame["p"].to_numpy()
        frame = frame.assign(ls=np.sign(p - centre), lo=(p > centre).astype(np.float64), mk=1.0)
    if frame.empty:
        empty = np.zeros((0, 0))
        return Books(empty, empty, empty, empty, cross_sectional)
    table = frame.pivot_table(index="ts", columns="symbol", values=["r", "ls", "lo", "mk"], aggfunc="sum", fill_value=0.0, sort=True)
    return Books(table["r"].to_numpy(), table["ls"].to_numpy(), table["lo"].to_numpy(), table["mk"].to_numpy(), cross_sectional)


@dataclass(frozen=True)
class Leg:
    """One book on one rebalance calendar: its period returns net of costs, before them, and the value each rebalance traded."""

    net: np.ndarray
    gross: np.ndarray
    traded: np.ndarray

    @classmethod
    def run(cls, weights: np.ndarray, returns: np.ndarray, cost: float) -> Leg:
        gross = (weights * returns).sum(axis=1)
        traded = np.abs(np.diff(weights, axis=0, prepend=np.zeros((1, weights.shape[1])))).sum(axis=1)
        return cls(gross - cost * traded, gross, traded)

    @property
    def turnover(self) -> float | None:
        # The first book opens the position: turnover counts the rebalances after it.
        return float(self.traded[1:].mean()) if len(self.traded) > 1 else None


def long_short_backtest(
    pred: np.ndarray,
    returns: np.ndarray,
    ts: np.ndarray,
    symbols: np.ndarray,
    *,
    horizon_bars: int,
    bars_a_year: float,
    centre: float = 0.0,
    quantile: float = QUANTILE,
    cost_bps: float = 0.0,
) -> dict[str, float | int | str | None]:
    """Both backtests averaged over their `horizon_bars` rebalance phases, net of `cost_bps` (the run passes `training.costBps`).

    Which bar the first rebalance falls on is arbitrary, and with few periods the phases' Sharpes
    differ by a good part of their standard error; so every phase (start at bar 0, 1, …, h − 1) is run and the figures
    are their means (`sharpe_phase_min/max` show the spread). Standard errors count timestamps / h
    independent periods, with the returns' skew and kurtosis (`uncertainty.sharpe_se`).
    """
    book = books(pred, returns, ts, symbols, centre=centre, quantile=quantile)
    cross_sectional = book.cross_sectional
    h = max(1, int(horizon_bars))
    cost = float(cost_bps) / 10_000
    mode = "cross_sectional_long_short" if cross_sectional else "single_symbol_sign"
    baseline_mode = "equal_weight_long" if cross_sectional else "buy_and_hold"
    ppy = periods_per_year(bars_a_year, h)
    starts = range(min(h, len(book)))
    ls = [Leg.run(book.long_short[p::h], book.returns[p::h], cost) for p in starts]
    lo = [Leg.run(book.long_only[p::h], book.returns[p::h], cost) for p in starts]
    mk = [Leg.run(book.market[p::h], book.returns[p::h], cost) for p in starts]
    sharpes = [s for s in (sharpe(leg.net, ppy) for leg in ls) if s is not None]
    if len(book) < 2 * h or not sharpes:
        return {"mode": mode, "compared_with": "zero", "n_periods": len(book) // h, "cost_bps": float(cost_bps), "mean_return": None,
                "annualised_return": None, "sharpe": None, "turnover": None, "baseline_mode": baseline_mode, "baseline_sharpe": None,
                "bars_per_year": _finite(bars_a_year)}
    n_eff = len(book) / h
    net = np.concatenate([leg.net for leg in ls])
    out: dict[str, float | int | str | None] = {
        "mode": mode,
        "compared_with": "zero",
        "n_periods": int(n_eff),
        "n_eff": n_eff,
        "rebalance_every_bars": h,
        "phases": len(ls),
        "cost_bps": float(cost_bps),
        "mean_return": float(net.mean()),
        "mean_return_gross": float(np.concatenate([leg.gross for leg in ls]).mean()),
        "annualised_return": _finite(float(net.mean() * ppy)),
        "annualised_cost": _finite(float(cost * np.concatenate([leg.traded for leg in ls]).mean() * ppy)),
        "periods_per_year": _finite(ppy),
    }
    out |= _phase_sharpe([leg.net for leg in ls], n_eff, ppy).fields("sharpe")
    out |= {
        "sharpe_gross": _mean(sharpe(leg.gross, ppy) for leg in ls),
        "sharpe_phase_min": float(min(sharpes)),
        "sharpe_phase_max": float(max(sharpes)),
        "sharpe_noise_se": _finite(float(np.sqrt(ppy / n_eff))),  # the standard error at zero skill: what noise alone spreads
        "turnover": _mean(leg.turnover for leg in ls),
        "hit_rate": _mean(float(np.mean(leg.net > 0)) for leg in ls),
        "long_only_mode": "top_quantile_long" if cross_sectional else "long_or_flat",
        "long_only_compared_with": baseline_mode,
        "long_only_sharpe": _mean(sharpe(leg.net, ppy) for leg in lo),
        "long_only_turnover": _mean(leg.turnover for leg in lo),
    }
    out |= _phase_sharpe([a.net - b.net for a, b in zip(lo, mk, strict=True)], n_eff, ppy).fields("long_only_excess_sharpe")
    out |= {
        "baseline_mode": baseline_mode,
        "baseline_sharpe": _mean(sharpe(leg.net, ppy) for leg in mk),
        "baseline_hit_rate": _mean(float(np.mean(leg.net > 0)) for leg in mk),
        "bars_per_year": _finite(bars_a_year),
    }
    return out


def _phase_sharpe(per_phase: list[np.ndarray], n_eff: float, ppy: float) -> Estimate:
    """The mean over phases of the annualised Sharpe, with its standard error and interval from the pooled returns' skew and kurtosis."""
    values = [s for s in (sharpe(r, ppy) for r in per_phase) if s is not None]
    if not values:
        return Estimate(None)
    annualised = float(np.mean(values))
    if not np.isfinite(ppy):
        return Estimate(annualised)
    r = np.concatenate(per_phase)
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
