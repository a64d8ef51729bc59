"""What `trainpipe select` writes and plan, the report and the next run's stability check read.

`selection/<target>/selected_features.json` per target and `selection/selection_summary.json` for the
whole stage; snake_case keys on disk. The one writer and reader is `trainpipe.io.stage_files`.
"""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from trainpipe.contract.base import SnakeContract
from trainpipe.contract.names import SELECTION_SCHEMA_VERSION, Stability, TaskType


class SelectionStability(SnakeContract):
    """This selection against the previous run's of the same target (UNKNOWN on a first run)."""

    state: Stability
    overlap: float | None = Field(description="Jaccard overlap of the two feature sets")
    kendall_tau: float | None = Field(description="Rank agreement of the features both selections kept")
    previous_features: list[str] | None


class TargetSelection(SnakeContract):
    SCHEMA_NAME: ClassVar[str] = "selection"
    schema_version: str = SELECTION_SCHEMA_VERSION
    target: str
    task: TaskType
    features: list[str] = Field(description="Ordered: the plan's jobs train on exactly this list")
    stability: SelectionStability



class SelectionEntry(SnakeContract):
    """One target's line of the select stage's summary (also a select unit record's summary)."""

    n_features: int = Field(ge=0)
    stability: Stability


class SelectionSummary(SnakeContract):
    SCHEMA_NAME: ClassVar[str] = "selection summary"
    schema_version: str = SELECTION_SCHEMA_VERSION
    targets: dict[str, SelectionEntry]

