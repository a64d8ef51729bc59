"""The run's one holdout cut: one instant for the whole panel, before which rank, select and plan read and from which only final metrics read.

Written by `trainpipe rank` into the rankings and copied into the training plan's metadata; read by
select, plan (routing), the training worker and the report. Computed by `trainpipe.cv.holdout_cut`.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import Field

from trainpipe.contract.base import Contract


class SymbolCoverage(StrEnum):
    """Which side of the cut a symbol has bars on; anything but FULL is a warning that names the symbol."""

    FULL = "full"  # development bars and holdout bars
    SHORT = "short"  # both, but fewer development bars than the cut's minDevelopmentRows
    NO_HOLDOUT = "no_holdout"  # ends before the holdout starts: trains, but no model is scored on it
    NO_DEVELOPMENT = "no_development"  # listed too late: no bar before development ends, so it trains nothing


class SymbolCut(Contract):
    """One symbol's bars on either side of the run's cut (ISO-8601 UTC instants); facts for the report and the logs."""

    first_ts: str = Field(description="First bar of the panel rank read (after data.maxRowsPerSymbol)")
    last_ts: str = Field(description="Last bar of the panel rank read: later stages ignore bars appended after it")
    rows: int = Field(ge=1, description="Bars of the symbol in that panel")
    development_rows: int = Field(ge=0, description="Bars before the cut's developmentEnd: what rank, select, plan and training may read")
    holdout_rows: int = Field(ge=0, description="Bars at or after the cut's holdoutStart: read only by the final model metrics")
    coverage: SymbolCoverage


class TimeBlock(Contract):
    """One kept run of the panel's calendar: every symbol's bars from `first` to `last` (both included)."""

    first: str = Field(description="First kept timestamp (ISO-8601 UTC)")
    last: str = Field(description="Last kept timestamp (ISO-8601 UTC)")
    timestamps: int = Field(ge=1, description="Timestamps of the calendar inside the block")
    rows: int = Field(ge=1, description="Rows (bars of all symbols) inside the block")


class PanelSample(Contract):
    """How a panel larger than data.rowBudget was cut down: whole timestamp blocks, chosen from the seed before the bytes were read."""

    row_budget: int = Field(ge=1, description="data.rowBudget: the most rows a stage loads")
    seed: int = Field(ge=0, description="The run's seed, which placed the blocks")
    rows_available: int = Field(ge=0, description="Rows of the panel (after data.maxRowsPerSymbol)")
    rows_kept: int = Field(ge=0, description="Rows inside the kept blocks: what every stage of the run reads")
    timestamps_available: int = Field(ge=0)
    timestamps_kept: int = Field(ge=0)
    blocks: list[TimeBlock] = Field(description="The kept blocks, oldest first; between two blocks no bar is read")


class HoldoutCut(Contract):
    """Fixed once per run before ranking, one instant for every symbol, so nothing that chooses targets, features or routes sees the holdout."""

    fraction: float = Field(gt=0, lt=1, description="Share of the panel's timestamps (the union over symbols) held out (training.holdoutFraction)")
    purge_bars: int = Field(ge=0, description="Bars between development and holdout: the longest target horizon plus ranking.embargoBars")
    horizon_bars: dict[str, int] = Field(description="Each candidate target's horizon in bars, as every stage's purge counts it")
    holdout_start: str = Field(description="First instant of the holdout, the same for every symbol: the (1 − fraction) quantile of the panel's timestamps")
    development_end: str = Field(description="Rank, select and plan read only bars strictly before this instant: purgeBars bars before holdoutStart, "
                                             "counted in the panel's timestamps and in each symbol's own bars, whichever reaches further back")
    min_development_rows: int = Field(ge=0, description="A symbol with fewer development bars is SHORT, a warning (data.minRowsPerSymbol)")
    symbols: dict[str, SymbolCut]
    sample: PanelSample | None = Field(None, description="Set when the panel outgrew data.rowBudget: the timestamp blocks rank read, which every later stage reads too")

    def warnings(self) -> list[str]:
        """One line per symbol the cut leaves short, without a holdout, or without development bars, in symbol order."""
        return [symbol_warning(name, c, self) for name, c in self.symbols.items() if c.coverage is not SymbolCoverage.FULL]


def symbol_warning(name: str, symbol: SymbolCut, cut: HoldoutCut) -> str:
    """What the cut means for `name`, said for a user reading the logs or the report."""
    coverage = SymbolCoverage(symbol.coverage)
    if coverage is SymbolCoverage.NO_DEVELOPMENT:
        return (f"symbol {name}: listed after the cut (first bar {symbol.first_ts}, development ends {cut.development_end}): "
                f"trains nothing; its {symbol.holdout_rows} holdout bars score cross-sectional models only")
    if coverage is SymbolCoverage.NO_HOLDOUT:
        return (f"symbol {name}: ends before the cut (last bar {symbol.last_ts}, holdout starts {cut.holdout_start}): "
                f"no holdout, so no symbol-specific model is trained or scored on it; its {symbol.development_rows} development bars still train")
    if coverage is SymbolCoverage.SHORT:
        return (f"symbol {name}: short history, {symbol.development_rows} development bars before the cut (fewer than "
                f"data.minRowsPerSymbol={cut.min_development_rows}) and {symbol.holdout_rows} holdout bars: its scores rest on few bars")
    return f"symbol {name}: {symbol.development_rows} development and {symbol.holdout_rows} holdout bars"
