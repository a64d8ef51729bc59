"""Read the input bars into one long, validated `Panel`; every stage CLI and the cache digests call it.

Accepted layouts (the ones FoxML writes, so its data folders load unchanged):

* ``<data_dir>/[interval=<I>/]symbol=<SYM>/<SYM>.parquet`` — one file per symbol. With ``interval``
  given, ``<data_dir>/interval=<I>/`` is read (or ``data_dir`` itself when it is that folder). With
  ``interval`` unset, a directory holding exactly one ``interval=…`` folder uses it; several are an
  error that lists them.
* ``data_dir`` is one long-format ``.parquet`` or ``.csv`` file with a ``symbol`` column, or a
  directory (or interval folder) that holds exactly one such file and no ``symbol=`` folders.
  Rows whose ``symbol`` is empty are ignored.

Columns: ``ts`` is the timestamp (naive timestamps are read as UTC; dates and ISO 8601 text are
parsed); ``symbol`` names the instrument; columns starting with ``fwd_ret_`` or ``y_`` are targets;
every other column is a feature and must be numeric. Features are held as float32 (they dominate the
memory of a panel, and every model family trains on float32 anyway); targets stay float64 so that
returns and labels keep their exact values. Integer features above 2**24 lose their last digits.

Only the requested symbols and columns are read (pyarrow column projection and, for a long parquet
file, a row filter on ``symbol``), the parts are concatenated once and sorted once.

``data_dir`` may also be an object-store URI (``s3://bucket/prefix``, through pyarrow.fs): the same
layouts, listed prefix by prefix so only the requested symbols' objects are opened, and read with the
same projection and filter as ranged requests (io.objectstore owns the store, its errors and credentials).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from trainpipe.contract.cut import PanelSample
from trainpipe.contract.names import SYMBOL_COLUMN, TARGET_PREFIXES, TIMESTAMP_COLUMN
from trainpipe.contract.targets import BarCalendar, is_target
from trainpipe.data.calendar import bar_calendar
from trainpipe.data.errors import DataError
from trainpipe.data.sampling import calendar_counts, choose_blocks, describe, in_ranges, overlaps, sample_ranges
from trainpipe.io.objectstore import Location, ObjectPath, ObjectStoreError, explain, locate
from trainpipe.memory import release

FEATURE_TYPE = pa.float32()
TARGET_TYPE = pa.float64()
_TS_TYPE = pa.timestamp("ns", tz="UTC")
_LONG_SUFFIXES = (".parquet", ".csv")

EXPECTED_LAYOUT = (
    "expected <dir>/[interval=<I>/]symbol=<SYM>/<SYM>.parquet folders, or one long-format .parquet/.csv "
    "file with 'ts' and 'symbol' columns (build a real example with `make example-data`)"
)


@dataclass(frozen=True)
class Panel:
    """The loaded bars of every selected symbol, long format, ready for the stages.

    `frame` has columns ts (datetime64[ns, UTC]), symbol (str), the features (float32) and the
    targets (float64), in that order, sorted by (ts, symbol), with a RangeIndex.
    """

    frame: pd.DataFrame
    features: tuple[str, ...]
    targets: tuple[str, ...]
    symbols: tuple[str, ...]
    calendar: BarCalendar  # how the bars fall in time: what a horizon in minutes, days or weeks is in bars
    files: tuple[Location, ...]
    sample: PanelSample | None = None  # set when the panel outgrew its row budget and was cut to timestamp blocks

    @property
    def interval_minutes(self) -> float:
        return self.calendar.interval_minutes


@dataclass(frozen=True)
class _Source:
    """Where the selected symbols live: one parquet file each, or one long file for all of them."""

    files_by_symbol: dict[str, Location]  # per-symbol layout only
    long_file: Location | None
    requested: tuple[str, ...] | None  # long layout: the symbols asked for, None for all

    @property
    def files(self) -> tuple[Location, ...]:
        if self.long_file is not None:
            return (self.long_file,)
        return tuple(sorted(self.files_by_symbol.values()))


def find_files(data_dir: Path | str, symbols: Sequence[str] | None = None, interval: str | None = None) -> tuple[Location, ...]:
    """The files `load_panel` would read for these arguments, sorted, without reading their data."""
    return _resolve(data_dir, symbols, interval).files


def schema_columns(
    data_dir: Path | str, symbols: Sequence[str] | None = None, interval: str | None = None
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(features, targets) in file order, from the parquet footers or a CSV's first block.

    Data is read only to quote a bad value in an error, and, for a long file, to check `symbols`.
    """
    return _columns(_resolve(data_dir, symbols, interval))


