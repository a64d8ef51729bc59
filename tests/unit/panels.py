"""Tiny synthetic panels for stage tests: known signal, known noise, optional planted leak."""

from __future__ import annotations

import numpy as np
import pandas as pd


def make_panel(n_days: int = 400, symbols=("AAA", "BBB", "CCC"), seed: int = 0, signal: float = 0.3, leak: bool = False) -> pd.DataFrame:
    """Daily panel: `sig` predicts fwd_ret_1d and y_up_1d; `noise_*` do not; `fwd_ret_noise_1d` is unpredictable."""
    rng = np.random.default_rng(seed)
    ts = pd.date_range("2020-01-01", periods=n_days, freq="D", tz="UTC")
    frames = []
    for sym in symbols:
        sig = rng.normal(size=n_days)
        ret = signal * sig * 0.01 + rng.normal(scale=0.01, size=n_days)
        f = pd.DataFrame({"ts": ts, "symbol": sym, "sig": sig})
        for k in range(4):
            f[f"noise_{k}"] = rng.normal(size=n_days)
        f["fwd_ret_1d"] = ret
        f["y_up_1d"] = (ret > 0).astype(float)
        f["fwd_ret_noise_1d"] = rng.normal(scale=0.01, size=n_days)
        if leak:
            f["leaky"] = f["fwd_ret_noise_1d"] + rng.normal(scale=1e-5, size=n_days)
        frames.append(f)
    out = pd.concat(frames).sort_values(["ts", "symbol"], kind="stable").reset_index(drop=True)
    return out


FEATURES = ["sig", "noise_0", "noise_1", "noise_2", "noise_3"]
TARGETS = ["fwd_ret_1d", "y_up_1d", "fwd_ret_noise_1d"]


def write_panel(frame: pd.DataFrame, out) -> None:
    """Write a panel as the loader reads it: <out>/symbol=<SYM>/<SYM>.parquet, one file per symbol."""
    from pathlib import Path

    for sym, rows in frame.groupby("symbol"):
        folder = Path(out) / f"symbol={sym}"
        folder.mkdir(parents=True, exist_ok=True)
        rows.drop(columns="symbol").reset_index(drop=True).to_parquet(folder / f"{sym}.parquet", index=False)
