"""What a target column is: its task type and horizon, read from its name (and values when the name is silent)."""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from trainpipe.contract.names import (
    CLASSIFICATION_TARGET_PREFIX,
    REGRESSION_TARGET_PREFIX,
    TARGET_PREFIXES,
    TaskType,
)

# The horizon is the name's last `_` token: `<n>` bars, or `<n><unit>` with a unit of time (`m` is minutes
# and `mo` months). A label with a threshold names it after the horizon (`y_will_peak_60m_0.8`): a last
# token with a decimal point is that threshold, and the horizon is the token before it. A whole number
# last is always the horizon in bars, so `fwd_ret_20` stays 20 bars.
_HORIZON_TOKEN = re.compile(r"^(\d+)(m|h|d|w|mo)?$")
_THRESHOLD_TOKEN = re.compile(r"^[+-]?\d*\.\d+$")
_CLOCK_MINUTES = {"m": 1, "h": 60}
# Calendar units count trading days of the data's own calendar: a day is one day's bars, a week the days a
# week holds bars (5 on business-day data, 7 on crypto), a month those over 30/7 weeks (30 days when every day trades).
_WEEKS = {"w": 1.0, "mo": 30 / 7}
_UNIT_MINUTES = {"m": 1, "h": 60, "d": 1440, "w": 7 * 1440, "mo": 30 * 1440}
HORIZON_OVERRIDE_FIELD = "targets.horizonBars"
_MINUTES_PER_DAY = 1440


class HorizonError(ValueError):
    """A target whose name does not say its horizon; the message names the column and the spec field that does."""


@dataclass(frozen=True)
class BarCalendar:
    """How the data's bars fall in time, so that a horizon in minutes, days, weeks or months becomes bars.

    `interval_minutes` is the usual gap between bars; `bars_per_day` the bars of one trading day (1 on daily
    bars, 78 on a 6.5-hour session of 5-minute bars, 288 on round-the-clock 5-minute bars); `days_per_week`
    the trading days of a week (5 on business days, 7 on crypto). The loader reads them from the timestamps.
    """

    interval_minutes: float
    bars_per_day: float
    days_per_week: float = 7.0

    @classmethod
    def continuous(cls, interval_minutes: float) -> BarCalendar:
        """Bars round the clock, every day of the week: every minute of a horizon is a minute of bars."""
        per_day = _MINUTES_PER_DAY / interval_minutes if interval_minutes > 0 else 0.0
        return cls(interval_minutes, per_day, 7.0)

    def bars(self, n: int, unit: str) -> int:
        """Bars in `n` units (rounded up, at least 1: a label always uses t+1)."""
        if unit in _CLOCK_MINUTES:
            exact = n * _CLOCK_MINUTES[unit] / self.interval_minutes
        else:
            days = n if unit == "d" else n * _WEEKS[unit] * self.days_per_week
            exact = days * self.bars_per_day
        return max(1, math.ceil(exact - 1e-9))


def is_target(column: str) -> bool:
    return column.startswith(TARGET_PREFIXES)


def _token(target: str) -> re.Match[str] | None:
    tokens = target.split("_")
    if len(tokens) > 2 and _THRESHOLD_TOKEN.match(tokens[-1]):
        return _HORIZON_TOKEN.match(tokens[-2])
    return _HORIZON_TOKEN.match(tokens[-1])


def horizon_minutes(target: str) -> int | None:
    """Horizon in minutes of the clock from the name's `<n><unit>` token; None when it is in bars (or unreadable)."""
    match = _token(target)
    if match is None or match.group(2) is None:
        return None
    return int(match.group(1)) * _UNIT_MINUTES[match.group(2)]


def horizon_bars(target: str, calendar: BarCalendar, overrides: Mapping[str, int] | None = None) -> int:
    """Bars between a row and the last bar its label looks at: `overrides[target]`, else read from the name.

    `fwd_ret_20` is 20 bars; `fwd_ret_5d`, `y_up_1w`, `fwd_ret_3mo`, `fwd_ret_30m`, `y_will_peak_60m_0.8` are
    converted with the data's calendar: minutes and hours by the bar interval, days, weeks and months by the
    trading days and bars per day the data holds. A name whose horizon token cannot be read is an error, never
    a silent 1 bar: its purge and leak scan would be too short.
    """
    if overrides and target in overrides:
        return max(1, int(overrides[target]))
    match = _token(target)
    if match is None or int(match.group(1)) < 1:
        raise HorizonError(
            f"target column {target!r}: cannot read its horizon; name it <prefix>_<n>[m|h|d|w|mo] (no unit = bars), "
            f"optionally followed by a decimal threshold (y_will_peak_60m_0.8), "
            f"or give it in bars in the spec: {HORIZON_OVERRIDE_FIELD}: {{{target}: <bars>}}"
        )
    n, unit = int(match.group(1)), match.group(2)
    if unit is None:
        return n
    if calendar.interval_minutes <= 0:
        raise HorizonError(f"target column {target!r}: the data's interval is unknown, so {n}{unit} cannot be converted to bars; "
                           f"set data.interval or {HORIZON_OVERRIDE_FIELD}")
    return calendar.bars(n, unit)


def positive_label(labels: Iterable[float]) -> float:
    """The positive class of a binary target: its higher label (1 of 0/1, 1 of -1/1, 2 of 1/2).

    Training encodes it as 1 and evaluation scores it as 1; pass distinct labels (np.unique) for big arrays.
    """
    values = sorted(set(float(v) for v in labels if math.isfinite(v)))
    if len(values) == 0:
        raise ValueError("a binary target with no labelled rows has no positive class")
    return values[-1]


def task_type(target: str, distinct_values: int | None = None, integer_like: bool = True) -> TaskType:
    """`fwd_ret_*` is regression; `y_*` is binary with two values, multiclass with up to ten integer values."""
    if target.startswith(REGRESSION_TARGET_PREFIX):
        return TaskType.REGRESSION
    if target.startswith(CLASSIFICATION_TARGET_PREFIX):
        if distinct_values is None or distinct_values <= 2:
            return TaskType.BINARY
        if distinct_values <= 10 and integer_like:
            return TaskType.MULTICLASS
        return TaskType.REGRESSION
    raise ValueError(f"{target!r} is not a target column: target names start with one of {TARGET_PREFIXES}")