def load_panel(
    data_dir: Path | str,
    symbols: Sequence[str] | None = None,
    *,
    interval: str | None = None,
    columns: Sequence[str] | None = None,
    max_rows_per_symbol: int | None = None,
    min_rows_per_symbol: int = 200,
    row_budget: int | None = None,
    sample_blocks: int = 8,
    seed: int = 0,
    time_ranges: Sequence[tuple[int, int]] | None = None,
) -> Panel:
    """Read, validate and stack the bars; `columns` limits the features/targets read (ts and symbol always are).

    `max_rows_per_symbol` keeps each symbol's most recent rows; `min_rows_per_symbol` is checked
    against the rows each symbol has in its file, before that cut.

    A panel of more than `row_budget` rows is cut to `sample_blocks` whole timestamp blocks
    (`data.sampling.choose_blocks`, placed by `seed`), decided from the timestamp column alone before
    any feature is read; `Panel.sample` records them. `time_ranges` (inclusive int64-nanosecond
    bounds, e.g. a recorded sample's) reads exactly those blocks again. Either way a row group whose
    timestamp statistics miss every block is skipped unread, so memory follows the rows kept.
    """
    source = _resolve(data_dir, symbols, interval)
    features, targets = _columns(source)
    if columns is not None:
        features, targets = _project(features, targets, columns, source.files[0])
    wanted = [TIMESTAMP_COLUMN, *features, *targets]
    sample, ranges = None, (tuple(time_ranges) if time_ranges is not None else None)
    if ranges is None and row_budget is not None:
        sample = _sample(source, row_budget, sample_blocks, seed, max_rows_per_symbol, min_rows_per_symbol)
        ranges = sample_ranges(sample) if sample is not None else None

    # One file at a time: each file's raw table is released once it has been checked and cast, and its
    # columns are copied into one preallocated numpy array per column (pages are only touched as they are
    # written), so the data is held about once, plus one file.
    capacity = sample.rows_kept if sample is not None else _capacity(source, max_rows_per_symbol)
    columns_out: dict[str, np.ndarray] = {}
    part_symbols: list[tuple[str, ...]] = []
    part_codes: list[np.ndarray] = []
    filled = 0
    # Row groups are skipped by their statistics only without a per-symbol window: that window counts a symbol's rows before the blocks.
    skip_by = ranges if max_rows_per_symbol is None else None
    for part in _parts(source, wanted, min_rows_per_symbol, skip_by):
        prepared = _prepare(part, features, targets, max_rows_per_symbol, ranges)
        del part
        rows = prepared.table.num_rows
        if not columns_out:
            columns_out = _allocate(max(capacity if capacity is not None else 0, rows), features, targets)
        elif filled + rows > len(columns_out[TIMESTAMP_COLUMN]):  # not expected: the footers gave the counts
            columns_out = {name: _grow(array, filled + rows) for name, array in columns_out.items()}
        stop = filled + rows
        columns_out[TIMESTAMP_COLUMN][filled:stop] = prepared.ts
        for name in (*features, *targets):
            _copy_into(prepared.table.column(name), columns_out[name][filled:stop])
        part_symbols.append(prepared.symbols)
        part_codes.append(prepared.codes)
        filled = stop
        del prepared
    if not columns_out:  # no part at all: keep the empty-input behaviour of a concatenation of nothing
        columns_out = _allocate(0, features, targets)
    if filled != len(columns_out[TIMESTAMP_COLUMN]):
        columns_out = {name: array[:filled].copy() for name, array in columns_out.items()}
    # Arrow keeps freed buffers in its pool; hand them back so the loaded panel is what stays resident.
    pa.default_memory_pool().release_unused()

    # One namespace of symbol codes, in sorted symbol order, so sorting by code sorts by name.
    loaded = tuple(sorted({s for symbols_of_part in part_symbols for s in symbols_of_part}))
    code_of = {s: i for i, s in enumerate(loaded)}
    code = np.concatenate(
        [np.array([code_of[s] for s in syms], dtype=np.int32)[codes] for syms, codes in zip(part_symbols, part_codes)]
        or [np.zeros(0, dtype=np.int32)]
    )
    del part_codes
    ts = columns_out[TIMESTAMP_COLUMN]
    order = np.lexsort((code, ts))  # by ts, then symbol
    # Sorted column by column, each unsorted column freed once its sorted copy exists, so the data is
    # held about once (plus one column) rather than twice.
    data: dict[str, object] = {}
    sorted_ts = ts[order]
    data[TIMESTAMP_COLUMN] = pd.DatetimeIndex(sorted_ts.view("datetime64[ns]"), copy=False).tz_localize("UTC")
    data[SYMBOL_COLUMN] = np.asarray(loaded, dtype=object)[code[order]]
    for name in (*features, *targets):
        data[name] = columns_out.pop(name)[order]
    frame = pd.DataFrame(data, copy=False)
    del data, columns_out
    release()
    return Panel(
        frame=frame,
        features=features,
        targets=targets,
        symbols=loaded,
        calendar=bar_calendar(sorted_ts),
        files=source.files,
        sample=sample,
    )


