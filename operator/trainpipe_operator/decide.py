"""The pure heart of the operator: from a pipeline and what the cluster holds, what to create, delete and report.

`decide(view, observed, config, now)` imports neither kopf nor the Kubernetes client. It is
level-triggered: it recomputes the whole desired state each time, so a missed event or an operator
restart changes nothing. Two rules keep it safe to re-run at any moment:
- Job names are deterministic, so creating what exists is harmless (no duplicate Job can appear);
- a stage recorded as finished in status is never run again, so Jobs deleted after it finished
  (by TTL or by hand) are not re-created.

This module is the table of contents; each policy lives in `policies/`: `run` (which run, retry,
completion and TTL, suspend, preconditions), `gating` (each stage's Jobs from its row in
contract.stages, hand-off to the next), `ownership` (names held by objects the pipeline does not
control), `failures` (failed stages, the deadline, what the kubelet reports), `disruptions` (units the
cluster took away, capped per unit) and `status` (conditions and progress), all over one pass's
scratch space (`passes.Pass`).
"""

from __future__ import annotations

from datetime import datetime

from trainpipe.contract.status import PipelineStatus
from trainpipe_operator.config import OperatorConfig
from trainpipe_operator.observed import Observed, PipelineView
from trainpipe_operator.policies.failures import (
    deadline_passed,
    failed_stage,
    refused,
)
from trainpipe_operator.policies.gating import walk_stages
from trainpipe_operator.policies.ownership import refuse_taken_names
from trainpipe_operator.policies.passes import Decision, Pass
from trainpipe_operator.policies.run import (
    apply_ttl,
    ensure_artifacts_claim,
    ensure_plan_config_map,
    handle_retry,
    precondition_problem,
    run_finished,
    start_or_continue_run,
    suspend_or_resume,
)
from trainpipe_operator.policies.status import finish, invalid_decision
from trainpipe_operator.schedule import CurrentRun, seconds_until


def decide(view: PipelineView, observed: Observed, config: OperatorConfig, now: datetime, current: CurrentRun | None = None) -> Decision:
    """What to do for one pipeline now, for its `current` run (the one observe read; computed from `now`
    when not given). Pure: same inputs, same decision."""
    current = current or view.current_run(now)
    if view.spec is None or current is None:
        return invalid_decision(view, now, f"the spec cannot be used: {view.spec_error}")
    spec = view.spec
    run, slot, schedule = current
    p = Pass(view, spec, observed, config, now, run, status=PipelineStatus(), stages={}, slot=slot)
    start_or_continue_run(p)
    p.record(schedule=schedule)
    if schedule is not None and (wait := seconds_until(schedule.next_run_at, now)) is not None:
        p.requeue.append(max(1.0, wait))
    # Jobs of any other run are left from a superseded or earlier run: their outputs stay on the volume,
    # the Jobs go, so the number of objects per pipeline stays bounded.
    p.delete.extend(j.name for j in observed.jobs if j.run != run and not j.deleting)
    ensure_artifacts_claim(p)
    ensure_plan_config_map(p)
    handle_retry(p)
    if run_finished(p):
        apply_ttl(p)
    elif not precondition_problem(p) and not failed_stage(p):
        suspend_or_resume(p)
        if p.state != "suspended" and not deadline_passed(p):
            walk_stages(p)
            if p.state in ("running", "stuck"):
                refused(p)
    refuse_taken_names(p)  # last: it weighs every name the pass would create
    return finish(p)
