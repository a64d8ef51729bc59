"""The status a pass writes: kstatus conditions from the run's state, the display stage, progress by each stage's fan-out."""

from __future__ import annotations

from datetime import datetime

from trainpipe.contract.families import FAMILY_STAGE
from trainpipe.contract.stages import STAGES, FanOut
from trainpipe.contract.status import ConditionType, PipelineStatus, Reason, StageStatus
from trainpipe.contract.timestamps import parse_stamp
from trainpipe_operator import manifests
from trainpipe_operator.conditions import set_condition
from trainpipe_operator.observed import PipelineView
from trainpipe_operator.policies.passes import MAX_MESSAGE, SUCCEEDED, Decision, EventIntent, Pass, iso


def seconds_between(start: str | None, end: str) -> float:
    a, b = parse_stamp(start), parse_stamp(end)
    return (b - a).total_seconds() if a and b else 0.0


def success_message(p: Pass) -> str:
    tracking = p.status.report.tracking if p.status.report is not None else None
    tracked = "" if tracking is None else ("; tracked in MLflow" if tracking.state == "tracked" else f"; not tracked in MLflow: {tracking.reason or 'no reason given'}")
    return f"run {p.run} succeeded; models in {manifests.run_dir(p.spec, p.owner, p.run)}/models{tracked}"


def no_evidence_message(p: Pass) -> str:
    return (f"run {p.run} trained nothing: {(p.status.no_evidence or '').rstrip('.')}; "
            f"report at {manifests.run_dir(p.spec, p.owner, p.run)}/report.html")


def final_words(p: Pass) -> tuple[Reason, str]:
    """The reason and message of a finished run: it succeeded, or it ended without evidence of skill."""
    if p.status.no_evidence is not None:
        return Reason.NO_EVIDENCE, no_evidence_message(p)
    return Reason.SUCCEEDED, success_message(p)


DISPLAY = {"done": "Done", "failed": "Failed", "invalid": "Failed", "suspended": "Suspended"}


def finish(p: Pass) -> Decision:
    gen = p.view.generation
    prev = p.view.status.conditions
    stamp = p.stamp
    state, reason, message = p.state, p.reason, p.message
    ready = set_condition(prev, ConditionType.READY, "True" if state == "done" else "False", reason, message, gen, stamp)
    reconciling = set_condition(prev, ConditionType.RECONCILING, "True" if state == "running" else "False",
                                reason if state == "running" else state.capitalize(), message if state == "running" else "", gen, stamp)
    # "stuck": the run goes on (its Jobs stay) but cannot progress without a change (a unit's pods are refused at creation).
    stalls = state in ("failed", "invalid", "stuck")
    stalled = set_condition(prev, ConditionType.STALLED, "True" if stalls else "False",
                            reason if stalls else "NotStalled", message if stalls else "", gen, stamp)
    suspended = set_condition(prev, ConditionType.SUSPENDED, "True" if state == "suspended" else "False",
                              Reason.SUSPENDED.value if state == "suspended" else Reason.NOT_SUSPENDED.value, "", gen, stamp)
    current = next((s for s in STAGES.order if (p.stages.get(s) or StageStatus()).outcome != SUCCEEDED), None)
    totals = progress_of(p)
    status = PipelineStatus.model_validate({
        **dict(p.status),
        "observed_generation": gen,
        "conditions": [ready, reconciling, stalled, suspended],
        "stage": DISPLAY.get(state, current),
        "progress": totals,
        "stages": {k: v for k, v in sorted(p.stages.items(), key=lambda kv: STAGES.order.index(kv[0]))},
        "message": message or None,
    })
    return Decision(
        status=status, create=tuple(p.create), upsert=tuple(p.upsert), delete_jobs=tuple(dict.fromkeys(p.delete)),
        suspend_jobs=tuple(p.suspend), resume_jobs=tuple(p.resume), events=tuple(p.events), finished_stages=tuple(p.finished),
        requeue_after=min(p.requeue) if p.requeue else None,
    )


def progress_of(p: Pass) -> str:
    """`succeeded/known` units of the run, by each stage's fan-out: 1, a unit per kept target, a unit per
    planned model; a stage whose size is not known yet counts none."""
    known: dict[str, int] = {}
    ref, selected = p.status.plan, p.status.selected_targets
    for stage, row in STAGES.items():
        if row.fan_out is FanOut.SINGLE:
            known[stage] = 1
        elif row.fan_out is FanOut.PER_TARGET and selected is not None:
            known[stage] = selected
        elif row.fan_out is FanOut.PER_PLAN_UNIT and ref is not None:
            known[stage] = sum(n for fam, n in ref.units.items() if FAMILY_STAGE.get(fam) == stage)
    done = 0
    for stage in STAGES.order:
        s = p.stages.get(stage)
        if s is not None:
            done += known.get(stage, s.total) if s.outcome == SUCCEEDED else s.succeeded
    return f"{done}/{sum(known.values())}"


def invalid_decision(view: PipelineView, now: datetime, message: str) -> Decision:
    stamp = iso(now)
    prev = view.status.conditions
    gen = view.generation
    reason = Reason.INVALID_SPEC.value
    status = view.status.model_copy(update={
        "observed_generation": gen, "stage": "Failed", "message": message[:MAX_MESSAGE],
        "conditions": [
            set_condition(prev, ConditionType.READY, "False", reason, message, gen, stamp),
            set_condition(prev, ConditionType.RECONCILING, "False", "Invalid", "", gen, stamp),
            set_condition(prev, ConditionType.STALLED, "True", reason, message, gen, stamp),
            set_condition(prev, ConditionType.SUSPENDED, "False", Reason.NOT_SUSPENDED.value, "", gen, stamp),
        ],
    })
    already = view.status.condition(ConditionType.STALLED)
    news = already is None or already.status != "True" or already.message != message
    return Decision(status=status, events=(EventIntent("Warning", reason, message[:MAX_MESSAGE]),) if news else ())
