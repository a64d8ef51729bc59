"""Target horizons read from column names (or stated in the spec), converted to bars with the data's interval."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from trainpipe.contract.pipeline import PipelineSpec
from trainpipe.contract.targets import BarCalendar, HorizonError, horizon_bars, horizon_minutes
from trainpipe.data.calendar import bar_calendar

# Calendars as the loader reads them from timestamps (see test_calendars_are_read_from_the_bars).
DAILY, HOURLY, FIVE_MIN = BarCalendar.continuous(1440.0), BarCalendar.continuous(60.0), BarCalendar.continuous(5.0)
BUSINESS_DAYS = BarCalendar(1440.0, 1.0, 5.0)
SESSION_5M = BarCalendar(5.0, 78.0, 5.0)  # 09:30–16:00 on business days


@pytest.mark.parametrize(
    "target,calendar,bars",
    [
        ("fwd_ret_1d", DAILY, 1),
        ("fwd_ret_5d", DAILY, 5),
        ("y_up_20d", DAILY, 20),
        ("fwd_ret_20", DAILY, 20),  # no unit: bars, whatever the interval
        ("fwd_ret_20", FIVE_MIN, 20),
        ("fwd_ret_noise_1d", DAILY, 1),  # the horizon is the last token, whatever precedes it
        ("fwd_ret_1w", DAILY, 7),  # every day trades: a week is 7 bars
        ("fwd_ret_3mo", DAILY, 90),  # mo is months, m is minutes
        ("fwd_ret_30m", FIVE_MIN, 6),
        ("fwd_ret_1h", FIVE_MIN, 12),
        ("fwd_ret_1d", FIVE_MIN, 288),  # round the clock: a day is 288 five-minute bars
        ("fwd_ret_1d", HOURLY, 24),
        ("fwd_ret_7m", FIVE_MIN, 2),  # rounded up: a purge may not be short
        ("y_up_30m", DAILY, 1),  # shorter than a bar: still the next bar
        # Business-day and session bars count bars of their own calendar: calendar units counted 7 days a week
        # made a weekly label 7 rows on business days, and a past weekly return a "leak" of it 5 rows back.
        ("fwd_ret_1w", BUSINESS_DAYS, 5),
        ("fwd_ret_5d", BUSINESS_DAYS, 5),
        ("fwd_ret_1mo", BUSINESS_DAYS, 22),  # 30/7 weeks of 5 days (21.4), rounded up
        ("fwd_ret_1d", SESSION_5M, 78),  # was 288
        ("fwd_ret_1w", SESSION_5M, 390),
        ("fwd_ret_60m", SESSION_5M, 12),  # the clock's minutes stay minutes
        # FoxML labels carry a threshold after the horizon token.
        ("y_will_peak_60m_0.8", FIVE_MIN, 12),
        ("y_will_valley_60m_0.8", SESSION_5M, 12),
        ("y_will_peak_5d_1.5", BUSINESS_DAYS, 5),
        ("y_will_peak_20_0.8", DAILY, 20),
    ],
)
def test_horizon_table(target, calendar, bars):
    assert horizon_bars(target, calendar) == bars


@pytest.mark.parametrize("target", ["fwd_ret_close", "y_up_5d_vol", "fwd_ret_5x", "y_up", "fwd_ret_0d", "fwd_ret_d5", "fwd_ret_0.8", "y_peak_x_0.8"])
def test_an_unreadable_horizon_is_an_error_naming_the_column_and_the_spec_field(target):
    with pytest.raises(HorizonError, match=rf"'{target}'.*targets\.horizonBars"):
        horizon_bars(target, DAILY)


def _stamps(index: pd.DatetimeIndex) -> np.ndarray:
    return index.tz_localize("UTC").asi8


@pytest.mark.parametrize(
    "stamps,calendar",
    [
        (pd.date_range("2020-01-01", periods=600, freq="D"), BarCalendar(1440.0, 1.0, 7.0)),
        (pd.date_range("2020-01-01", periods=600, freq="B"), BUSINESS_DAYS),
        # A session of 5-minute bars, 09:30 to 15:55 (78 bars), on business days.
        (pd.DatetimeIndex([d + pd.Timedelta(minutes=570 + 5 * k) for d in pd.date_range("2021-03-01", periods=30, freq="B") for k in range(78)]),
         SESSION_5M),
        (pd.date_range("2021-03-01", periods=3000, freq="5min"), BarCalendar(5.0, 288.0, 7.0)),
        (pd.date_range("2015-01-02", periods=300, freq="W-FRI"), BarCalendar.continuous(7 * 1440.0)),
    ],
    ids=["daily", "business-days", "session-5m", "round-the-clock-5m", "weekly"],
)
def test_calendars_are_read_from_the_bars(stamps, calendar):
    assert bar_calendar(_stamps(stamps)) == calendar


def test_a_holiday_leaves_the_business_day_calendar_alone():
    days = pd.date_range("2020-01-01", periods=600, freq="B")
    assert bar_calendar(_stamps(days.delete([10, 60, 200]))) == BUSINESS_DAYS


def test_the_spec_states_a_horizon_the_name_cannot():
    spec = PipelineSpec.model_validate({"targets": {"horizonBars": {"fwd_ret_close": 3, "fwd_ret_5d": 4}}})
    assert horizon_bars("fwd_ret_close", DAILY, spec.targets.horizon_bars) == 3
    assert horizon_bars("fwd_ret_5d", DAILY, spec.targets.horizon_bars) == 4  # stated exactly wins over the name


def test_minutes_are_known_only_for_units_of_time():
    assert horizon_minutes("fwd_ret_5d") == 5 * 1440
    assert horizon_minutes("fwd_ret_2w") == 2 * 7 * 1440
    assert horizon_minutes("fwd_ret_1mo") == 30 * 1440
    assert horizon_minutes("fwd_ret_20") is None
    assert horizon_minutes("fwd_ret_close") is None
    assert horizon_minutes("y_will_peak_60m_0.8") == 60


def test_a_run_stops_at_rank_on_an_unreadable_horizon_and_the_spec_field_fixes_it(tmp_path):
    from panels import make_panel, write_panel
    from trainpipe.contract.names import Stage
    from trainpipe.data.errors import DataError
    from trainpipe.io.layout import Layout
    from trainpipe.io.stage_files import read_rankings
    from trainpipe.runner.steps import RunContext, run_stage

    frame = make_panel(n_days=400).rename(columns={"fwd_ret_noise_1d": "fwd_ret_close"})
    write_panel(frame, tmp_path / "data")
    wire = {"data": {"dir": str(tmp_path / "data"), "minRowsPerSymbol": 100}, "features": {"topM": 3}, "ranking": {"folds": 2}}
    ctx = RunContext(spec=PipelineSpec.model_validate(wire), layout=Layout(tmp_path / "a"), threads=1)
    with pytest.raises(DataError, match=r"'fwd_ret_close'.*targets\.horizonBars"):
        run_stage(ctx, Stage.RANK)
    fixed = PipelineSpec.model_validate({**wire, "targets": {"horizonBars": {"fwd_ret_close": 3}}})
    ctx = RunContext(spec=fixed, layout=Layout(tmp_path / "b"), threads=1)
    run_stage(ctx, Stage.RANK)
    cut = read_rankings(ctx.layout).holdout_cut
    assert cut.horizon_bars["fwd_ret_close"] == 3 and cut.purge_bars == 3 + 5  # the longest horizon + the default embargo