def _sample(source: _Source, budget: int, n_blocks: int, seed: int, max_rows: int | None, min_rows: int) -> PanelSample | None:
    """The blocks a panel over `budget` rows keeps, from its timestamp column alone; None when it fits whole.

    The footers count the rows of a per-symbol layout, so a panel within budget costs no read at all.
    """
    available = _capacity(source, max_rows)
    if available is not None and available <= budget:
        return None
    stamps = []
    for part in _parts(source, [TIMESTAMP_COLUMN], min_rows, None):
        stamps.append(_check_rows_in_time(part, max_rows)[2])
        del part
    calendar, counts = calendar_counts(np.concatenate(stamps) if stamps else np.zeros(0, dtype=np.int64))
    del stamps
    try:
        blocks = choose_blocks(counts, budget, n_blocks, seed)
    except ValueError as exc:
        raise DataError(f"{source.files[0]}: {exc}") from None
    if blocks == ((0, len(calendar)),) or not blocks:
        return None
    return describe(calendar, counts, blocks, budget, seed)


def move_features(frame: pd.DataFrame, features: Sequence[str]) -> np.ndarray:
    """Move `features` out of `frame` into one float32 matrix (rows × features), column by column.

    The frame loses those columns: each is freed as soon as it is copied, so the features are held
    once, not twice. Callers own the frame (a panel they loaded); the stages get the matrix.
    """
    matrix = np.empty((len(frame), len(features)), dtype=np.float32)
    for j, name in enumerate(features):
        matrix[:, j] = frame.pop(name).to_numpy(dtype=np.float32)
    release()
    return matrix


# ---------------------------------------------------------------------------------------------
# Where the data is


def _resolve(given: Path | str, symbols: Sequence[str] | None, interval: str | None) -> _Source:
    try:
        return _resolve_at(locate(given), symbols, interval)
    except ObjectStoreError as exc:  # the store's own failure (no bucket, credentials): already names the URI
        raise DataError(str(exc)) from None


def _resolve_at(data_dir: Location, symbols: Sequence[str] | None, interval: str | None) -> _Source:
    requested = tuple(sorted(set(symbols))) if symbols else None
    if data_dir.is_file():
        return _long_source(data_dir, requested)
    if not data_dir.is_dir():
        if isinstance(data_dir, ObjectPath):
            data_dir.check_bucket()
            raise DataError(f"{data_dir}: no object or prefix with this name; {EXPECTED_LAYOUT}")
        raise DataError(f"{data_dir}: no such file or directory; {EXPECTED_LAYOUT}")
    root = _partition(data_dir, interval)
    entries: list[Location] = sorted(root.iterdir(), key=str)  # one listing (on a store: one request per 1000 entries)
    symbol_dirs = {d.name.removeprefix("symbol="): d for d in entries if d.is_dir() and d.name.startswith("symbol=")}
    if symbol_dirs:
        return _per_symbol_source(root, symbol_dirs, requested)
    long_files = sorted(
        p for p in entries if p.is_file() and p.suffix.lower() in _LONG_SUFFIXES and not p.name.startswith(".")
    )
    if len(long_files) == 1:
        return _long_source(long_files[0], requested)
    if long_files:
        names = ", ".join(p.name for p in long_files)
        raise DataError(
            f"{root}: holds several data files ({names}) and no symbol=<SYM> folders; pass one file as the "
            f"data dir, or arrange them as symbol=<SYM>/<SYM>.parquet"
        )
    raise DataError(f"{root}: no data found; {EXPECTED_LAYOUT}")


