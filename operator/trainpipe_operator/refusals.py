"""What the API server refused to create for a pipeline, and what a user changes to fix it.

A spec the CRD accepts can still make objects Kubernetes refuses: a pod label value with a space
(422 Invalid on the Job), requests above limits, a namespace quota of zero Jobs (403 Forbidden), an
admission policy that denies it. Retrying such a create on every pass fills the operator's log and
never gets the pipeline a status. So a refusal is remembered (by the cache, for the pipeline's
generation and run), the pipeline shows Stalled with the API server's own words and the spec field
behind them, and the create is tried again only after a back-off or at once when the spec changes.

Pods are not created by the operator: when the Job controller cannot create them (a missing
ServiceAccount or PriorityClass, a quota of zero pods, a LimitRange), it says so in FailedCreate
Events on the Job. `create_failure_field` reads the same spec field out of those.

Pure: no I/O, so every mapping here is table-tested.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta

from trainpipe.contract.names import LABEL_FAMILY, LABEL_RUN, LABEL_STAGE, NO_FAMILY
from trainpipe.contract.stages import STAGES

# Back-off between tries of a refused create: the first after this many seconds, doubling up to the cap.
# Something outside the spec may fix it (a quota raised, a PriorityClass created), so it is tried
# again; a spec edit tries at once.
RETRY_FIRST_SECONDS = 30.0
RETRY_MAX_SECONDS = 600.0


def is_refusal(status: int) -> bool:
    """A 4xx that will not change by asking again at once. 409 (it exists) is success for a create; 429 is throttling."""
    return 400 <= status < 500 and status not in (409, 429)


@dataclass(frozen=True)
class Refusal:
    """The last refused create of one pipeline: for which generation and run, of what, and the API server's answer."""

    generation: int
    run: str
    kind: str  # Job | ConfigMap | PersistentVolumeClaim
    name: str
    stage: str | None
    family: str | None
    status: int  # 422, 403, ...
    reason: str  # the Status object's reason: Invalid, Forbidden, ...
    message: str
    fields: tuple[str, ...]  # the object's fields the API server named (a 422's causes)
    dry_run: bool
    at: datetime
    attempts: int = 1  # refusals in a row for this generation and run

    @property
    def retry_at(self) -> datetime:
        return self.at + timedelta(seconds=retry_delay(self.attempts))

    def applies(self, generation: int, run: str | None) -> bool:
        """Whether it still holds: a new generation (the spec edited) or another run clears it."""
        return self.generation == generation and self.run == run


def retry_delay(attempts: int) -> float:
    return min(RETRY_MAX_SECONDS, RETRY_FIRST_SECONDS * 2 ** max(0, attempts - 1))


def refusal_of(manifest: dict[str, object], status: int, reason: str, message: str, fields: tuple[str, ...], *,
               generation: int, dry_run: bool, at: datetime, before: Refusal | None) -> Refusal:
    """The refusal of creating `manifest`; `before` (the pipeline's previous refusal) counts the tries in a row."""
    meta = manifest.get("metadata") or {}
    assert isinstance(meta, dict)
    labels = meta.get("labels") or {}
    assert isinstance(labels, dict)
    run = str(labels.get(LABEL_RUN, ""))
    family = labels.get(LABEL_FAMILY)
    attempts = before.attempts + 1 if before is not None and before.applies(generation, run) else 1
    return Refusal(generation=generation, run=run, kind=str(manifest.get("kind", "")), name=str(meta.get("name", "")),
                   stage=labels.get(LABEL_STAGE), family=None if family in (None, NO_FAMILY) else str(family), status=status,
                   reason=reason, message=message, fields=fields, dry_run=dry_run, at=at, attempts=attempts)


# A Job's field (as the API server names it) → the spec field that set it. `{s}` is the stage, `{f}` the family.
# First match wins: longer prefixes first.
_JOB_FIELDS: tuple[tuple[str, str], ...] = (
    ("spec.template.metadata.labels", "stages.{s}.podMetadata.labels"),
    ("spec.template.metadata.annotations", "stages.{s}.podMetadata.annotations"),
    ("spec.template.labels", "stages.{s}.podMetadata.labels"),  # how a Job's validation names them
    ("spec.template.annotations", "stages.{s}.podMetadata.annotations"),
    ("spec.template.spec.containers[0].resources", "{resources}"),
    ("spec.template.spec.containers[0].image", "images.{pool}"),
    ("spec.template.spec.containers[0].imagePullPolicy", "images.pullPolicy"),
    ("spec.template.spec.nodeSelector", "stages.{s}.nodeSelector"),
    ("spec.template.spec.tolerations", "stages.{s}.tolerations"),
    ("spec.template.spec.affinity", "stages.{s}.affinity"),
    ("spec.template.spec.serviceAccountName", "serviceAccountName"),
    ("spec.template.spec.priorityClassName", "priorityClassName"),
    ("spec.template.spec.volumes", "{volumes}"),
    ("spec.activeDeadlineSeconds", "stages.{s}.activeDeadlineSeconds"),
    ("spec.backoffLimitPerIndex", "stages.{s}.backoffLimitPerIndex"),
    ("spec.backoffLimit", "stages.{s}.backoffLimit"),
    ("spec.parallelism", "stages.{s}.parallelism"),
    ("metadata.labels", "queueName"),  # the only label of a Job's own that comes from the spec
)


