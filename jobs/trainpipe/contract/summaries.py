"""What each stage's step concluded: the summary kept in its record (`.trainpipe/<stage>.json`), shown by `trainpipe run` and reported at exit.

Written by the steps of `trainpipe.runner.steps`, stored in `StageRecord.summary` with snake_case keys (the
spelling the records always had), read back when a later run finds the stage current or copies it from a
sibling run. Which model each stage's record holds is its `Step` (`trainpipe.runner.steps.STEPS`).
"""

from __future__ import annotations

from pydantic import Field

from trainpipe.contract.base import SnakeContract
from trainpipe.contract.selection import SelectionEntry


class RankStageSummary(SnakeContract):
    targets_ranked: int = Field(ge=0)
    selected: list[str] = Field(description="The kept targets, in ranking order")
    rows: int = Field(ge=0, description="Rows of the panel read, holdout included")
    development_rows: int = Field(ge=0, description="Rows before the holdout cut: what ranking scored")
    cut_warnings: list[str] = Field(default_factory=list, description="Symbols the holdout cut leaves short, without a holdout, or with nothing to train")
    no_evidence: str | None = Field(None, exclude_if=lambda v: v is None, description="No target carries evidence of skill: why, and the run trains nothing")


class SelectStageSummary(SnakeContract):
    targets: dict[str, SelectionEntry]


class PlanStageSummary(SnakeContract):
    jobs: int = Field(ge=0)
    by_route: dict[str, int]
    families: list[str] = Field(description="The families asked for, in CPU→GPU order")


class UnitFailure(SnakeContract):
    job_id: str
    family: str
    reason: str


class TrainingStageSummary(SnakeContract):
    """A training stage's units by outcome; the count keys are the training files' words (`contract.outcomes.TRAINING_WORDS`)."""

    units: int = Field(ge=0)
    trained: int = Field(ge=0)
    failed: int = Field(ge=0)
    skipped: int = Field(ge=0)
    reused: int = Field(ge=0)
    devices: list[str] = Field(description="Where the units of this stage were trained, sorted")
    failures: list[UnitFailure]
