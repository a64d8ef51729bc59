"""The calendar the bars keep (interval, bars per trading day, trading days per week), read from their timestamps by the loader."""

from __future__ import annotations

import numpy as np

from trainpipe.contract.targets import BarCalendar

_NS_PER_MINUTE = 60 * 1_000_000_000
_NS_PER_DAY = 1440 * _NS_PER_MINUTE
_DAYS_PER_WEEK = 7
# Bars further apart than this are weekly or monthly: a day or a week of them is a span of clock time, not of sessions.
_DAILY_AT_MOST_MINUTES = 1.5 * 1440


def bar_calendar(ts_ns: np.ndarray) -> BarCalendar:
    """The calendar of bars at `ts_ns` (int64 UTC nanoseconds, any symbols, any order).

    The interval is the median gap between distinct timestamps; bars per day the median number of distinct
    timestamps on a date that has any; days per week the median number of dates with bars in a week, over
    the weeks wholly inside the data (the first and last may be cut short; with none, the fuller of those). Medians, so holidays and
    half-days leave the answer alone. One timestamp has no interval (0: horizons in units of time then fail
    naming the spec field that states them in bars).
    """
    unique = np.unique(np.asarray(ts_ns, dtype=np.int64))
    if len(unique) < 2:
        return BarCalendar(0.0, 0.0)
    interval = float(np.median(np.diff(unique))) / _NS_PER_MINUTE
    if interval > _DAILY_AT_MOST_MINUTES:
        return BarCalendar.continuous(interval)
    days, bars_on_day = np.unique(unique // _NS_PER_DAY, return_counts=True)
    # 1970-01-01 was a Thursday: shifting by 3 days makes weeks start on Monday.
    weeks, days_in_week = np.unique((days + 3) // _DAYS_PER_WEEK, return_counts=True)
    # Without a whole week inside, the fuller of the cut-short ones says most.
    per_week = float(np.median(days_in_week[1:-1]) if len(weeks) > 2 else days_in_week.max())
    return BarCalendar(interval, float(np.median(bars_on_day)), min(float(_DAYS_PER_WEEK), max(1.0, per_week)))
