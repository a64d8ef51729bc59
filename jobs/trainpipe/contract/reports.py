"""What each `trainpipe` command reports at exit (its pod's termination message), typed for both sides.

The command writes one of these as a compact JSON line (`--termination-log`). The operator reads the rank
and plan reports back from the pod's status to size the next stage's Indexed Jobs (`StageReport`); the
others are for whoever reads the pod. Unknown keys are ignored on read, so a newer jobs image may add
fields without breaking an older operator.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field

from trainpipe.contract.base import Contract
from trainpipe.contract.names import Stability
from trainpipe.contract.outcomes import Outcome
from trainpipe.contract.tracking import TrackingSummary

_LENIENT = Contract.model_config | {"extra": "ignore"}


def _unset(value: Any) -> bool:
    return value is None


def _when_set() -> Any:
    """A key that appears in the line only when it has a value (the others are written even when null)."""
    return Field(None, exclude_if=_unset)


class RankReport(Contract):
    model_config = _LENIENT
    status_field: ClassVar[str] = "selected_targets"  # where the operator keeps what it read (PipelineStatus)
    expects: ClassVar[str] = 'expected {"selected": N}'  # in the message when the pod left none readable
    stage: Literal["rank"] = "rank"
    selected: int = Field(ge=0, description="Targets kept: the select Job's completions (index i = ranking's selected[i])")
    ranked: int | None = Field(None, ge=0, exclude_if=_unset)
    targets: list[str] | None = Field(None, exclude_if=_unset, description="The kept targets in index order; dropped when the line would not fit")
    status: Outcome | None = Field(None, exclude_if=_unset, description="ran | cached | reused")
    no_evidence: str | None = Field(None, exclude_if=_unset, description="Set when no target carries evidence of skill: the run ends here, "
                                    "training nothing (its report is already written)")


class PlanReport(Contract):
    model_config = _LENIENT
    status_field: ClassVar[str] = "plan"
    expects: ClassVar[str] = "planDigest, path, units"
    stage: Literal["plan"] = "plan"
    plan_digest: str = Field(pattern=r"^[0-9a-f]{64}$", description="trainpipe.contract.plan.plan_digest of the plan written")
    run_id: str | None = Field(None, exclude_if=_unset, description="The run the plan was made for (the --run-id given)")
    units: dict[str, int] = Field(description="Units per family: the completions of each training Job")
    jobs: int | None = Field(None, ge=0, exclude_if=_unset)
    path: str = Field(description="The plan file, relative to the run's output folder")
    status: Outcome | None = _when_set()



class StageCountsReport(Contract):
    """A whole select or training stage, or one family of a training stage (`train --family F`): its units counted."""

    model_config = _LENIENT
    stage: str
    status: Outcome
    targets: int | None = _when_set()  # select: the targets selected
    units: int | None = _when_set()  # training: the units of the stage, then by outcome in the training words
    trained: int | None = _when_set()
    skipped: int | None = _when_set()
    reused: int | None = _when_set()
    failed: int | None = _when_set()
    family: str | None = _when_set()


class SelectUnitReport(Contract):
    """One select unit (one target, one pod of the select Job); no features nor stability when nothing recorded them."""

    model_config = _LENIENT
    stage: Literal["select"] = "select"
    unit_index: int = Field(ge=0)
    target: str
    status: Outcome
    features: int | None = Field(ge=0)
    stability: Stability | None


class RankUnitReport(Contract):
    """One rank unit (one target group of stages.rank.targetGroups): the targets it scored into its part; the aggregate step writes the ranking."""

    model_config = _LENIENT
    stage: Literal["rank"] = "rank"
    unit_index: int = Field(ge=0)
    units: int = Field(ge=1)
    targets: list[str] = Field(description="The group this unit scored, in ranking order")
    status: Outcome


class TrainUnitReport(Contract):
    """One training unit (one pod of a family's Indexed Job); `device` is None when its metrics do not say."""

    model_config = _LENIENT
    stage: str
    family: str
    unit_index: int = Field(ge=0)
    unit: str = Field(description="The unit id (contract.units.unit_id)")
    job_id: str
    target: str
    status: Outcome
    device: str | None


class RunReport(Contract):
    """`trainpipe run`: each stage's outcome, and the report it wrote (relative to the output folder)."""

    model_config = _LENIENT
    stage: Literal["run"] = "run"
    stages: dict[str, Outcome]
    report: str | None
    no_evidence: str | None = _when_set()
    tracking: TrackingSummary | None = _when_set()


class HtmlReport(Contract):
    """`trainpipe report`: the page written, the models it shows, and the run folders `--keep-runs` removed."""

    model_config = _LENIENT
    status_field: ClassVar[str] = "report"
    expects: ClassVar[str] = "path, models"
    stage: Literal["report"] = "report"
    path: str
    models: int = Field(ge=0)
    removed_runs: list[str] | None = _when_set()
    tracking: TrackingSummary | None = Field(None, exclude_if=_unset, description="spec.tracking set: whether the run was tracked in MLflow "
                                             "(and why not), its MLflow run and the models registered")


class DataReport(Contract):
    """`trainpipe data example`: the symbols written."""

    model_config = _LENIENT
    stage: Literal["data"] = "data"
    symbols: int = Field(ge=0)


# The reports the operator keeps in the status (a row's `report` in contract.stages).
StageReport = RankReport | PlanReport | HtmlReport
CommandReport = StageReport | StageCountsReport | SelectUnitReport | RankUnitReport | TrainUnitReport | RunReport | HtmlReport | DataReport
