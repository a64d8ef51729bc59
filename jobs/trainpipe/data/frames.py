"""Column accessors for a loaded panel frame that never materialise Python objects per row."""

from __future__ import annotations

import numpy as np
import pandas as pd

from trainpipe.contract.names import SYMBOL_COLUMN, TIMESTAMP_COLUMN


def frame_ts(frame: pd.DataFrame) -> np.ndarray:
    """The timestamp column as datetime64[ns] (UTC instants for zoned columns).

    `Series.to_numpy()` of a zoned column is an object array of Timestamps, about 140 bytes per row,
    which on a panel of many rows outweighs the features' matrix.
    """
    values = frame[TIMESTAMP_COLUMN]
    if isinstance(values.dtype, pd.DatetimeTZDtype):
        # The int64 behind a zoned column is already the UTC instant: view it, no copy, no conversion.
        return values.array.as_unit("ns").asi8.view("datetime64[ns]")
    return values.to_numpy(dtype="datetime64[ns]")


def frame_symbols(frame: pd.DataFrame) -> np.ndarray:
    """Each row's symbol as a string array; "_" for a frame without a symbol column (a single series)."""
    if SYMBOL_COLUMN in frame.columns:
        return frame[SYMBOL_COLUMN].astype(str).to_numpy(dtype=str)
    return np.full(len(frame), "_")
