"""Small synthetic panels with a known signal, for the contract tests, the stage tests and smoke benchmarks.

Shape matches `trainpipe.data.loading.Panel.frame`: long format, 'ts' (UTC), 'symbol', features
`f0..`, targets `fwd_ret_1d` / `fwd_ret_5d` (regression) and `y_up_1d` (binary), sorted by (ts, symbol).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from trainpipe.contract.targets import BarCalendar
from trainpipe.data.calendar import bar_calendar
from trainpipe.data.frames import frame_ts


def synthetic_frame(n_ts: int = 160, symbols: Sequence[str] = ("AAA", "BBB", "CCC"), n_features: int = 6, seed: int = 0) -> pd.DataFrame:
    """A panel whose 1-day target depends on f0 and f1 (and a little on the previous row's f2), plus noise and some NaNs."""
    rng = np.random.default_rng(seed)
    ts = pd.date_range("2020-01-01", periods=n_ts, freq="B", tz="UTC")
    parts = []
    for symbol in symbols:
        x = rng.standard_normal((n_ts, n_features))
        x[:, 2] = np.cumsum(x[:, 2]) * 0.1  # one persistent feature so sequence models have something to see
        signal = 0.6 * x[:, 0] - 0.4 * x[:, 1] + 0.3 * np.r_[0.0, x[:-1, 2]]
        ret1 = 0.01 * (signal + rng.standard_normal(n_ts))
        frame = pd.DataFrame(x, columns=[f"f{j}" for j in range(n_features)])
        frame.insert(0, "symbol", symbol)
        frame.insert(0, "ts", ts)
        frame["fwd_ret_1d"] = ret1
        frame["fwd_ret_5d"] = pd.Series(ret1).rolling(5).sum().shift(-4).to_numpy()  # NaN at the end, like real forward returns
        frame["y_up_1d"] = (ret1 > 0).astype(float)
        frame.loc[frame.index[-1], ["fwd_ret_1d", "y_up_1d"]] = np.nan
        frame.loc[rng.choice(n_ts, size=max(1, n_ts // 50), replace=False), "f3"] = np.nan
        parts.append(frame)
    out = pd.concat(parts, ignore_index=True)
    return out.sort_values(["ts", "symbol"], kind="stable").reset_index(drop=True)


@dataclass(frozen=True)
class SyntheticPanel:
    """Duck-type of `trainpipe.data.loading.Panel` for tests and smoke benchmarks."""

    frame: pd.DataFrame
    features: list[str]
    targets: list[str]
    symbols: list[str]
    interval_minutes: float
    files: list[str]

    @property
    def calendar(self) -> BarCalendar:
        """Read from the bars as the loader does (business days, here)."""
        return bar_calendar(frame_ts(self.frame).view("int64"))


PANEL_FILE = "panel.parquet"
SYNTHETIC_LOADER = "trainpipe_bench.synthetic:load_synthetic_panel"


def write_synthetic_data(data_dir: Path, frame: pd.DataFrame) -> Path:
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / PANEL_FILE
    frame.to_parquet(path, index=False)
    return path


def load_synthetic_panel(data_dir: Path, symbols: Sequence[str] | None = None, *, interval: str | None = None,
                         columns: Sequence[str] | None = None, **_: object) -> SyntheticPanel:
    """Same call shape as `load_panel`; reads `<data_dir>/panel.parquet` written by `write_synthetic_data`."""
    frame = pd.read_parquet(Path(data_dir) / PANEL_FILE)
    if symbols is not None:
        frame = frame[frame["symbol"].isin(list(symbols))]
    targets = [c for c in frame.columns if c.startswith(("fwd_ret_", "y_"))]
    features = [c for c in frame.columns if c not in ("ts", "symbol") and c not in targets]
    if columns is not None:
        keep = [c for c in columns if c in frame.columns]
        frame = frame[["ts", "symbol", *keep]]
        features = [c for c in features if c in keep]
        targets = [c for c in targets if c in keep]
    frame = frame.sort_values(["ts", "symbol"], kind="stable").reset_index(drop=True)
    return SyntheticPanel(frame, features, targets, sorted(frame["symbol"].unique()), 1440.0, [str(Path(data_dir) / PANEL_FILE)])


def planted_panel(n_days: int = 1000, symbols=("AAA", "BBB", "CCC"), seed: int = 0, signal: float = 0.1, leak: bool = False) -> pd.DataFrame:
    """Daily panel: `sig` predicts fwd_ret_1d and y_up_1d; `noise_*` do not; `fwd_ret_noise_1d` is unpredictable.

    The default signal gives `sig` an IC of about 0.1 with the next day's return: the top of what real
    daily features reach, so a stronger one would (rightly) trip the leak and too-good guards.
    """
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
