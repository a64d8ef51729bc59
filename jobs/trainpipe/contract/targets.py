"""What a target column is: its task type and horizon, read from its name (and values when the name is silent)."""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping

from trainpipe.contract.names import (
    CLASSIFICATION_TARGET_PREFIX,
    REGRESSION_TARGET_PREFIX,
    TARGET_PREFIXES,
    TaskType,
)

# The horizon is the name's last `_` token: `<n>` bars, or `<n><unit>` with a unit of time. `m` is minutes
# and `mo` months; d, w and mo are calendar spans (a week is 7 days), which on business-day bars overstates
# the horizon in bars: a longer purge is the safe side. `targets.horizonBars` states it exactly.
_HORIZON_TOKEN = re.compile(r"^(\d+)(m|h|d|w|mo)?$")
_UNIT_MINUTES = {"m": 1, "h": 60, "d": 1440, "w": 7 * 1440, "mo": 30 * 1440}
HORIZON_OVERRIDE_FIELD = "targets.horizonBars"


class HorizonError(ValueError):
    """A target whose name does not say its horizon; the message names the column and the spec field that does."""


def is_target(column: str) -> bool:
    return column.startswith(TARGET_PREFIXES)


def _token(target: str) -> re.Match[str] | None:
    return _HORIZON_TOKEN.match(target.rsplit("_", 1)[-1])


def horizon_minutes(target: str) -> int | None:
    """Horizon in minutes from the name's `<n><unit>` suffix; None when it is in bars (or unreadable)."""
    match = _token(target)
    if match is None or match.group(2) is None:
        return None
    return int(match.group(1)) * _UNIT_MINUTES[match.group(2)]


def horizon_bars(target: str, interval_minutes: float, overrides: Mapping[str, int] | None = None) -> int:
    """Bars between a row and the last bar its label looks at: `overrides[target]`, else read from the name.

    `fwd_ret_20` is 20 bars; `fwd_ret_5d`, `y_up_1w`, `fwd_ret_3mo`, `fwd_ret_30m` are converted with the
    data's interval (rounded up, at least 1: a label always uses t+1). A name whose last token is not a
    horizon is an error, never a silent 1 bar: its purge and leak scan would be too short.
    """
    if overrides and target in overrides:
        return max(1, int(overrides[target]))
    match = _token(target)
    if match is None or int(match.group(1)) < 1:
        raise HorizonError(
            f"target column {target!r}: cannot read its horizon; name it <prefix>_<n>[m|h|d|w|mo] (no unit = bars), "
            f"or give it in bars in the spec: {HORIZON_OVERRIDE_FIELD}: {{{target}: <bars>}}"
        )
    n, unit = int(match.group(1)), match.group(2)
    if unit is None:
        return n
    if interval_minutes <= 0:
        raise HorizonError(f"target column {target!r}: the data's interval is unknown, so {n}{unit} cannot be converted to bars; "
                           f"set data.interval or {HORIZON_OVERRIDE_FIELD}")
    return max(1, math.ceil(n * _UNIT_MINUTES[unit] / interval_minutes - 1e-9))


def positive_label(labels: Iterable[float]) -> float:
    """The positive class of a binary target: its higher label (1 of 0/1, 1 of -1/1, 2 of 1/2).

    Training encodes it as 1 and evaluation scores it as 1; pass distinct labels (np.unique) for big arrays.
    """
    values = sorted(set(float(v) for v in labels if math.isfinite(v)))
    if len(values) == 0:
        raise ValueError("a binary target with no labelled rows has no positive class")
    return values[-1]


def task_type(target: str, distinct_values: int | None = None, integer_like: bool = True) -> TaskType:
    """`fwd_ret_*` is regression; `y_*` is binary with two values, multiclass with up to ten integer values."""
    if target.startswith(REGRESSION_TARGET_PREFIX):
        return TaskType.REGRESSION
    if target.startswith(CLASSIFICATION_TARGET_PREFIX):
        if distinct_values is None or distinct_values <= 2:
            return TaskType.BINARY
        if distinct_values <= 10 and integer_like:
            return TaskType.MULTICLASS
        return TaskType.REGRESSION
    raise ValueError(f"{target!r} is not a target column: target names start with one of {TARGET_PREFIXES}")

