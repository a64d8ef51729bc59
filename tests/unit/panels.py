"""Tiny synthetic panels for stage tests: known signal, known noise, optional planted leak."""

from __future__ import annotations

import numpy as np
import pandas as pd

# One generator for the tests and the evidence benchmark: the panel a planted IC is measured on.
from trainpipe_bench.synthetic import planted_panel as make_panel  # noqa: F401


def unequal_histories(frame: pd.DataFrame, listed: dict[str, tuple[int, int]]) -> pd.DataFrame:
    """`frame` with each symbol in `listed` kept only from its first to before its last day index (listings, delistings)."""
    day = (frame["ts"] - frame["ts"].min()).dt.days
    keep = pd.Series(True, index=frame.index)
    for symbol, (first, end) in listed.items():
        keep &= (frame["symbol"] != symbol) | ((day >= first) & (day < end))
    return frame.loc[keep].reset_index(drop=True)


FEATURES = ["sig", "noise_0", "noise_1", "noise_2", "noise_3"]
TARGETS = ["fwd_ret_1d", "y_up_1d", "fwd_ret_noise_1d"]


def write_panel(frame: pd.DataFrame, out) -> None:
    """Write a panel as the loader reads it: <out>/symbol=<SYM>/<SYM>.parquet, one file per symbol."""
    from pathlib import Path

    for sym, rows in frame.groupby("symbol"):
        folder = Path(out) / f"symbol={sym}"
        folder.mkdir(parents=True, exist_ok=True)
        rows.drop(columns="symbol").reset_index(drop=True).to_parquet(folder / f"{sym}.parquet", index=False)


def make_return_panel(n_days: int = 1500, symbols=("AAA", "BBB", "CCC"), seed: int = 0, horizons=(5, 20)) -> pd.DataFrame:
    """Daily returns with multi-day forward targets `fwd_ret_<h>d` and the legitimate past returns `past_ret_<k>d`.

    Returns are pure noise: no feature has skill, and each past return is the label of k bars ago
    (known at t), which a leak scan must not flag whatever the horizon.
    """
    rng = np.random.default_rng(seed)
    ts = pd.date_range("2015-01-01", periods=n_days, freq="D", tz="UTC")
    frames = []
    for sym in symbols:
        r = pd.Series(rng.normal(scale=0.01, size=n_days))
        f = pd.DataFrame({"ts": ts, "symbol": sym})
        for k in (1, 3, 5, 10, 20):
            f[f"past_ret_{k}d"] = r.rolling(k).sum()
        for h in horizons:
            f[f"fwd_ret_{h}d"] = r[::-1].rolling(h).sum()[::-1].shift(-1)  # r[t+1] + … + r[t+h]
        f["noise_0"] = rng.normal(size=n_days)
        frames.append(f)
    return pd.concat(frames).sort_values(["ts", "symbol"], kind="stable").reset_index(drop=True)


def make_noise_panel(n_days: int = 500, symbols=("AAA", "BBB", "CCC", "DDD"), n_features: int = 30, seed: int = 0,
                     persistence: float = 0.8, horizon: int = 5) -> pd.DataFrame:
    """Pure noise: features `f00…` and the multi-day forward return `fwd_ret_<horizon>d` are independent.

    Features are AR(1) with lag-one autocorrelation `persistence`, like the moving averages and
    volatilities real panels carry; the target sums the next `horizon` daily returns, so neighbouring
    labels overlap. Both make a holdout of n rows worth far fewer than n independent ones.
    """
    from scipy.signal import lfilter

    rng = np.random.default_rng(seed)
    ts = pd.date_range("2016-01-01", periods=n_days, freq="D", tz="UTC")
    frames = []
    for sym in symbols:
        shocks = rng.normal(size=(n_days, n_features))
        shocks[0] /= np.sqrt(1 - persistence**2)  # start at the stationary spread
        x = lfilter([np.sqrt(1 - persistence**2)], [1, -persistence], shocks, axis=0)
        f = pd.DataFrame(x, columns=[f"f{k:02d}" for k in range(n_features)])
        f.insert(0, "symbol", sym)
        f.insert(0, "ts", ts)
        r = pd.Series(rng.normal(scale=0.01, size=n_days))
        f[f"fwd_ret_{horizon}d"] = r[::-1].rolling(horizon).sum()[::-1].shift(-1)  # r[t+1] + … + r[t+h]
        frames.append(f)
    return pd.concat(frames).sort_values(["ts", "symbol"], kind="stable").reset_index(drop=True)
