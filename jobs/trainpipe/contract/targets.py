"""What a target column is: its task type and horizon, read from its name (and values when the name is silent)."""

from __future__ import annotations

import math
import re

from trainpipe.contract.names import (
    CLASSIFICATION_TARGET_PREFIX,
    REGRESSION_TARGET_PREFIX,
    TARGET_PREFIXES,
    TaskType,
)

_HORIZON = re.compile(r"(?<![A-Za-z0-9])(\d+)(m|h|d)(?![A-Za-z])")
_UNIT_MINUTES = {"m": 1, "h": 60, "d": 1440}


def is_target(column: str) -> bool:
    return column.startswith(TARGET_PREFIXES)


def horizon_minutes(target: str) -> int | None:
    """Horizon in minutes parsed from the first `<n>m|h|d` token of the name, or None when absent."""
    match = _HORIZON.search(target)
    if match is None:
        return None
    return int(match.group(1)) * _UNIT_MINUTES[match.group(2)]


def horizon_bars(target: str, interval_minutes: float) -> int:
    """Bars between a row and the last row its label looks at; at least 1 (a label always uses t+1)."""
    minutes = horizon_minutes(target)
    if minutes is None or interval_minutes <= 0:
        return 1
    return max(1, math.ceil(minutes / interval_minutes - 1e-9))


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

