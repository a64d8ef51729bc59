"""The early-stopping tail of a training set; called by the trainers.

Never shuffled. It cuts on timestamp positions (`trainpipe.cv`), so for a cross-sectional job every
symbol's rows of one timestamp land on the same side. The job holdout itself is the run's cut
(`trainpipe.cv.cut_split`), fixed before ranking.
"""

from __future__ import annotations

import numpy as np

from trainpipe.cv import purged_holdout, timestamp_positions

MIN_TAIL_TIMESTAMPS = 10  # below this an early-stopping tail is noise: train on everything, no early stop


def early_stopping_split(ts: np.ndarray, fraction: float, purge: int) -> tuple[np.ndarray, np.ndarray]:
    """(fit rows, validation rows): the validation rows are the latest `fraction` of the training timestamps.

    `purge` bars (the target horizon) are dropped before the tail so no fit label overlaps it. When the
    tail would be tiny, validation is empty and the caller trains without early stopping.
    """
    rows = np.arange(len(ts))
    if fraction <= 0:
        return rows, rows[:0]
    _, n_ts = timestamp_positions(ts)
    if n_ts * fraction < MIN_TAIL_TIMESTAMPS or n_ts * (1 - fraction) - purge < MIN_TAIL_TIMESTAMPS:
        return rows, rows[:0]
    fold = purged_holdout(ts, fraction, purge)
    return fold.train, fold.test
