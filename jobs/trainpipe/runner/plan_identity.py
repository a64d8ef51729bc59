"""Is the plan on the volume the one this call was made for? The run id it records and its digest; called by `train` and `report`.

A training pod carries the run id and plan digest the operator created it for. A plan with another run id
(a newer run wrote into this folder) or another digest (the plan was rewritten) would train models the
run never asked for, so the pod refuses it with a permanent exit code instead.
"""

from __future__ import annotations

from pathlib import Path

from trainpipe.contract.exitcodes import CommandFailure, ExitCode
from trainpipe.contract.plan import TrainingPlan, plan_digest


class StalePlanError(RuntimeError, CommandFailure):
    """The plan on the volume is not the one this call was created for (run id or digest differs)."""

    exit_code = ExitCode.STALE_PLAN


def stale_plan_reason(plan: TrainingPlan, run_id: str | None, expected_digest: str | None) -> str | None:
    """Why the plan is not the expected one, or None when it is (or nothing is expected). Pure."""
    if run_id is not None and plan.metadata.run_id != run_id:
        return f"it was written for run {plan.metadata.run_id!r}, not {run_id!r}"
    if expected_digest is not None:
        actual = plan_digest(plan)
        if actual != expected_digest:
            return f"its digest is {actual}, not {expected_digest}"
    return None


def check_plan(plan: TrainingPlan, path: Path, run_id: str | None, expected_digest: str | None) -> None:
    reason = stale_plan_reason(plan, run_id, expected_digest)
    if reason is not None:
        raise StalePlanError(
            f"{path}: the plan on the volume is not the one this call was made for: {reason}; "
            "rerun `trainpipe plan` for this run (the operator does when a run restarts) and train against the plan it reports"
        )