def _partition(data_dir: Location, interval: str | None) -> Location:
    """The folder that holds the symbols: `data_dir` itself or its one (or chosen) interval=<I> folder."""
    intervals = sorted(
        d.name.removeprefix("interval=") for d in data_dir.iterdir() if d.is_dir() and d.name.startswith("interval=")
    )
    if interval is not None:
        if data_dir.name == f"interval={interval}":
            return data_dir
        if interval in intervals:
            return data_dir / f"interval={interval}"
        available = ", ".join(intervals) or "none (the data is not split by interval: leave interval unset)"
        raise DataError(f"{data_dir}: no interval={interval} folder; available intervals: {available}")
    if len(intervals) == 1:
        return data_dir / f"interval={intervals[0]}"
    if len(intervals) > 1:
        raise DataError(
            f"{data_dir}: holds several interval folders ({', '.join('interval=' + i for i in intervals)}); "
            f"choose one with data.interval (e.g. interval: {intervals[0]})"
        )
    return data_dir


def _per_symbol_source(root: Location, symbol_dirs: dict[str, Location], requested: tuple[str, ...] | None) -> _Source:
    selected = _select(tuple(symbol_dirs), requested, root)
    files: dict[str, Location] = {}
    for symbol in selected:
        path = symbol_dirs[symbol] / f"{symbol}.parquet"
        if not path.is_file():
            others = sorted(p.name for p in symbol_dirs[symbol].glob("*.parquet"))
            hint = f" (found {', '.join(others)}: rename it to {symbol}.parquet)" if others else ""
            raise DataError(
                f"{path}: missing; the folder symbol={symbol} must hold {symbol}.parquet{hint}, "
                f"or remove the folder"
            )
        files[symbol] = path
    return _Source(files_by_symbol=files, long_file=None, requested=None)


def _long_source(path: Location, requested: tuple[str, ...] | None) -> _Source:
    if path.suffix.lower() not in _LONG_SUFFIXES:
        raise DataError(f"{path}: not a .parquet or .csv file; {EXPECTED_LAYOUT}")
    if SYMBOL_COLUMN not in _schema(path).names:
        raise DataError(
            f"{path}: no '{SYMBOL_COLUMN}' column; a single data file must be long format with a "
            f"'{SYMBOL_COLUMN}' column, otherwise use symbol=<SYM>/<SYM>.parquet folders"
        )
    if requested is not None:
        _select(_symbols_in(path), requested, path)
    return _Source(files_by_symbol={}, long_file=path, requested=requested)


def _select(available: tuple[str, ...], requested: tuple[str, ...] | None, where: Location) -> tuple[str, ...]:
    available = tuple(sorted(available))
    if requested is None:
        return available
    unknown = [s for s in requested if s not in set(available)]
    if unknown:
        raise DataError(
            f"{where}: no data for symbol(s) {', '.join(unknown)}; available: {_preview(available)}. "
            f"Fix data.symbols or add the missing data"
        )
    return requested


def _symbols_in(path: Location) -> tuple[str, ...]:
    column = _read(path, [SYMBOL_COLUMN]).column(SYMBOL_COLUMN)
    return tuple(sorted(s for s in pc.unique(column.cast(pa.string())).to_pylist() if s))


# ---------------------------------------------------------------------------------------------
# Which columns


