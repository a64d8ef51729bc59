"""What a training stage reports about its units: the worker's line per unit, the stage's record per unit, and the result files.

* `UnitResult`: one line of a worker's `results.jsonl`, appended as soon as the unit ends; the training
  stage reads them back (a worker that dies leaves the lines of the units it finished);
* `UnitRecord`: what the stage concluded about a unit (an `Outcome`: ran, failed, skipped, reused), in `StageResultFile`
  (`.trainpipe/training/<stage>/result.json`) and, for a unit run alone, `UnitRunResult`
  (`.trainpipe/units/<stage>/<unit>/result.json`).

snake_case keys on disk, and a unit's outcome under `status` in the training words ("trained" for ran:
`contract.outcomes.TRAINING_WORDS`). The one writer and reader of each file is `trainpipe.io.training_files`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from pydantic import Field, field_validator, model_validator

from trainpipe.contract.base import SnakeContract
from trainpipe.contract.names import TRAINING_RESULT_SCHEMA_VERSION
from trainpipe.contract.outcomes import TRAINING_WORDS, Outcome, TrainingOutcome


class _StatusWord:
    """A unit's `outcome` in the word its file writes under `status` (a mixin: the field stays where the file has it)."""

    if TYPE_CHECKING:
        outcome: Outcome

    @property
    def status(self) -> str:
        """The word the training files write for the outcome ("trained", "failed", "skipped", "reused")."""
        return TRAINING_WORDS[self.outcome]


class UnitResult(SnakeContract, _StatusWord):
    """The worker's report of one unit it trained (or failed to); optional fields are left out of the line when unset."""

    job_id: str
    family: str
    stage: str
    outcome: TrainingOutcome = Field(alias="status")
    seconds: float = Field(ge=0, description="Wall time of the unit in the worker: load of its rows, fit, evaluation, save")
    device: str | None = None
    model_dir: str | None = None
    train_seconds: float | None = Field(None, description="Time in fit alone")
    peak_rss_mb: float | None = None
    error: str | None = Field(None, description="`Type: message` of a failure; the traceback is in the unit's .error.txt")

    @field_validator("outcome")
    @classmethod
    def _worked(cls, outcome: Outcome) -> Outcome:
        if outcome not in (Outcome.RAN, Outcome.FAILED):
            raise ValueError(f"a worker trains a unit or fails to, it does not report one {TRAINING_WORDS[outcome]}")
        return outcome

    def to_line(self) -> dict:
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


class UnitRecord(SnakeContract, _StatusWord):
    """What the stage concluded about one unit: ran or failed in a worker, skipped (up to date, not trainable), or reused."""

    job_id: str
    family: str
    outcome: TrainingOutcome = Field(alias="status")
    reason: str = ""
    seconds: float = 0.0
    device: str = ""
    model_dir: str = ""


class StageResultFile(SnakeContract):
    """`result.json` of a whole training stage run in one process."""

    SCHEMA_NAME: ClassVar[str] = "training result"
    schema_version: str = TRAINING_RESULT_SCHEMA_VERSION
    stage: str
    trained: int = Field(ge=0)
    failed: int = Field(ge=0)
    skipped: int = Field(ge=0)
    reused: int = Field(ge=0)
    seconds: float
    records: list[UnitRecord]

    @model_validator(mode="after")
    def _consistent(self) -> StageResultFile:
        counts = {word: sum(r.outcome is outcome for r in self.records) for outcome, word in TRAINING_WORDS.items()}
        if counts != {"trained": self.trained, "failed": self.failed, "skipped": self.skipped, "reused": self.reused}:
            raise ValueError(f"the counts disagree with the records ({counts})")
        return self


class UnitRunResult(UnitRecord):
    """`result.json` of one unit run on its own (one pod of a family's Indexed Job)."""

    SCHEMA_NAME: ClassVar[str] = "training result"
    schema_version: str = TRAINING_RESULT_SCHEMA_VERSION
    unit_id: str
    index: int = Field(ge=0, description="The unit's index among its family's units (the pod's completion index)")
    wall_seconds: float

