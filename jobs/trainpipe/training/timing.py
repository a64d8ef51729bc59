"""Whether a model's holdout predictions time anything at all; pure, called by the stage worker for each model's metrics.json.

A model with no timing still gets figures, and they can look like skill: a regression that predicts a
positive return every day is long throughout, so its long/short "Sharpe" is buy-and-hold's; a model
whose prediction is the same for every symbol at a timestamp ranks nothing, so its cross-sectional
book is an alphabetical one. Such a model is flagged, and the report never picks it as the best.
The checks, first match wins:

| kind                             | when                                                        |
|----------------------------------|-------------------------------------------------------------|
| `constant_predictions`           | every holdout prediction is the same                        |
| `same_prediction_across_symbols` | (several symbols) each timestamp's predictions are the same |
| `position_never_changes`         | the long/short book is the same at every holdout timestamp  |

"The same" allows a relative difference of `SAME` of the largest prediction: a network whose output has
collapsed still differs in its last float32 digits, and positions taken on those are noise, not a view.
"""

from __future__ import annotations

from enum import StrEnum

import numpy as np
import pandas as pd

from trainpipe.training.backtest import QUANTILE, books
from trainpipe.training.metrics_file import Timing

SAME = 1e-6  # float32 carries about 7 significant digits


class NoTiming(StrEnum):
    CONSTANT = "constant_predictions"
    NO_CROSS_SECTION = "same_prediction_across_symbols"
    FIXED_POSITION = "position_never_changes"


def judge_timing(pred: np.ndarray, ts: np.ndarray, symbols: np.ndarray, *, centre: float, quantile: float = QUANTILE) -> Timing:
    """The timing verdict of holdout predictions `pred` at `ts` × `symbols`; `centre` splits long from short (0, or 0.5 for probabilities)."""
    pred = np.asarray(pred, dtype=np.float64)
    ok = np.isfinite(pred)
    pred, ts, symbols = pred[ok], np.asarray(ts)[ok], np.asarray(symbols).astype(str)[ok]
    if len(pred) == 0:
        return Timing(has_timing=False, kind=NoTiming.CONSTANT, reason="no finite holdout prediction")
    tolerance = SAME * max(float(np.abs(pred).max()), 1e-12)
    if np.ptp(pred) <= tolerance:
        return Timing(has_timing=False, kind=NoTiming.CONSTANT,
                      reason=f"the same prediction ({pred[0]:.6g}) for all {len(pred)} holdout rows: IC undefined, the position never changes")
    several = len(np.unique(symbols)) > 1
    if several:
        by_ts = pd.Series(pred).groupby(ts)
        shared = by_ts.size().to_numpy() > 1  # symbols on different calendars share no timestamp: nothing to rank there
        spread = by_ts.agg(np.ptp).to_numpy()[shared]
        if len(spread) and (spread <= tolerance).all():
            return Timing(has_timing=False, kind=NoTiming.NO_CROSS_SECTION,
                          reason="every symbol gets the same prediction at each holdout timestamp: nothing ranks one symbol above another, "
                                 "so the cross-sectional figures are undefined and the long/short book is picked by symbol name")
    weights = books(pred, None, ts, symbols, centre=centre, quantile=quantile).long_short
    if len(weights) < 2:  # no book to hold (symbols that never share a timestamp): the predictions vary, that is all one can say
        return Timing(has_timing=True)
    changes = int((np.abs(np.diff(weights, axis=0)).sum(axis=1) > 0).sum())
    if changes == 0:
        return Timing(has_timing=False, kind=NoTiming.FIXED_POSITION, position_changes=0, reason=_fixed_reason(weights, several, centre))
    return Timing(has_timing=True, position_changes=changes)


def _fixed_reason(weights: np.ndarray, several: bool, centre: float) -> str:
    if several:
        return ("the long/short book holds the same symbols at every holdout timestamp: its Sharpe is that of one fixed spread, "
                "not of the model's timing")
    side = weights[0].sum() if len(weights) else 0.0
    held = "long" if side > 0 else "short" if side < 0 else "flat"
    say = {"long": f"every prediction is above {centre:g}", "short": f"every prediction is below {centre:g}", "flat": f"every prediction is {centre:g}"}[held]
    echo = {"long": "its Sharpe is buy-and-hold's", "short": "its Sharpe is buy-and-hold's with the sign flipped", "flat": "it never trades"}[held]
    return f"{held} at every holdout timestamp ({say}): {echo}"