def _columns(source: _Source) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(features, targets) in file order; every file must have the same columns, all of them numeric."""
    schemas = {path: _schema(path) for path in source.files}
    if source.long_file is None:
        _check_same_columns({symbol: (path, schemas[path]) for symbol, path in sorted(source.files_by_symbol.items())})
    path, schema = next(iter(schemas.items()))
    names = schema.names
    if TIMESTAMP_COLUMN not in names:
        look_alike = [n for n in names if n.lower() in ("timestamp", "time", "date", "datetime")]
        hint = f" (rename '{look_alike[0]}' to '{TIMESTAMP_COLUMN}')" if look_alike else ""
        raise DataError(
            f"{path}: no '{TIMESTAMP_COLUMN}' column; every file needs a '{TIMESTAMP_COLUMN}' timestamp column{hint}"
        )
    data = [n for n in names if n not in (TIMESTAMP_COLUMN, SYMBOL_COLUMN)]
    for file, file_schema in schemas.items():
        twice = sorted(n for n, count in Counter(file_schema.names).items() if count > 1)
        if twice:  # pyarrow would refuse to look such a column up, with a bare KeyError
            raise DataError(f"{file}: column(s) {', '.join(twice)} appear more than once; keep one column per name")
    targets = tuple(n for n in data if is_target(n))
    if not targets:
        raise DataError(
            f"{path}: no target columns; target names start with {' or '.join(repr(p) for p in TARGET_PREFIXES)} "
            f"(e.g. fwd_ret_5d, y_up_5d): add or rename the label columns"
        )
    # Every file's types are checked from its schema, so a text column fails before any data is read.
    for file, file_schema in schemas.items():
        for name in data:
            if not _is_numeric(file_schema.field(name).type):
                raise _not_numeric(file, name, _read(file, [name]).column(name))
    return tuple(n for n in data if not is_target(n)), targets


def _check_same_columns(schemas: dict[str, tuple[Location, pa.Schema]]) -> None:
    first_holder: dict[str, str] = {}  # column -> first symbol whose file has it
    for symbol, (_, schema) in schemas.items():
        for name in schema.names:
            first_holder.setdefault(name, symbol)
    for symbol, (path, schema) in schemas.items():
        have = set(schema.names) | {SYMBOL_COLUMN}  # a symbol column inside a per-symbol file is ignored
        missing = [name for name in first_holder if name not in have]
        if missing:
            raise DataError(
                f"{path}: symbol {symbol} lacks column(s) {_preview(missing)} that {first_holder[missing[0]]} has; "
                f"every symbol needs the same columns: add them to {symbol} or remove them from the other symbols"
            )


def _project(
    features: tuple[str, ...], targets: tuple[str, ...], columns: Sequence[str], path: Location
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    wanted = {c for c in columns if c not in (TIMESTAMP_COLUMN, SYMBOL_COLUMN)}
    unknown = sorted(wanted - set(features) - set(targets))
    if unknown:
        raise DataError(
            f"{path}: no column(s) {', '.join(unknown)}; available features: {_preview(features)}; "
            f"targets: {_preview(targets)}. Fix the requested column names"
        )
    return tuple(c for c in features if c in wanted), tuple(c for c in targets if c in wanted)


def _is_numeric(kind: pa.DataType) -> bool:
    # A column that is empty throughout is read as type null: all-NaN, not a type error.
    return (
        pa.types.is_integer(kind)
        or pa.types.is_floating(kind)
        or pa.types.is_boolean(kind)
        or pa.types.is_decimal(kind)
        or pa.types.is_null(kind)
    )


def _not_numeric(path: Location, name: str, values: pa.ChunkedArray) -> DataError:
    """The error for a non-numeric column, quoting its first value that is not a number."""
    sample = _first_non_number(values)
    if sample is None:  # numbers stored as text: quote one so the user sees it is text
        present = values.drop_null()
        sample = str(present[0].as_py()) if len(present) else None
    return DataError(
        f"{path}: column '{name}' is not numeric (type {values.type}, e.g. value {sample!r}); "
        f"features and targets must be numbers: fix the values or drop the column"
    )


def _first_non_number(values: pa.ChunkedArray) -> str | None:
    series = values.to_pandas()
    present = series[series.notna()]
    if present.empty:
        return None
    if values.type != pa.string() and values.type != pa.large_string():
        return str(present.iloc[0])  # timestamps, lists, ...: no value of such a type is a number
    bad = present[pd.to_numeric(present, errors="coerce").isna()]
    return str(bad.iloc[0]) if len(bad) else None


# ---------------------------------------------------------------------------------------------
# Reading


@dataclass
class _Part:
    """The rows read from one file: the data columns, and each row's symbol as a code into `symbols`."""

    path: Location
    table: pa.Table
    symbols: tuple[str, ...]
    codes: np.ndarray  # row -> index into `symbols`
    ts: np.ndarray | None = None  # row -> ts in int64 nanoseconds, once parsed


def _parts(source: _Source, wanted: list[str], min_rows: int, ranges: Sequence[tuple[int, int]] | None = None) -> Iterator[_Part]:
    if source.long_file is not None:
        yield _read_long(source.long_file, source.requested, wanted, min_rows)
        return
    for symbol, path in sorted(source.files_by_symbol.items()):
        yield _read_symbol_file(path, symbol, wanted, min_rows, ranges)


