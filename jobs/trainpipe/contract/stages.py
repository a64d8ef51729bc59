"""What each stage is, one row per stage, read by both sides.

The operator fans a stage out into Jobs, builds their command lines, picks their image and nodes, counts
the run's progress and knows which pods leave a report from this table; the runner and the CLI run the
same commands. What a stage does beyond its row is its step function on the jobs side and, when it
reports something the operator sizes the next stage by, its report model (`contract.reports`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

from trainpipe.contract.names import STAGE_ORDER, Stage
from trainpipe.contract.reports import PlanReport, RankReport, StageReport


class FanOut(StrEnum):
    """How many units (pods) a stage runs, in how many Jobs."""

    SINGLE = "single"  # one Job of one unit
    PER_TARGET = "per-target"  # one Indexed Job, a unit per target rank kept (its report's `selected`)
    PER_PLAN_UNIT = "per-plan-unit"  # an Indexed Job per family of the stage in the plan, a unit per planned model


class Pool(StrEnum):
    """Whose image and nodes a stage's pods get: spec.images.<pool>, the operator's --<pool>-image and node settings."""

    CPU = "cpu"
    GPU = "gpu"


@dataclass(frozen=True)
class StageRow:
    stage: Stage
    fan_out: FanOut
    pool: Pool
    command: tuple[str, ...]  # the `trainpipe` words that run one unit of it
    # What a finished pod's termination message carries into the pipeline's status.
    report: type[StageReport] | None = None
    # Computes from the data and the spec, cached by the digest of its inputs (the report only renders files).
    computes: bool = True
    # A later run with the same inputs copies its outputs from an earlier run folder instead of computing them.
    reusable: bool = False

    @property
    def indexed(self) -> bool:
        """An Indexed Job: each pod's JOB_COMPLETION_INDEX names its unit, and retries are per index."""
        return self.fan_out is not FanOut.SINGLE

    @property
    def trains(self) -> bool:
        return self.fan_out is FanOut.PER_PLAN_UNIT


STAGES: dict[Stage, StageRow] = {row.stage: row for row in (
    StageRow(Stage.RANK, FanOut.SINGLE, Pool.CPU, ("rank",), report=RankReport, reusable=True),
    StageRow(Stage.SELECT, FanOut.PER_TARGET, Pool.CPU, ("select",), reusable=True),
    StageRow(Stage.PLAN, FanOut.SINGLE, Pool.CPU, ("plan",), report=PlanReport, reusable=True),
    StageRow(Stage.CPU, FanOut.PER_PLAN_UNIT, Pool.CPU, ("train", "--stage", Stage.CPU.value)),
    StageRow(Stage.GPU, FanOut.PER_PLAN_UNIT, Pool.GPU, ("train", "--stage", Stage.GPU.value)),
    StageRow(Stage.REPORT, FanOut.SINGLE, Pool.CPU, ("report",), computes=False),
)}
if tuple(STAGES) != STAGE_ORDER:  # a row per stage, in the order they run
    raise AssertionError(f"contract.stages.STAGES lists {tuple(STAGES)}, the stages are {STAGE_ORDER}")


def stages_where(keep: Callable[[StageRow], bool]) -> tuple[Stage, ...]:
    """The stages whose row `keep` accepts, in run order."""
    return tuple(stage for stage, row in STAGES.items() if keep(row))


# The stages cached by input digests (all but the report, which only renders them), and the training ones.
COMPUTE_STAGES: tuple[Stage, ...] = stages_where(lambda r: r.computes)
TRAINING_STAGES: tuple[Stage, ...] = stages_where(lambda r: r.trains)
REUSABLE_STAGES: tuple[Stage, ...] = stages_where(lambda r: r.reusable)
