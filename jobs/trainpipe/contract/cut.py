"""The run's one holdout cut: which bars rank, select and plan may read, and which only final metrics see.

Written by `trainpipe rank` into the rankings and copied into the training plan's metadata; read by
select, plan, the training worker and the report. Computed by `trainpipe.cv.holdout_cut`.
"""

from __future__ import annotations

from pydantic import Field

from trainpipe.contract.base import Contract


class SymbolCut(Contract):
    """One symbol's bars as rank read them, counted in that symbol's own bars (ISO-8601 UTC instants)."""

    first_ts: str = Field(description="First bar of the panel rank read (after data.maxRowsPerSymbol)")
    last_ts: str = Field(description="Last bar of the panel rank read: later stages ignore bars appended after it")
    rows: int = Field(ge=1, description="Bars of the symbol in that panel")
    development_end: str = Field(description="Rank, select and plan read only bars strictly before this one")
    holdout_start: str = Field(description="First bar of the training holdout: only final model metrics read it and after")
    holdout_rows: int = Field(ge=1, description="Bars from holdout_start to last_ts")


class HoldoutCut(Contract):
    """Fixed once per run before ranking, so nothing that chooses targets, features or routes sees the holdout."""

    fraction: float = Field(gt=0, lt=1, description="Each symbol's latest share of its bars held out (training.holdoutFraction)")
    purge_bars: int = Field(ge=0, description="Bars between development and holdout: the longest target horizon plus ranking.embargoBars")
    horizon_bars: dict[str, int] = Field(description="Each candidate target's horizon in bars, as every stage's purge counts it")
    symbols: dict[str, SymbolCut]