def _prepare(part: _Part, features: tuple[str, ...], targets: tuple[str, ...], max_rows: int | None,
             ranges: Sequence[tuple[int, int]] | None = None) -> _Part:
    """The part checked (timestamps, types), cut to its latest rows, then to the kept blocks, and cast to the panel's schema."""
    table, codes, ts = _check_rows_in_time(part, max_rows)
    if ranges is not None:
        keep = in_ranges(ts, ranges)
        if not keep.all():
            table, codes, ts = table.filter(pa.array(keep)), codes[keep], ts[keep]
    return _Part(part.path, _normalise(table, part.path, features, targets), part.symbols, codes, ts)


def _read_symbol_file(path: Location, symbol: str, wanted: list[str], min_rows: int,
                      ranges: Sequence[tuple[int, int]] | None = None) -> _Part:
    try:
        file = _parquet_file(path)
        # Counted from the footer, so a short symbol fails before its data is read.
        _check_rows(path, symbol, file.metadata.num_rows, min_rows)
        groups = None if ranges is None else _row_groups_in(file, ranges)
        table = file.read(columns=wanted) if groups is None else file.read_row_groups(groups, columns=wanted)
    except (pa.ArrowInvalid, OSError) as exc:  # an intact footer over damaged pages fails only here
        raise _unreadable(path, exc, "parquet") from None
    return _Part(path, table, (symbol,), np.zeros(table.num_rows, dtype=np.int32))


_UNIT_NS = {"s": 1_000_000_000, "ms": 1_000_000, "us": 1_000, "ns": 1}


def _row_groups_in(file: pq.ParquetFile, ranges: Sequence[tuple[int, int]]) -> list[int] | None:
    """The row groups whose timestamp statistics meet one of `ranges`; None (read all) when the statistics cannot say."""
    kind = file.schema_arrow.field(TIMESTAMP_COLUMN).type
    names = file.metadata.schema.names
    if not pa.types.is_timestamp(kind) or TIMESTAMP_COLUMN not in names:
        return None  # dates, text: filtered row by row after parsing
    column, factor = names.index(TIMESTAMP_COLUMN), _UNIT_NS[kind.unit]
    kept = []
    for i in range(file.metadata.num_row_groups):
        stats = file.metadata.row_group(i).column(column).statistics
        if stats is None or not stats.has_min_max or stats.physical_type != "INT64":
            kept.append(i)  # no usable statistics: read it, the rows are filtered after parsing
        elif overlaps(int(stats.min_raw) * factor, int(stats.max_raw) * factor, ranges):
            kept.append(i)
    return kept


def _read_long(path: Location, requested: tuple[str, ...] | None, wanted: list[str], min_rows: int) -> _Part:
    row_filter = [(SYMBOL_COLUMN, "in", list(requested))] if requested is not None else None
    table = _read(path, [*wanted, SYMBOL_COLUMN], row_filter=row_filter)
    names = table.column(SYMBOL_COLUMN).cast(pa.string())
    keep = pc.and_(pc.is_valid(names), pc.not_equal(names, ""))
    if requested is not None and path.suffix.lower() == ".csv":
        keep = pc.and_(keep, pc.is_in(names, value_set=pa.array(requested)))
    if not pc.all(keep).as_py():
        table, names = table.filter(keep), names.filter(keep)
    symbols = tuple(sorted(pc.unique(names).to_pylist()))
    if not symbols:
        raise DataError(f"{path}: no row has a '{SYMBOL_COLUMN}'; fill in the symbol of every row")
    codes = pc.index_in(names, value_set=pa.array(symbols, pa.string())).to_numpy().astype(np.int32)
    counts = np.bincount(codes, minlength=len(symbols))
    for symbol, count in zip(symbols, counts, strict=True):
        _check_rows(path, symbol, int(count), min_rows)
    return _Part(path, table.drop_columns([SYMBOL_COLUMN]), symbols, codes)


def _check_rows(path: Location, symbol: str, rows: int, min_rows: int) -> None:
    if rows < min_rows:
        raise DataError(
            f"{path}: symbol {symbol} has {rows} rows, fewer than the minimum of {min_rows}; add history, "
            f"drop {symbol} from data.symbols, or lower data.min_rows_per_symbol"
        )


