"""Bad data files: each fails the load (or the stage, exit BAD_DATA) naming the file and the column, and leaves earlier outputs alone.

`test_data_loading.py` holds the first errors a user meets (missing folder, wrong symbol, text in a
feature, duplicate timestamps in parquet, too few rows); this corpus adds damaged files, wrong types,
CSV spellings of the same instant, and what a failed stage leaves behind for the next good run.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from panels import make_panel, write_panel
from test_data_loading import bars, long_frame, write_symbols
from trainpipe.cli.main import main
from trainpipe.contract.exitcodes import ExitCode
from trainpipe.data.errors import DataError
from trainpipe.data.loading import load_panel
from trainpipe.io.layout import Layout
from trainpipe.io.stage_files import read_rankings

# ---- damaged files: one builder per case, each returns what to load -------------------------------


def _two_symbols(root: Path) -> Path:
    return write_symbols(root, {"A": bars(), "B": bars(seed=1)})


def truncated(root: Path) -> Path:
    path = _two_symbols(root) / "symbol=B" / "B.parquet"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])  # a copy cut short
    return root


def zero_bytes(root: Path) -> Path:
    (_two_symbols(root) / "symbol=B" / "B.parquet").write_bytes(b"")
    return root


def footer_lies(root: Path) -> Path:
    (_two_symbols(root) / "symbol=B" / "B.parquet").write_bytes(b"PAR1" + b"x" * 500 + b"PAR1")
    return root


def damaged_pages(root: Path) -> Path:
    path = _two_symbols(root) / "symbol=B" / "B.parquet"
    data = bytearray(path.read_bytes())
    data[100:1200] = b"\xff" * 1100  # the footer is intact, the column chunks are not
    path.write_bytes(bytes(data))
    return root


def no_rows(root: Path) -> Path:
    return write_symbols(root, {"A": bars(), "B": bars().iloc[:0]})


def empty_csv(root: Path) -> Path:
    (root / "bars.csv").write_text("")
    return root / "bars.csv"


def header_only_csv(root: Path) -> Path:
    (root / "bars.csv").write_text("ts,symbol,mom,fwd_ret_1d\n")
    return root / "bars.csv"


def not_a_data_file(root: Path) -> Path:
    (root / "bars.txt").write_text("ts,symbol\n")
    return root / "bars.txt"


def several_long_files(root: Path) -> Path:
    long_frame({"A": bars()}).to_parquet(root / "a.parquet", index=False)
    long_frame({"B": bars()}).to_csv(root / "b.csv", index=False)
    return root


def symbol_folder_empty(root: Path) -> Path:
    write_symbols(root, {"A": bars()})
    (root / "symbol=B").mkdir()
    return root


def column_twice(root: Path) -> Path:
    table = pa.Table.from_pandas(bars(), preserve_index=False)
    table = pa.table([*table.columns, table.column("mom")], names=[*table.column_names, "mom"])
    (root / "symbol=A").mkdir()
    pq.write_table(table, root / "symbol=A" / "A.parquet")
    return root


def symbol_column_blank(root: Path) -> Path:
    frame = long_frame({"A": bars()}).assign(symbol=None)
    frame.to_parquet(root / "bars.parquet", index=False)
    return root / "bars.parquet"


CORRUPT = "cannot be read"
COMPLETE = "check that the file is a complete parquet file"


@pytest.mark.parametrize(
    ("build", "where", "says"),
    [
        (truncated, "symbol=B/B.parquet", [CORRUPT, "magic bytes", COMPLETE]),
        (zero_bytes, "symbol=B/B.parquet", [CORRUPT, "0 bytes", COMPLETE]),
        (footer_lies, "symbol=B/B.parquet", [CORRUPT, COMPLETE]),
        (damaged_pages, "symbol=B/B.parquet", [CORRUPT, COMPLETE]),  # was a bare OSError: exit 1 and retries
        (no_rows, "symbol=B/B.parquet", ["symbol B has 0 rows, fewer than the minimum of 200"]),
        (empty_csv, "bars.csv", [CORRUPT, "Empty CSV file"]),
        (header_only_csv, "bars.csv", ["no row has a 'symbol'"]),
        (not_a_data_file, "bars.txt", ["not a .parquet or .csv file"]),
        (several_long_files, "", ["holds several data files (a.parquet, b.csv)"]),
        (symbol_folder_empty, "symbol=B/B.parquet", ["missing; the folder symbol=B must hold B.parquet"]),
        (column_twice, "symbol=A/A.parquet", ["column(s) mom appear more than once"]),  # was a bare KeyError
        (symbol_column_blank, "bars.parquet", ["no row has a 'symbol'; fill in the symbol of every row"]),
    ],
    ids=lambda v: v.__name__ if callable(v) else None,
)
def test_a_damaged_or_empty_file_is_named_with_what_is_wrong(tmp_path: Path, build: Callable[[Path], Path], where: str, says: list[str]) -> None:
    target = build(tmp_path)
    with pytest.raises(DataError) as err:
        load_panel(target)
    message = str(err.value)
    assert message.startswith(f"{tmp_path}/{where}".rstrip("/") + ":"), message
    for part in says:
        assert part in message


# ---- wrong types: the message names the file and the column ---------------------------------------


def _with(change: Callable[[pd.DataFrame], None]) -> Callable[[Path], Path]:
    def build(root: Path) -> Path:
        frame = bars()
        change(frame)
        return write_symbols(root, {"A": bars(seed=1), "B": frame})

    return build


def _ts_as_integers(f: pd.DataFrame) -> None:
    f["ts"] = np.arange(len(f))


def _ts_as_words(f: pd.DataFrame) -> None:
    f["ts"] = f["ts"].astype(str)
    f.loc[5, "ts"] = "yesterday"


def _ts_with_gaps(f: pd.DataFrame) -> None:
    f["ts"] = f["ts"].astype(object)
    f.loc[[3, 4], "ts"] = None


def _feature_as_timestamps(f: pd.DataFrame) -> None:
    f["mom"] = f["ts"]


def _feature_as_lists(f: pd.DataFrame) -> None:
    f["mom"] = [[1.0, 2.0]] * len(f)


def _target_as_text(f: pd.DataFrame) -> None:
    f["fwd_ret_1d"] = f["fwd_ret_1d"].astype(str)
    f.loc[9, "fwd_ret_1d"] = "-0.2%"


@pytest.mark.parametrize(
    ("change", "says"),
    [
        (_ts_as_integers, "column 'ts' has type int64, not a timestamp"),
        (_ts_as_words, "column 'ts' has a value that is not a timestamp: 'yesterday'; write ISO 8601"),
        (_ts_with_gaps, "column 'ts' has 2 empty values; every row needs a timestamp"),
        (_feature_as_timestamps, "column 'mom' is not numeric (type timestamp[ns, tz=UTC]"),
        (_feature_as_lists, "column 'mom' is not numeric (type list<"),
        (_target_as_text, "column 'fwd_ret_1d' is not numeric (type string, e.g. value '-0.2%')"),
    ],
    ids=lambda v: v.__name__.strip("_") if callable(v) else None,
)
def test_a_wrong_dtype_names_the_file_and_the_column(tmp_path: Path, change, says: str) -> None:
    with pytest.raises(DataError) as err:
        load_panel(_with(change)(tmp_path))
    assert str(err.value).startswith(f"{tmp_path}/symbol=B/B.parquet: {says}"), str(err.value)


def test_day_first_dates_in_a_csv_are_refused_rather_than_guessed(tmp_path: Path) -> None:
    frame = long_frame({"A": bars()})
    frame["ts"] = frame["ts"].dt.strftime("%d/%m/%Y")
    frame.to_csv(tmp_path / "bars.csv", index=False)
    with pytest.raises(DataError, match=r"bars\.csv: column 'ts' has a value that is not a timestamp: '01/01/2024'"):
        load_panel(tmp_path / "bars.csv")


def test_two_spellings_of_one_instant_in_a_csv_are_duplicate_timestamps(tmp_path: Path) -> None:
    frame = long_frame({"A": bars(), "B": bars(seed=1)})
    frame["ts"] = frame["ts"].dt.strftime("%Y-%m-%dT%H:%M:%SZ")
    frame.loc[251, "ts"] = "2024-01-01T01:00:00+01:00"  # B's second row, written as B's first in another zone
    frame.to_csv(tmp_path / "bars.csv", index=False)
    with pytest.raises(DataError) as err:
        load_panel(tmp_path / "bars.csv")
    assert str(err.value).startswith(f"{tmp_path}/bars.csv: symbol B has duplicate timestamps in column 'ts', the first at 2024-01-01T00:00:00+00:00")


def test_a_symbol_short_only_after_the_symbol_filter_is_named_in_a_long_csv(tmp_path: Path) -> None:
    long_frame({"A": bars(), "B": bars(rows=199)}).to_csv(tmp_path / "bars.csv", index=False)
    assert load_panel(tmp_path / "bars.csv", ["A"]).symbols == ("A",)  # the short symbol is not asked for
    with pytest.raises(DataError, match=r"bars\.csv: symbol B has 199 rows, fewer than the minimum of 200; .*data\.min_rows_per_symbol"):
        load_panel(tmp_path / "bars.csv", ["A", "B"])


# ---- what a failed stage leaves behind --------------------------------------------------------------

SPEC = json.dumps({
    "data": {"minRowsPerSymbol": 100}, "targets": {"topN": 2}, "features": {"topM": 3},
    "ranking": {"folds": 2, "maxRows": 1000}, "training": {"families": ["lightgbm"]}, "seed": 7,
    "evidence": {"trainAnyway": True},  # a 300-bar panel is too short to show its signal clears noise
})


class Pipeline:
    """Run folders side by side, as the operator lays them out, over one data folder the test may damage."""

    def __init__(self, root: Path) -> None:
        self.data, self.runs = root / "data", root / "runs"
        write_panel(make_panel(n_days=300), self.data)
        self.good = {p: p.read_bytes() for p in self.data.rglob("*.parquet")}

    def cli(self, run: str, *argv: str) -> tuple[int, str]:
        log = self.runs / f"{run}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        code = main([*argv, "--spec-json", SPEC, "--data-dir", str(self.data), "--output-dir", str(self.runs / run),
                     "--threads", "1", "--termination-log", str(log)])
        return code, log.read_text().strip()

    def damage(self) -> Path:
        path = self.data / "symbol=BBB" / "BBB.parquet"
        path.write_bytes(path.read_bytes()[:-100])
        return path

    def repair(self) -> None:
        for path, data in self.good.items():
            path.write_bytes(data)

    def fingerprint(self, run: str) -> dict[str, str]:
        return {str(p.relative_to(self.runs / run)): hashlib.sha256(p.read_bytes()).hexdigest()
                for p in sorted((self.runs / run).rglob("*")) if p.is_file()}


@pytest.fixture
def pipeline(tmp_path: Path) -> Pipeline:
    return Pipeline(tmp_path)


def test_a_damaged_file_fails_rank_with_bad_data_leaves_the_last_run_intact_and_the_next_good_run_reuses_it(pipeline: Pipeline) -> None:
    code, report = pipeline.cli("r1", "rank")
    assert code == 0, report
    before = pipeline.fingerprint("r1")

    damaged = pipeline.damage()
    code, message = pipeline.cli("r2", "rank", "--reuse-dir", str(pipeline.runs))
    assert code == ExitCode.BAD_DATA
    assert message.startswith(f"rank: BAD_DATA: {damaged}: cannot be read"), message
    assert pipeline.fingerprint("r1") == before, "a failed run touched an earlier run's outputs"
    assert not any(p.suffix in (".json", ".parquet") for p in (pipeline.runs / "r2").rglob("*") if "ranking" in p.parts)

    pipeline.repair()
    code, report = pipeline.cli("r3", "rank", "--reuse-dir", str(pipeline.runs))
    assert code == 0 and json.loads(report)["status"] == "reused", report
    assert pipeline.fingerprint("r1") == before


def test_a_file_damaged_after_rank_fails_select_and_the_same_runs_ranking_stays(pipeline: Pipeline) -> None:
    assert pipeline.cli("r1", "rank")[0] == 0
    ranking = {k: v for k, v in pipeline.fingerprint("r1").items() if k.startswith("ranking")}
    assert ranking

    damaged = pipeline.damage()
    code, message = pipeline.cli("r1", "select")
    assert code == ExitCode.BAD_DATA and message.startswith(f"select: BAD_DATA: {damaged}: cannot be read"), message
    assert {k: v for k, v in pipeline.fingerprint("r1").items() if k.startswith("ranking")} == ranking

    pipeline.repair()
    code, report = pipeline.cli("r1", "select")
    assert code == 0 and json.loads(report)["targets"] == 2, report


def test_a_short_symbol_is_a_warning_naming_it_and_the_run_goes_on(pipeline: Pipeline) -> None:
    # Before: 50 bars against data.minRowsPerSymbol 100 stopped rank (BAD_DATA). A panel with listings and
    # delistings always has short symbols: the cut names it and rank ranks.
    path = pipeline.data / "symbol=CCC" / "CCC.parquet"
    pd.read_parquet(path).iloc[170:].to_parquet(path, index=False)  # listed late: about 60 bars before the cut
    code, message = pipeline.cli("r1", "rank")
    assert code == 0, message
    ranking = read_rankings(Layout(pipeline.runs / "r1"))
    assert ranking.holdout_cut.symbols["CCC"].coverage == "short"
    assert any(line.startswith("symbol CCC:") for line in ranking.holdout_cut.warnings())
    shutil.rmtree(pipeline.runs / "r1", ignore_errors=True)
