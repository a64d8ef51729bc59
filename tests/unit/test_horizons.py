"""Target horizons read from column names (or stated in the spec), converted to bars with the data's interval."""

from __future__ import annotations

import pytest

from trainpipe.contract.pipeline import PipelineSpec
from trainpipe.contract.targets import HorizonError, horizon_bars, horizon_minutes

DAILY, HOURLY, FIVE_MIN = 1440.0, 60.0, 5.0


@pytest.mark.parametrize(
    "target,interval,bars",
    [
        ("fwd_ret_1d", DAILY, 1),
        ("fwd_ret_5d", DAILY, 5),
        ("y_up_20d", DAILY, 20),
        ("fwd_ret_20", DAILY, 20),  # no unit: bars, whatever the interval
        ("fwd_ret_20", FIVE_MIN, 20),
        ("fwd_ret_noise_1d", DAILY, 1),  # the horizon is the last token, whatever precedes it
        ("fwd_ret_1w", DAILY, 7),  # calendar week: on business-day bars a longer, safe purge
        ("fwd_ret_3mo", DAILY, 90),  # mo is months, m is minutes
        ("fwd_ret_30m", FIVE_MIN, 6),
        ("fwd_ret_1h", FIVE_MIN, 12),
        ("fwd_ret_1d", FIVE_MIN, 288),  # far more than 40 bars
        ("fwd_ret_1d", HOURLY, 24),
        ("fwd_ret_7m", FIVE_MIN, 2),  # rounded up: a purge may not be short
        ("y_up_30m", DAILY, 1),  # shorter than a bar: still the next bar
    ],
)
def test_horizon_table(target, interval, bars):
    assert horizon_bars(target, interval) == bars


@pytest.mark.parametrize("target", ["fwd_ret_close", "y_up_5d_vol", "fwd_ret_5x", "y_up", "fwd_ret_0d", "fwd_ret_d5"])
def test_an_unreadable_horizon_is_an_error_naming_the_column_and_the_spec_field(target):
    with pytest.raises(HorizonError, match=rf"'{target}'.*targets\.horizonBars"):
        horizon_bars(target, DAILY)


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
