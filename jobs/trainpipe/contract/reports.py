"""What the rank and plan commands report at exit (their pod's termination message), typed for both sides.

The stage command writes one of these as a compact JSON line (`--termination-log`); the operator reads
it back from the pod's status to size the next stage's Indexed Jobs. Unknown keys are ignored on
read, so a newer jobs image may add fields without breaking an older operator.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from trainpipe.contract.base import Contract

_LENIENT = Contract.model_config | {"extra": "ignore"}


class RankReport(Contract):
    model_config = _LENIENT
    status_field: ClassVar[str] = "selected_targets"  # where the operator keeps what it read (PipelineStatus)
    expects: ClassVar[str] = 'expected {"selected": N}'  # in the message when the pod left none readable
    stage: Literal["rank"] = "rank"
    selected: int = Field(ge=0, description="Targets kept: the select Job's completions (index i = ranking's selected[i])")
    ranked: int | None = Field(None, ge=0)
    targets: list[str] | None = Field(None, description="The kept targets in index order; dropped when the line would not fit")
    status: str | None = Field(None, description="ran | cached | reused")


class PlanReport(Contract):
    model_config = _LENIENT
    status_field: ClassVar[str] = "plan"
    expects: ClassVar[str] = "planDigest, path, units"
    stage: Literal["plan"] = "plan"
    plan_digest: str = Field(pattern=r"^[0-9a-f]{64}$", description="trainpipe.contract.plan.plan_digest of the plan written")
    run_id: str | None = Field(None, description="The run the plan was made for (the --run-id given)")
    units: dict[str, int] = Field(description="Units per family: the completions of each training Job")
    jobs: int | None = Field(None, ge=0)
    path: str = Field(description="The plan file, relative to the run's output folder")
    status: str | None = None


StageReport = RankReport | PlanReport
