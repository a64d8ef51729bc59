"""Past-only time windows per symbol for the sequence families (cnn1d, lstm, transformer); pure numpy.

A window for row i holds the `lookback` most recent rows of i's symbol with ts <= ts[i], oldest first,
ending with row i itself. It never crosses symbols and never reaches a later row. Rows with less
history are left-padded with zeros (the scaled feature mean, since features are standardised first)
so every row gets a prediction; the padding is documented in the model's meta.
"""

from __future__ import annotations

import numpy as np


def window_index(ts: np.ndarray, symbols: np.ndarray, lookback: int) -> np.ndarray:
    """(N, lookback) row indices of each row's window, -1 where padded; rows keep their input order."""
    n = len(ts)
    if lookback < 1:
        raise ValueError(f"lookback must be >= 1, got {lookback}")
    if n == 0:
        return np.zeros((0, lookback), dtype=np.int64)
    sym_codes = np.unique(np.asarray(symbols, dtype=object).astype(str), return_inverse=True)[1]
    ts_int = np.asarray(ts).astype("datetime64[ns]").astype(np.int64)
    order = np.lexsort((ts_int, sym_codes))  # by symbol, then time
    s_sorted, t_sorted = sym_codes[order], ts_int[order]
    same = (s_sorted[1:] == s_sorted[:-1]) & (t_sorted[1:] == t_sorted[:-1])
    if same.any():
        raise ValueError("duplicate (symbol, ts) rows: a sequence window needs one row per symbol and timestamp")
    # Position of each sorted row inside its symbol's run.
    starts = np.r_[0, np.flatnonzero(s_sorted[1:] != s_sorted[:-1]) + 1]
    run_start = np.repeat(starts, np.diff(np.r_[starts, n]))
    pos_in_run = np.arange(n) - run_start
    offsets = np.arange(-lookback + 1, 1)  # oldest ... current
    sorted_idx = np.arange(n)[:, None] + offsets[None, :]
    valid = (pos_in_run[:, None] + offsets[None, :]) >= 0
    idx_sorted = np.where(valid, order[np.clip(sorted_idx, 0, n - 1)], -1)
    out = np.empty_like(idx_sorted)
    out[order] = idx_sorted
    return out


def build_windows(values: np.ndarray, ts: np.ndarray, symbols: np.ndarray, lookback: int) -> np.ndarray:
    """(N, lookback, F) float32 windows of `values` (already imputed and scaled), zero-padded on the left."""
    idx = window_index(ts, symbols, lookback)
    padded = np.vstack([values.astype(np.float32), np.zeros((1, values.shape[1]), dtype=np.float32)])
    return padded[idx]  # index -1 picks the zero row