def _check_rows_in_time(part: _Part, max_rows: int | None) -> tuple[pa.Table, np.ndarray, np.ndarray]:
    """Parse ts, reject duplicate timestamps within a symbol, keep each symbol's `max_rows` latest rows.

    Returns the table, each row's symbol code and its ts as int64 nanoseconds, row-aligned.
    """
    ts_column = _utc_timestamps(part.path, part.table.column(TIMESTAMP_COLUMN))
    table = part.table.set_column(part.table.schema.get_field_index(TIMESTAMP_COLUMN), TIMESTAMP_COLUMN, ts_column)
    codes = part.codes
    ts = ts_column.cast(pa.int64()).to_numpy()
    order = np.lexsort((ts, codes))  # by symbol, then time
    sorted_codes, sorted_ts = codes[order], ts[order]
    repeated = (sorted_codes[1:] == sorted_codes[:-1]) & (sorted_ts[1:] == sorted_ts[:-1])
    if repeated.any():
        first = int(np.argmax(repeated))
        symbol = part.symbols[sorted_codes[first]]
        count = int(repeated[sorted_codes[1:] == sorted_codes[first]].sum())
        stamp = pd.Timestamp(int(sorted_ts[first]), tz="UTC").isoformat()
        raise DataError(
            f"{part.path}: symbol {symbol} has duplicate timestamps in column '{TIMESTAMP_COLUMN}', the first "
            f"at {stamp} ({count} repeated rows in all); keep one row per timestamp and symbol"
        )
    if max_rows is None:
        return table, codes, ts
    counts = np.bincount(sorted_codes, minlength=len(part.symbols))
    group_end = np.cumsum(counts)[sorted_codes]  # one past the last row of each row's symbol
    rows_from_end = group_end - np.arange(len(order))  # 1 for a symbol's latest row
    kept = order[rows_from_end <= max_rows]
    if len(kept) == len(order):
        return table, codes, ts
    return table.take(pa.array(kept)), codes[kept], ts[kept]


def _utc_timestamps(path: Location, column: pa.ChunkedArray) -> pa.ChunkedArray:
    kind = column.type
    if column.null_count:
        raise DataError(
            f"{path}: column '{TIMESTAMP_COLUMN}' has {column.null_count} empty values; every row needs a timestamp"
        )
    try:
        if pa.types.is_timestamp(kind) or pa.types.is_date(kind):
            # Arrow stores instants as UTC already: a naive timestamp is read as UTC, a zoned one keeps its instant.
            return column.cast(_TS_TYPE)
    except pa.ArrowInvalid as exc:
        raise DataError(f"{path}: column '{TIMESTAMP_COLUMN}' cannot be held in nanoseconds: {exc}") from None
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        text = column.to_pandas()
        parsed = pd.to_datetime(text, utc=True, format="ISO8601", errors="coerce")
        if parsed.isna().any():
            sample = text[parsed.isna()].iloc[0]
            raise DataError(
                f"{path}: column '{TIMESTAMP_COLUMN}' has a value that is not a timestamp: {sample!r}; "
                f"write ISO 8601 timestamps such as 2024-01-02T14:30:00Z"
            )
        return pa.chunked_array([pa.array(parsed.astype("datetime64[ns, UTC]"), type=_TS_TYPE)])
    raise DataError(
        f"{path}: column '{TIMESTAMP_COLUMN}' has type {kind}, not a timestamp; write it as a timestamp "
        f"(UTC) or as ISO 8601 text"
    )


def _normalise(table: pa.Table, path: Location, features: tuple[str, ...], targets: tuple[str, ...]) -> pa.Table:
    """Cast to the panel's types so that every part has one schema and concatenation copies nothing."""
    arrays = [table.column(TIMESTAMP_COLUMN)]
    for names, kind in ((features, FEATURE_TYPE), (targets, TARGET_TYPE)):
        for name in names:
            column = table.column(name)
            if not _is_numeric(column.type):  # a CSV can show numbers in its header block and text below it
                raise _not_numeric(path, name, column)
            # Integers beyond float precision (2**24 for float32) round, as the module docstring says; a
            # checked cast would refuse them with an Arrow error instead.
            arrays.append(column.cast(kind, safe=not pa.types.is_integer(column.type)))
    return pa.table(arrays, names=[TIMESTAMP_COLUMN, *features, *targets])


