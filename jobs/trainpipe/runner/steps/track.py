"""The tracking step: a finished run folder logged to MLflow (`spec.tracking`), its outcome kept in `.trainpipe/tracking.json`.

Not a stage of `contract.stages` (it computes nothing and is never cached): `trainpipe run` calls it after
the report, and on a cluster the report Job, the run's last, calls it with the settings the operator passes.
"""

from __future__ import annotations

from trainpipe.contract.tracking import TrackingOutcome, TrackingSpec
from trainpipe.io import atomic
from trainpipe.io.layout import Layout
from trainpipe.runner.digests import code_version
from trainpipe.tracking.choices import RunIdentity


def run_identity(layout: Layout, pipeline: str, namespace: str | None, run_id: str | None) -> RunIdentity:
    """The run as tracking names it: the given run id (the operator's), else the plan's (a local run's digest of its inputs)."""
    from trainpipe.contract.plan import plan_digest
    from trainpipe.io.plan_files import PlanFileError, read_training_plan

    try:
        plan = read_training_plan(layout.master_training_plan)
    except (PlanFileError, FileNotFoundError):
        plan = None
    chosen = run_id or (plan.metadata.run_id if plan is not None else None) or "unplanned"
    return RunIdentity(pipeline=pipeline, namespace=namespace, run_id=chosen, plan_digest=plan_digest(plan) if plan is not None else None,
                       code_version=code_version())


def track_step(layout: Layout, tracking: TrackingSpec, identity: RunIdentity, succeeded: bool) -> TrackingOutcome:
    """Track the run (never raises for the server's sake: a failure is the outcome "not tracked") and record the outcome."""
    from trainpipe.tracking.mlflow_log import track_run

    outcome = track_run(layout, tracking, identity, succeeded)
    atomic.write_json(layout.tracking_record, outcome.to_wire())
    return outcome
