"""Technical indicators on one symbol's time-ordered series; `example.compute_features` builds features from them.

Every function's value at row t reads rows <= t only: rolling windows, shifts into the past and
recursive (Wilder) smoothing. That is what keeps the features free of look-ahead, and
`tests/unit/test_example_data.py` checks it by perturbing the future. `forward_return` is the one
exception, on purpose: it is the label.
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def log_return(price: pd.Series, periods: int) -> pd.Series:
    return np.log(price / price.shift(periods))


def realised_vol(returns: pd.Series, window: int) -> pd.Series:
    """Standard deviation of daily returns over the window (not annualised)."""
    return returns.rolling(window).std()


def parkinson_vol(high: pd.Series, low: pd.Series, window: int) -> pd.Series:
    """Volatility from the daily high-low range, which uses intraday information that close-to-close misses."""
    squared = np.log(high / low) ** 2
    return np.sqrt(squared.rolling(window).mean() / (4.0 * np.log(2.0)))


def wilder_mean(series: pd.Series, period: int) -> pd.Series:
    """Wilder's smoothing (an EMA with alpha = 1/period), as ATR and RSI are defined."""
    return series.ewm(alpha=1.0 / period, adjust=False, min_periods=period).mean()


def true_range(high: pd.Series, low: pd.Series, close: pd.Series) -> pd.Series:
    """The day's range widened by any gap from the previous close (the first day has no gap)."""
    previous = close.shift(1)
    return pd.concat([high - low, (high - previous).abs(), (low - previous).abs()], axis=1).max(axis=1)


def atr(high: pd.Series, low: pd.Series, close: pd.Series, period: int) -> pd.Series:
    return wilder_mean(true_range(high, low, close), period)


def rsi(price: pd.Series, period: int) -> pd.Series:
    """Relative strength index in [0, 100]; 50 when the window had neither gains nor losses."""
    change = price.diff()
    gain = wilder_mean(change.clip(lower=0.0), period)
    loss = wilder_mean((-change).clip(lower=0.0), period)
    # 100 * gain / (gain + loss) equals the textbook 100 - 100 / (1 + gain / loss) without dividing by zero.
    total = gain + loss
    return (100.0 * gain / total.where(total > 0)).where(total > 0, 50.0).where(total.notna())


def zscore(series: pd.Series, window: int) -> pd.Series:
    """How unusual today's value is against the trailing window that includes today."""
    rolling = series.rolling(window)
    return (series - rolling.mean()) / rolling.std()


def momentum_skipping(price: pd.Series, lookback: int, skip: int) -> pd.Series:
    """Log return from `lookback` days ago to `skip` days ago: momentum without the short-term reversal."""
    return np.log(price.shift(skip) / price.shift(lookback))


def distance_to_mean(price: pd.Series, window: int) -> pd.Series:
    return price / price.rolling(window).mean() - 1.0


def drawdown(price: pd.Series, window: int) -> pd.Series:
    """Fall from the highest price of the trailing window (0 at a new high, negative below it)."""
    return price / price.rolling(window).max() - 1.0


def forward_return(price: pd.Series, horizon: int) -> pd.Series:
    """Simple return from today's price to the price `horizon` rows later; NaN where that row does not exist."""
    return price.shift(-horizon) / price - 1.0