def _capacity(source: _Source, max_rows: int | None) -> int | None:
    """Rows the panel will have, from the parquet footers (per-symbol layout); None for a long file."""
    if source.long_file is not None:
        return None
    total = 0
    for path in source.files_by_symbol.values():
        try:
            rows = _parquet_file(path).metadata.num_rows
        except (pa.ArrowInvalid, OSError):
            return None  # reported, with its message, when the file is read
        total += rows if max_rows is None else min(rows, max_rows)
    return total


def _allocate(rows: int, features: tuple[str, ...], targets: tuple[str, ...]) -> dict[str, np.ndarray]:
    arrays = {TIMESTAMP_COLUMN: np.empty(rows, dtype=np.int64)}
    for names, kind in ((features, np.float32), (targets, np.float64)):
        for name in names:
            arrays[name] = np.empty(rows, dtype=kind)
    return arrays


def _grow(array: np.ndarray, rows: int) -> np.ndarray:
    grown = np.empty(max(rows, 2 * len(array)), dtype=array.dtype)
    grown[: len(array)] = array
    return grown


def _copy_into(column: pa.ChunkedArray, target: np.ndarray) -> None:
    """Write a float column's values (nulls as NaN) into `target`, chunk by chunk."""
    start = 0
    for chunk in column.chunks:
        stop = start + len(chunk)
        target[start:stop] = chunk.to_numpy(zero_copy_only=False)
        start = stop


# ---------------------------------------------------------------------------------------------
# File access: the only place that opens a parquet or CSV file


def _source_of(path: Location) -> tuple[Any, Any]:
    """(source, filesystem) for pyarrow's readers: a local path as is, an object as its key on its store."""
    if isinstance(path, ObjectPath):
        return path.key, path.fs
    return path, None


def _parquet_file(path: Location) -> pq.ParquetFile:
    source, fs = _source_of(path)
    return pq.ParquetFile(source, filesystem=fs)


def _unreadable(path: Location, exc: BaseException, kind: str) -> DataError:
    # The store's failures (object deleted mid-run, credentials revoked) say so; a damaged file says that.
    if isinstance(path, ObjectPath) and isinstance(exc, OSError) and not isinstance(exc, pa.ArrowInvalid):
        return DataError(explain(str(path), exc))
    return DataError(f"{path}: cannot be read ({exc}); check that the file is a complete {kind} file")


def _csv_stream(path: Location) -> Any:
    if isinstance(path, ObjectPath):
        return path.fs.open_input_stream(path.key)
    return path


def _schema(path: Location) -> pa.Schema:
    try:
        if path.suffix.lower() == ".csv":
            # The schema pyarrow infers from the first block; a non-numeric value further down is caught on read.
            reader = pacsv.open_csv(_csv_stream(path), convert_options=_csv_options())
            schema = reader.schema
            reader.close()
            return schema
        source, fs = _source_of(path)
        return pq.read_schema(source, filesystem=fs)
    except (pa.ArrowInvalid, OSError) as exc:
        raise _unreadable(path, exc, path.suffix[1:]) from None


def _read(path: Location, columns: list[str], row_filter: list | None = None) -> pa.Table:
    if path.suffix.lower() != ".csv":
        source, fs = _source_of(path)
        try:
            # With a filter, row groups whose symbol statistics exclude every requested symbol are skipped unread.
            return pq.read_table(source, columns=columns, filters=row_filter, filesystem=fs)
        except (pa.ArrowInvalid, OSError) as exc:
            raise _unreadable(path, exc, "parquet") from None
    try:
        # pyarrow widens a column's guessed type (to text) when a later block needs it; `_normalise` reports that.
        return pacsv.read_csv(_csv_stream(path), convert_options=_csv_options(columns))
    except pa.ArrowInvalid as exc:
        raise DataError(f"{path}: cannot be read as CSV ({exc}); check the file") from None


def _csv_options(columns: list[str] | None = None) -> pacsv.ConvertOptions:
    # Symbols such as "1301" must stay text.
    return pacsv.ConvertOptions(include_columns=columns or [], column_types={SYMBOL_COLUMN: pa.string()})


def _preview(names: Sequence[str], limit: int = 20) -> str:
    shown = ", ".join(names[:limit])
    return shown if len(names) <= limit else f"{shown}, … ({len(names)} in all)"
