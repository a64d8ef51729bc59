"""Tests of `trainpipe.data.loading`: the layouts it reads, what it loads, and the errors a user gets on bad data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from trainpipe.data.errors import DataError
from trainpipe.data.loading import find_files, load_panel, schema_columns


def bars(rows: int = 250, *, start: str = "2024-01-01", freq: str = "1D", seed: int = 0) -> pd.DataFrame:
    """A tiny per-symbol frame: ts, two features, one regression and one binary target."""
    rng = np.random.default_rng(seed)
    ret = rng.normal(0, 0.01, rows)
    return pd.DataFrame(
        {
            "ts": pd.date_range(start, periods=rows, freq=freq, tz="UTC"),
            "mom": rng.normal(size=rows),
            "volume": rng.integers(1_000, 5_000, rows),
            "fwd_ret_1d": ret,
            "y_up_1d": (ret > 0).astype(float),
        }
    )


def write_symbols(root: Path, frames: dict[str, pd.DataFrame]) -> Path:
    for symbol, frame in frames.items():
        path = root / f"symbol={symbol}" / f"{symbol}.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        frame.to_parquet(path, index=False)
    return root


def long_frame(frames: dict[str, pd.DataFrame]) -> pd.DataFrame:
    return pd.concat([f.assign(symbol=s) for s, f in frames.items()], ignore_index=True)


@pytest.fixture
def three_symbols(tmp_path: Path) -> Path:
    return write_symbols(tmp_path / "data", {"MSFT": bars(seed=1), "AAPL": bars(seed=2), "IBM": bars(seed=3)})


# ---------------------------------------------------------------------------------------------
# What a good load gives


def test_per_symbol_layout_loads_a_long_sorted_panel(three_symbols: Path) -> None:
    panel = load_panel(three_symbols)

    frame = panel.frame
    assert list(frame.columns) == ["ts", "symbol", "mom", "volume", "fwd_ret_1d", "y_up_1d"]
    assert panel.features == ("mom", "volume")
    assert panel.targets == ("fwd_ret_1d", "y_up_1d")
    assert panel.symbols == ("AAPL", "IBM", "MSFT")
    assert len(frame) == 3 * 250
    assert isinstance(frame.index, pd.RangeIndex)
    assert str(frame["ts"].dtype) == "datetime64[ns, UTC]"
    assert frame["mom"].dtype == np.float32 and frame["volume"].dtype == np.float32
    assert frame["fwd_ret_1d"].dtype == np.float64 and frame["y_up_1d"].dtype == np.float64
    assert frame[["ts", "symbol"]].equals(frame[["ts", "symbol"]].sort_values(["ts", "symbol"]).reset_index(drop=True))
    assert list(frame["symbol"].iloc[:3]) == ["AAPL", "IBM", "MSFT"]
    assert panel.interval_minutes == 1440.0
    assert panel.files == tuple(sorted(three_symbols.glob("symbol=*/*.parquet")))


def test_values_survive_the_round_trip(three_symbols: Path) -> None:
    original = bars(seed=2)
    got = load_panel(three_symbols).frame.query("symbol == 'AAPL'").reset_index(drop=True)

    assert got["ts"].equals(original["ts"])
    np.testing.assert_array_equal(got["fwd_ret_1d"].to_numpy(), original["fwd_ret_1d"].to_numpy())
    np.testing.assert_allclose(got["mom"].to_numpy(), original["mom"].to_numpy(), rtol=1e-6)


def test_requested_symbols_only_read_their_files(three_symbols: Path) -> None:
    panel = load_panel(three_symbols, ["MSFT", "AAPL"])

    assert panel.symbols == ("AAPL", "MSFT")
    assert set(panel.frame["symbol"]) == {"AAPL", "MSFT"}
    assert [p.parent.name for p in panel.files] == ["symbol=AAPL", "symbol=MSFT"]
    assert find_files(three_symbols, ["MSFT", "AAPL"]) == panel.files


def test_interval_is_the_median_gap_in_minutes(tmp_path: Path) -> None:
    frame = bars(rows=300, freq="5min").drop(index=[10, 11, 12])  # a few missing bars do not move the median
    panel = load_panel(write_symbols(tmp_path, {"ES": frame}))

    assert panel.interval_minutes == 5.0


def test_naive_and_zoned_timestamps_become_the_same_utc_instants(tmp_path: Path) -> None:
    naive = bars().assign(ts=lambda f: f["ts"].dt.tz_localize(None))
    zoned = bars().assign(ts=lambda f: f["ts"].dt.tz_convert("America/New_York"))
    panel = load_panel(write_symbols(tmp_path, {"A": naive, "B": zoned}))

    a, b = (panel.frame.query(f"symbol == '{s}'")["ts"].reset_index(drop=True) for s in "AB")
    assert a.equals(bars()["ts"]) and b.equals(bars()["ts"])


def test_columns_projection_reads_only_the_asked_columns(three_symbols: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    read_columns = []
    real_read = pq.ParquetFile.read

    def spy(self, columns=None, **kwargs):
        read_columns.append(list(columns))
        return real_read(self, columns=columns, **kwargs)

    monkeypatch.setattr(pq.ParquetFile, "read", spy)
    panel = load_panel(three_symbols, columns=["y_up_1d", "mom"])

    assert list(panel.frame.columns) == ["ts", "symbol", "mom", "y_up_1d"]
    assert panel.features == ("mom",) and panel.targets == ("y_up_1d",)
    assert read_columns == [["ts", "mom", "y_up_1d"]] * 3


def test_columns_projection_rejects_an_unknown_column(three_symbols: Path) -> None:
    with pytest.raises(DataError, match=r"AAPL\.parquet: no column\(s\) momentum; available features: mom, volume"):
        load_panel(three_symbols, columns=["momentum", "fwd_ret_1d"])


def test_max_rows_per_symbol_keeps_the_most_recent_rows(tmp_path: Path) -> None:
    shuffled = bars(rows=250).sample(frac=1.0, random_state=0)  # file order must not matter
    panel = load_panel(write_symbols(tmp_path, {"A": shuffled, "B": bars(rows=300)}), max_rows_per_symbol=100)

    for symbol, rows in (("A", 250), ("B", 300)):
        ts = panel.frame.query(f"symbol == '{symbol}'")["ts"]
        expected = pd.date_range("2024-01-01", periods=rows, freq="1D", tz="UTC")[-100:]
        assert list(ts) == list(expected)


def test_files_of_several_row_groups_with_gaps_keep_every_value(tmp_path: Path) -> None:
    # Each file is read in chunks (row groups) and written into the panel's columns at its own offset;
    # the rows interleave in time across symbols, and missing values stay NaN in both dtypes.
    frames = {"B": bars(seed=1, start="2024-01-01 12:00"), "A": bars(seed=2, start="2024-01-01")}
    frames["B"].loc[[3, 97, 200], ["mom", "fwd_ret_1d"]] = np.nan
    for symbol, frame in frames.items():
        path = tmp_path / f"symbol={symbol}" / f"{symbol}.parquet"
        path.parent.mkdir(parents=True)
        frame.iloc[::-1].to_parquet(path, index=False, row_group_size=64)

    panel = load_panel(tmp_path, max_rows_per_symbol=220)

    frame = panel.frame
    assert list(frame["symbol"][:4]) == ["A", "B", "A", "B"]
    assert frame["ts"].is_monotonic_increasing and isinstance(frame.index, pd.RangeIndex)
    assert frame.dtypes["mom"] == np.float32 and frame.dtypes["fwd_ret_1d"] == np.float64
    for symbol, source in frames.items():
        got = frame[frame["symbol"] == symbol].reset_index(drop=True)
        want = source.iloc[-220:].reset_index(drop=True)
        np.testing.assert_array_equal(got["ts"], want["ts"])
        np.testing.assert_array_equal(got["mom"], want["mom"].astype(np.float32))
        np.testing.assert_array_equal(got["volume"], want["volume"].astype(np.float32))
        np.testing.assert_array_equal(got["fwd_ret_1d"], want["fwd_ret_1d"])
    assert frame["mom"].isna().sum() == 2  # row 3 of B is older than its latest 220


def test_schema_columns_match_what_load_panel_reads(three_symbols: Path) -> None:
    panel = load_panel(three_symbols)

    assert schema_columns(three_symbols) == (panel.features, panel.targets)


# ---------------------------------------------------------------------------------------------
# Long-format files


def test_long_parquet_file_loads_only_the_requested_symbols(tmp_path: Path) -> None:
    path = tmp_path / "bars.parquet"
    long_frame({"B": bars(seed=1), "A": bars(seed=2), "C": bars(seed=3)}).to_parquet(path, index=False)

    panel = load_panel(path, ["C", "A"])

    assert panel.symbols == ("A", "C")
    assert len(panel.frame) == 500
    assert list(panel.frame.columns) == ["ts", "symbol", "mom", "volume", "fwd_ret_1d", "y_up_1d"]
    assert panel.files == (path,)
    with pytest.raises(DataError, match=r"bars\.parquet: no data for symbol\(s\) Z; available: A, B, C"):
        find_files(path, ["A", "Z"])


def test_a_directory_holding_one_long_csv_is_read(tmp_path: Path) -> None:
    frames = {"1301": bars(seed=1), "7203": bars(seed=2)}  # numeric-looking tickers stay text
    data = long_frame(frames).assign(ts=lambda f: f["ts"].dt.strftime("%Y-%m-%dT%H:%M:%SZ"))
    (tmp_path / "long").mkdir()
    data.to_csv(tmp_path / "long" / "bars.csv", index=False)

    panel = load_panel(tmp_path / "long")

    assert panel.symbols == ("1301", "7203")
    assert str(panel.frame["ts"].dtype) == "datetime64[ns, UTC]"
    assert panel.frame["ts"].min() == pd.Timestamp("2024-01-01", tz="UTC")
    assert schema_columns(tmp_path / "long") == (("mom", "volume"), ("fwd_ret_1d", "y_up_1d"))


def test_long_file_without_symbol_column_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "bars.parquet"
    bars().to_parquet(path, index=False)

    with pytest.raises(DataError, match=r"bars\.parquet: no 'symbol' column"):
        load_panel(path)


# ---------------------------------------------------------------------------------------------
# Interval folders


def test_the_only_interval_folder_is_used(tmp_path: Path) -> None:
    write_symbols(tmp_path / "interval=1d", {"A": bars()})

    panel = load_panel(tmp_path)

    assert panel.files == (tmp_path / "interval=1d" / "symbol=A" / "A.parquet",)


def test_interval_chooses_among_several_folders(tmp_path: Path) -> None:
    write_symbols(tmp_path / "interval=1d", {"A": bars()})
    write_symbols(tmp_path / "interval=5m", {"A": bars(freq="5min")})

    with pytest.raises(DataError, match=r"several interval folders \(interval=1d, interval=5m\); choose one"):
        load_panel(tmp_path)
    assert load_panel(tmp_path, interval="5m").interval_minutes == 5.0
    assert load_panel(tmp_path / "interval=5m", interval="5m").interval_minutes == 5.0
    with pytest.raises(DataError, match=r"no interval=1h folder; available intervals: 1d, 5m"):
        find_files(tmp_path, interval="1h")


# ---------------------------------------------------------------------------------------------
# Errors: each names the file, the column or symbol, and what to do


def test_missing_directory_and_empty_directory_say_what_layout_is_expected(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"nope: no such file or directory; expected .*symbol=<SYM>/<SYM>\.parquet"):
        load_panel(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=r"empty: no data found; expected .*symbol=<SYM>/<SYM>\.parquet"):
        find_files(tmp_path / "empty")


def test_unknown_symbol_lists_the_available_ones(three_symbols: Path) -> None:
    with pytest.raises(DataError, match=r"no data for symbol\(s\) TSLA; available: AAPL, IBM, MSFT"):
        load_panel(three_symbols, ["AAPL", "TSLA"])


def test_symbol_folder_without_its_parquet_file(three_symbols: Path) -> None:
    (three_symbols / "symbol=IBM" / "IBM.parquet").rename(three_symbols / "symbol=IBM" / "part-0.parquet")

    with pytest.raises(DataError, match=r"symbol=IBM/IBM\.parquet: missing; .*found part-0\.parquet: rename it"):
        find_files(three_symbols)
    assert load_panel(three_symbols, ["AAPL"]).symbols == ("AAPL",)  # other symbols still load


def test_missing_ts_column_names_the_file_and_suggests_the_rename(tmp_path: Path) -> None:
    write_symbols(tmp_path, {"A": bars().rename(columns={"ts": "timestamp"})})

    with pytest.raises(DataError, match=r"symbol=A/A\.parquet: no 'ts' column; .*rename 'timestamp' to 'ts'"):
        load_panel(tmp_path)


def test_duplicate_timestamps_name_the_first_one(tmp_path: Path) -> None:
    frame = bars()
    frame.loc[[40, 41], "ts"] = frame.loc[30, "ts"]  # 2024-01-31 three times
    write_symbols(tmp_path, {"A": bars(), "B": frame})

    with pytest.raises(DataError) as err:
        load_panel(tmp_path)
    message = str(err.value)
    assert "symbol=B/B.parquet: symbol B has duplicate timestamps in column 'ts'" in message
    assert "2024-01-31T00:00:00+00:00" in message and "2 repeated rows" in message


def test_duplicates_in_a_long_file_name_the_symbol(tmp_path: Path) -> None:
    path = tmp_path / "bars.parquet"
    data = long_frame({"A": bars(), "B": bars()})
    pd.concat([data, data.iloc[[260]]]).to_parquet(path, index=False)

    with pytest.raises(DataError, match=r"bars\.parquet: symbol B has duplicate timestamps .* 2024-01-11T00:00:00"):
        load_panel(path)


def test_non_numeric_feature_quotes_a_bad_value(tmp_path: Path) -> None:
    frame = bars().astype({"mom": str})
    frame.loc[7, "mom"] = "n/a?"
    write_symbols(tmp_path, {"A": bars(), "B": frame})

    with pytest.raises(DataError, match=r"symbol=B/B\.parquet: column 'mom' is not numeric .*e\.g\. value 'n/a\?'"):
        load_panel(tmp_path)


def test_non_numeric_value_deep_in_a_csv_names_column_and_value(tmp_path: Path) -> None:
    # Past the first 1 MiB block, from which the schema (and schema_columns) guessed a number.
    data = long_frame({f"S{i:02d}": bars(rows=1000, seed=i) for i in range(30)})
    data["mom"] = data["mom"].astype(str)
    data.loc[len(data) - 5, "mom"] = "oops"
    path = tmp_path / "bars.csv"
    data.to_csv(path, index=False)
    assert path.stat().st_size > 2**20

    with pytest.raises(DataError, match=r"bars\.csv: column 'mom' is not numeric .*e\.g\. value 'oops'"):
        load_panel(path)


def test_too_few_rows_says_how_many_and_the_minimum(tmp_path: Path) -> None:
    write_symbols(tmp_path, {"A": bars(), "B": bars(rows=150)})

    with pytest.raises(DataError, match=r"symbol=B/B\.parquet: symbol B has 150 rows, fewer than the minimum of 200"):
        load_panel(tmp_path)
    assert load_panel(tmp_path, min_rows_per_symbol=150).symbols == ("A", "B")
    # The minimum counts the file's rows, before max_rows_per_symbol keeps the latest ones.
    assert len(load_panel(tmp_path, max_rows_per_symbol=100, min_rows_per_symbol=150).frame) == 200


def test_too_few_rows_in_a_long_file_names_the_symbol(tmp_path: Path) -> None:
    path = tmp_path / "bars.parquet"
    long_frame({"A": bars(), "B": bars(rows=120)}).to_parquet(path, index=False)

    with pytest.raises(DataError, match=r"bars\.parquet: symbol B has 120 rows, fewer than the minimum of 200"):
        load_panel(path)


def test_no_target_columns(tmp_path: Path) -> None:
    write_symbols(tmp_path, {"A": bars().drop(columns=["fwd_ret_1d", "y_up_1d"])})

    with pytest.raises(DataError, match=r"symbol=A/A\.parquet: no target columns; target names start with 'fwd_ret_'"):
        load_panel(tmp_path)


def test_symbols_with_different_columns_name_the_symbol_and_the_columns(tmp_path: Path) -> None:
    write_symbols(tmp_path, {"A": bars(), "B": bars().drop(columns=["volume", "y_up_1d"]), "C": bars()})

    with pytest.raises(DataError, match=r"symbol=B/B\.parquet: symbol B lacks column\(s\) volume, y_up_1d that A has"):
        schema_columns(tmp_path)


def test_large_integer_features_round_to_float32_instead_of_failing(tmp_path):
    import numpy as np
    import pandas as pd

    from trainpipe.data.loading import load_panel

    n = 250
    frame = pd.DataFrame({
        "ts": pd.date_range("2020-01-01", periods=n, freq="D", tz="UTC"),
        "big_count": np.arange(n, dtype=np.int64) + 2**24 + 1,  # not exactly representable in float32
        "fwd_ret_1d": np.linspace(-0.01, 0.01, n),
    })
    path = tmp_path / "symbol=AAA" / "AAA.parquet"
    path.parent.mkdir(parents=True)
    frame.to_parquet(path, index=False)
    panel = load_panel(tmp_path)
    np.testing.assert_allclose(panel.frame["big_count"].to_numpy(dtype=np.float64), frame["big_count"].to_numpy(dtype=np.float64), rtol=1e-7)