def spec_field(job_field: str, stage: str | None, family: str | None, per_family: bool = False) -> str | None:
    """The spec field behind the Job field `job_field` the API server refused (None when no spec field sets it).

    `per_family`: the family has its own resources (stages.<s>.families.<f>), which replace the stage's."""
    if stage is None or stage not in STAGES:
        return None
    for prefix, field in _JOB_FIELDS:
        if job_field == prefix or job_field.startswith((prefix + ".", prefix + "[")):
            resources = f"stages.{stage}.families.{family}" if per_family and family else f"stages.{stage}.resources"
            return field.format(s=stage, f=family, pool=STAGES[stage].pool.value, resources=resources,
                                volumes=f"stages.{stage}.scratchSizeLimit, data.volume or artifacts")
    return None


def fields_of(refusal: Refusal, per_family: bool = False) -> tuple[str, ...]:
    """The spec fields a refusal names, in the order the API server gave them, without repeats."""
    found = (spec_field(f, refusal.stage, refusal.family, per_family) for f in refusal.fields or _fields_in(refusal.message))
    return tuple(dict.fromkeys(f for f in found if f))


# "Job.batch "x" is invalid: spec.template.metadata.labels: Invalid value: ..." names its fields in the message too.
_FIELD_IN_MESSAGE = re.compile(r"(?:^|[:,\[]\s*)((?:metadata|spec)\.[A-Za-z0-9_.\[\]]+):")


def _fields_in(message: str) -> tuple[str, ...]:
    return tuple(m.group(1) for m in _FIELD_IN_MESSAGE.finditer(message))


def describe(refusal: Refusal, per_family: bool = False) -> str:
    """What a user reads in status: which object, the API server's answer, the spec field, and what happens next."""
    where = ", ".join(p for p in (f"stage {refusal.stage}" if refusal.stage else "", f"family {refusal.family}" if refusal.family else "") if p)
    what = f"{refusal.kind} {refusal.name}" + (f" ({where})" if where else "")
    how = "refused (dry run) " if refusal.dry_run else "refused "
    fields = fields_of(refusal, per_family)
    fix = f"fix spec.{' / spec.'.join(fields)}" if fields else _fix_without_field(refusal)
    return (f"the API server {how}{what}: {refusal.status} {refusal.reason}: {refusal.message}; {fix}. "
            f"Nothing of the stage was created; it is tried again at once when the spec changes, else in {retry_delay(refusal.attempts):.0f}s")


def _fix_without_field(refusal: Refusal) -> str:
    text = refusal.message.lower()
    if refusal.status == 409:
        return "delete or rename that object: a pipeline never adopts one another controller owns"
    if "exceeded quota" in text:
        return "a ResourceQuota of the namespace allows no more of these: raise it or free some"
    if refusal.status == 403:
        return "the operator may not create it (RBAC) or an admission policy forbids it: see the message"
    return "fix the spec or the policy the message names"


# How the Job controller's FailedCreate message says the API server refused the pod (admission, validation,
# a quota), as opposed to a transport error or a busy API server: those it retries, and they pass by
# themselves (an API server restart leaves a few), so they never stall a pipeline.
_POD_REFUSED = (" is forbidden", " is invalid", "exceeded quota")


def pod_create_refused(message: str) -> bool:
    """Whether a FailedCreate message is a refusal that will not pass by itself."""
    text = message.lower()
    return any(words in text for words in _POD_REFUSED)


# The Job controller's FailedCreate messages, by what in them names the cause → the spec field (or
# the namespace object) to change. `{s}` is the stage.
_CREATE_FAILURES: tuple[tuple[str, str], ...] = (
    ("serviceaccount", "spec.serviceAccountName (the ServiceAccount does not exist in the namespace: create it or fix the name)"),
    ("priorityclass", "spec.priorityClassName (no PriorityClass of that name: create it or fix the name)"),
    ("exceeded quota", "the namespace's ResourceQuota (raise it, or lower spec.stages.{s}.resources / parallelism)"),
    ("limitrange", "spec.stages.{s}.resources (outside the namespace's LimitRange)"),
    ("usage per container", "spec.stages.{s}.resources (outside the namespace's LimitRange)"),
    ("usage per pod", "spec.stages.{s}.resources (outside the namespace's LimitRange)"),
    ("securitycontext", "the namespace's Pod Security level (the stage pods need the restricted profile or looser)"),
    ("violates podsecurity", "the namespace's Pod Security level (the stage pods need the restricted profile or looser)"),
)


def create_failure_field(message: str, stage: str) -> str:
    """What to change for a FailedCreate message (the Job controller could not create the unit's pod)."""
    text = message.lower()
    return next((fix.format(s=stage) for needle, fix in _CREATE_FAILURES if needle in text),
                "the cause the message names (an admission policy, a quota or a missing object)")
