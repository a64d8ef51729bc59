"""What became of a stage or a unit: one `Outcome` for every stage, read by the runner, the CLI, the reports and the operator.

The training stages' own files (`result.json`, a worker's `results.jsonl`) and their counts were written
with other words before the stages shared one vocabulary; those words stay on disk, so earlier runs' files
and the scripts that read them keep working. `TRAINING_WORDS` is the one table between the two.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any

from pydantic import BeforeValidator, PlainSerializer


class Outcome(StrEnum):
    RAN = "ran"  # computed here, now (a training unit: trained)
    CACHED = "cached"  # done here before with the same inputs: its record still matches, nothing was computed
    REUSED = "reused"  # copied from a sibling run folder that computed it from the same inputs
    # Not computed in this call although it is in the plan: a training unit already done with the same
    # fingerprint, or one its family cannot train (the record's reason says which).
    SKIPPED = "skipped"
    FAILED = "failed"  # the unit's own work failed; a rerun retries it


# The word each outcome a training unit can have is written as in the training files, and the count key of
# a training summary. A training unit is never CACHED: one already done counts as skipped ("already done").
TRAINING_WORDS: dict[Outcome, str] = {
    Outcome.RAN: "trained",
    Outcome.FAILED: "failed",
    Outcome.SKIPPED: "skipped",
    Outcome.REUSED: "reused",
}
_TRAINING_OUTCOMES: dict[str, Outcome] = {word: outcome for outcome, word in TRAINING_WORDS.items()}


def training_outcome(value: Any) -> Outcome:
    """The Outcome of a training unit, given as one or as the word its files write ("trained"); refuses any other."""
    outcome = value if isinstance(value, Outcome) else _TRAINING_OUTCOMES.get(value) if isinstance(value, str) else None
    if outcome not in TRAINING_WORDS:
        raise ValueError(f"{value!r} is not a training unit's outcome: the training files write {', '.join(TRAINING_WORDS.values())}")
    return outcome


def training_word(outcome: Outcome) -> str:
    return TRAINING_WORDS[outcome]


# An Outcome that travels in a training file under its training word ("trained", not "ran").
TrainingOutcome = Annotated[Outcome, BeforeValidator(training_outcome), PlainSerializer(training_word, return_type=str)]
