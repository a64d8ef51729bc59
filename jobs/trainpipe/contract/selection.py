"""What `trainpipe select` writes and plan, the report and the next run's stability check read.

`selection/<target>/selected_features.json` per target and `selection/selection_summary.json` for the
whole stage; snake_case keys on disk. The one writer and reader is `trainpipe.io.stage_files`.
"""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from trainpipe.contract.base import SnakeContract
from trainpipe.contract.names import SELECTION_SCHEMA_VERSION, Stability, TaskType


class StabilityCheck(SnakeContract):
    """One comparison of this selection with other ranked feature lists; UNKNOWN, with a note, when it could not be made."""

    state: Stability
    overlap: float | None = Field(description="Jaccard overlap of the two feature sets (the mean over resamples)")
    kendall_tau: float | None = Field(description="Rank agreement of the features both lists kept (the mean over resamples)")
    note: str | None = Field(None, description="Why the check was not made, or what it compared with")


class PreviousRunCheck(StabilityCheck):
    """Against the selection of the same target in the pipeline's last succeeded run."""

    previous_run: str | None = Field(None, description="The run folder compared with; None: this output folder's own earlier selection")
    previous_features: list[str] | None = None


class ResampledCheck(StabilityCheck):
    """Against LightGBM gain rankings of block-bootstrap resamples (whole timestamps) of the development rows."""

    resamples: int = Field(ge=0, description="Resamples made (0: the check was not made)")
    block_bars: int | None = Field(None, description="Consecutive timestamps per bootstrap block")
    seed: int | None = None


class SelectionStability(SnakeContract):
    """How far this selection can be trusted to hold: routing reads `state`.

    `state` is the worse of the two checks that were made (a selection that moved since the last run, or
    that moves when the rows are resampled, is no more stable than its worse showing); UNKNOWN, shown as
    "first run", only when neither could be made, and routing then allows at most the experimental lane.
    """

    state: Stability
    against_previous: PreviousRunCheck
    resampled: ResampledCheck


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

