"""Every refusal is a status: a create the API server refuses, and pods the Job controller cannot create.

A spec the CRD accepts can still make a Job Kubernetes refuses (a label value with a space, requests
above limits, a quota of zero Jobs). The operator must show that as Stalled with the API server's own
words and the spec field to fix, create nothing more of the stage, and try again only after a back-off
or at once when the spec changes — not retry it on every pass forever.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from operator_builders import UID, observed_job, pipeline_view, succeeded_stages
from trainpipe.contract.pipeline import PipelineSpec
from trainpipe.contract.runs import run_id
from trainpipe.contract.status import ConditionType, PipelineStatus, Reason, StageStatus
from trainpipe.kube.client import ApiError
from trainpipe_operator.act import CreateRefused, act
from trainpipe_operator.cache import ChildCache
from trainpipe_operator.config import OperatorConfig
from trainpipe_operator.decide import decide
from trainpipe_operator.metrics import Metrics
from trainpipe_operator.observed import CreateFailure, Observed, parse_create_failures, podless
from trainpipe_operator.refusals import Refusal, create_failure_field, describe, refusal_of, retry_delay, spec_field

NOW = datetime(2026, 12, 1, 12, 0, 0, tzinfo=UTC)
CONFIG = OperatorConfig(cpu_image="jobs-cpu:1", gpu_image="jobs-gpu:1")
SPEC = PipelineSpec.model_validate({"data": {"dir": "example", "volume": {"claimName": "bars"}},
                                    "training": {"families": ["lightgbm", "xgboost"]},
                                    "stages": {"cpu": {"families": {"xgboost": {"requests": {"cpu": "2"}, "limits": {"cpu": "1"}}}}}})
RUN = run_id(SPEC)
INVALID_LABEL = ('Job.batch "demo-rank" is invalid: spec.template.metadata.labels: Invalid value: "a b": a valid label must be an empty '
                 "string or consist of alphanumeric characters")


@pytest.mark.parametrize(("job_field", "stage", "family", "per_family", "expected"), [
    ("spec.template.metadata.labels", "rank", None, False, "stages.rank.podMetadata.labels"),
    ("spec.template.metadata.annotations", "select", None, False, "stages.select.podMetadata.annotations"),
    ("spec.template.labels", "rank", None, False, "stages.rank.podMetadata.labels"),
    ("spec.template.spec.containers[0].resources.requests", "rank", None, False, "stages.rank.resources"),
    ("spec.template.spec.containers[0].resources.requests", "cpu", "xgboost", True, "stages.cpu.families.xgboost"),
    ("spec.template.spec.containers[0].resources.requests", "cpu", "lightgbm", False, "stages.cpu.resources"),
    ("spec.template.spec.containers[0].image", "gpu", "mlp", False, "images.gpu"),
    ("spec.template.spec.containers[0].image", "plan", None, False, "images.cpu"),
    ("spec.template.spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms", "rank", None, False,
     "stages.rank.affinity"),
    ("spec.template.spec.tolerations[0].value", "report", None, False, "stages.report.tolerations"),
    ("spec.template.spec.nodeSelector", "cpu", "lightgbm", False, "stages.cpu.nodeSelector"),
    ("spec.template.spec.serviceAccountName", "rank", None, False, "serviceAccountName"),
    ("spec.template.spec.priorityClassName", "rank", None, False, "priorityClassName"),
    ("metadata.labels", "rank", None, False, "queueName"),
    ("spec.template.spec.containers[0].securityContext", "rank", None, False, None),  # the operator's own: no spec field
    ("spec.template.metadata.labels", None, None, False, None),  # not a stage's object
])
def test_each_refused_job_field_names_the_spec_field_that_set_it(job_field: str, stage: str | None, family: str | None,
                                                                  per_family: bool, expected: str | None) -> None:
    assert spec_field(job_field, stage, family, per_family) == expected


@pytest.mark.parametrize(("message", "fix"), [
    ('Error creating: pods "demo-rank-" is forbidden: error looking up service account ns/robot: serviceaccount "robot" not found',
     "spec.serviceAccountName"),
    ('Error creating: pods "demo-rank-" is forbidden: no PriorityClass with name urgent was found', "spec.priorityClassName"),
    ('Error creating: pods "demo-cpu-0-" is forbidden: exceeded quota: none, requested: pods=1, used: pods=0, limited: pods=0',
     "ResourceQuota"),
    ('Error creating: pods "demo-rank-" is forbidden: maximum cpu usage per Container is 100m, but limit is 1', "spec.stages.rank.resources"),
    ("Error creating: something else entirely", "the cause the message names"),
])
def test_a_pod_the_job_controller_cannot_create_names_what_to_change(message: str, fix: str) -> None:
    assert fix in create_failure_field(message, "rank")


def job_manifest(stage: str = "rank", family: str = "none", name: str = "demo-rank") -> dict[str, Any]:
    labels = {"trainpipe.io/run": RUN, "trainpipe.io/stage": stage, "trainpipe.io/family": family}
    return {"kind": "Job", "metadata": {"name": name, "namespace": "ns", "labels": labels}}


def refusal(at: datetime = NOW, attempts_before: int = 0, generation: int = 1, **manifest: str) -> Refusal:
    before = None
    for _ in range(attempts_before):
        before = refusal_of(job_manifest(**manifest), 422, "Invalid", INVALID_LABEL, ("spec.template.metadata.labels",),
                            generation=generation, dry_run=False, at=at, before=before)
    return refusal_of(job_manifest(**manifest), 422, "Invalid", INVALID_LABEL, ("spec.template.metadata.labels",),
                      generation=generation, dry_run=False, at=at, before=before)


def test_refusals_in_a_row_back_off_to_a_cap_and_a_new_generation_starts_over() -> None:
    assert [retry_delay(n) for n in (1, 2, 3, 5, 10)] == [30, 60, 120, 480, 600]
    third = refusal(attempts_before=2)
    assert third.attempts == 3 and third.retry_at == NOW + timedelta(seconds=120)
    assert refusal_of(job_manifest(), 422, "Invalid", "", (), generation=2, dry_run=False, at=NOW, before=third).attempts == 1
    assert third.applies(1, RUN) and not third.applies(2, RUN) and not third.applies(1, "r-other")


def condition(status: PipelineStatus, ctype: str) -> tuple[str, str, str]:
    c = status.condition(ConditionType(ctype))
    assert c is not None
    return c.status, c.reason, c.message


def test_a_refused_job_stalls_the_pipeline_with_the_api_servers_words_and_creates_nothing_until_the_back_off_ends() -> None:
    view = pipeline_view(SPEC)
    first = decide(view, Observed(), CONFIG, NOW)
    assert any(m["kind"] == "Job" for m in first.create), "the rank Job is created on the first pass"
    refused = refusal()
    d = decide(view, Observed(refusal=refused), CONFIG, NOW + timedelta(seconds=1))
    status, reason, message = condition(d.status, "Stalled")
    assert (status, reason) == ("True", Reason.CREATE_REFUSED.value)
    assert "422 Invalid" in message and "a valid label must be" in message and "spec.stages.rank.podMetadata.labels" in message
    assert condition(d.status, "Ready")[0] == "False" and condition(d.status, "Reconciling")[0] == "False"
    assert d.create == () and d.upsert == (), "nothing is created while the refusal holds"
    assert d.requeue_after == pytest.approx(29.0), "it looks again when the back-off ends"
    assert [e.reason for e in d.events if e.type == "Warning"] == [Reason.CREATE_REFUSED.value]
    assert Reason.JOBS_CREATED.value not in {e.reason for e in d.events}, "no Event says Jobs were created"
    # The back-off over: the same decision creates again, and still shows the refusal until it goes through.
    again = decide(view, Observed(refusal=refused), CONFIG, NOW + timedelta(seconds=31))
    assert any(m["kind"] == "Job" for m in again.create)
    assert condition(again.status, "Stalled")[:2] == ("True", Reason.CREATE_REFUSED.value)
    # Its status written, the next pass posts no second Event for the same refusal.
    quiet = decide(pipeline_view(SPEC, d.status), Observed(refusal=refused), CONFIG, NOW + timedelta(seconds=5))
    assert not [e for e in quiet.events if e.reason == Reason.CREATE_REFUSED.value]


def test_a_refused_training_job_leaves_the_finished_stages_as_they_were_and_names_the_familys_own_field() -> None:
    status = PipelineStatus(run_id=RUN, started_at="2026-12-01T11:00:00Z", stages=succeeded_stages("rank", "select", "plan"),
                            selected_targets=1, plan={"digest": "d" * 64, "path": "/p", "units": {"lightgbm": 2, "xgboost": 2}})
    refused = refusal_of(job_manifest("cpu", "xgboost", "demo-cpu-xgboost"), 422, "Invalid",
                         'Job.batch "demo-cpu-xgboost" is invalid: spec.template.spec.containers[0].resources.requests: Invalid value: "2": '
                         "must be less than or equal to cpu limit of 1", ("spec.template.spec.containers[0].resources.requests",),
                         generation=1, dry_run=True, at=NOW, before=None)
    d = decide(pipeline_view(SPEC, status), Observed(refusal=refused), CONFIG, NOW)
    assert d.create == ()
    assert {s: v.outcome for s, v in d.status.stages.items()} == {"rank": "Succeeded", "select": "Succeeded", "plan": "Succeeded", "cpu": None}
    cpu = d.status.stages["cpu"]
    assert cpu.reason == Reason.CREATE_REFUSED.value and "spec.stages.cpu.families.xgboost" in (cpu.message or "")
    assert "refused (dry run) Job demo-cpu-xgboost (stage cpu, family xgboost)" in (cpu.message or "")
    assert d.status.stage == "Failed" and d.status.message == cpu.message


def test_a_start_timeout_never_replaces_a_refusal() -> None:
    long_ago = (NOW - timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M:%SZ")
    status = PipelineStatus(run_id=RUN, started_at=long_ago, stages={"rank": StageStatus(pending=1, started_at=long_ago)})
    d = decide(pipeline_view(SPEC, status), Observed(refusal=refusal(at=NOW - timedelta(seconds=5))), CONFIG, NOW)
    assert condition(d.status, "Stalled")[1] == Reason.CREATE_REFUSED.value
    assert d.status.stages["rank"].outcome is None, "the stage is not failed: fixing the spec lets the same run go on"


class RefusingKube:
    """Creates succeed except the Job named `refuse` (422), really or as a dry run; every call recorded."""

    def __init__(self, refuse: str, on_dry_run: bool = True) -> None:
        self.refuse, self.on_dry_run = refuse, on_dry_run
        self.calls: list[tuple[str, str]] = []

    def create(self, collection: str, body: dict[str, Any], *, dry_run: bool = False) -> dict[str, Any]:
        name = body["metadata"].get("name") or body["metadata"]["generateName"]
        self.calls.append(("dry-run" if dry_run else "create", name))
        if name == self.refuse and (self.on_dry_run or not dry_run):
            raise ApiError("POST", collection, 422, {"reason": "Invalid", "message": f'Job.batch "{name}" is invalid: spec.x: Invalid value',
                                                      "details": {"causes": [{"field": "spec.template.spec.containers[0].resources.requests"}]}})
        return body

    def replace(self, resource_path: str, body: dict[str, Any]) -> dict[str, Any]:
        self.calls.append(("replace", resource_path))
        return body

    def merge_patch(self, resource_path: str, body: dict[str, Any]) -> dict[str, Any]:
        return body

    def delete(self, resource_path: str, propagation: str = "Background") -> dict[str, Any]:
        return {}


def training_decision() -> tuple[Any, Any]:
    status = PipelineStatus(run_id=RUN, started_at="2026-12-01T11:00:00Z", stages=succeeded_stages("rank", "select", "plan"),
                            selected_targets=1, plan={"digest": "d" * 64, "path": "/p", "units": {"lightgbm": 2, "xgboost": 2}})
    view = pipeline_view(SPEC, status)
    d = decide(view, Observed(spec_map_exists=True), CONFIG, NOW)
    return view, d


def test_a_stage_of_several_jobs_is_dry_run_whole_first_so_one_invalid_job_creates_none_of_them() -> None:
    view, d = training_decision()
    names = [m["metadata"]["name"] for m in d.create if m["kind"] == "Job"]
    assert len(names) == 2
    kube = RefusingKube(refuse=names[1])
    with pytest.raises(CreateRefused) as refused:
        act(kube, {"status": {}}, view, d, Metrics(), ChildCache())  # type: ignore[arg-type]
    assert refused.value.dry_run and refused.value.error.fields == ("spec.template.spec.containers[0].resources.requests",)
    assert ("create", names[0]) not in kube.calls, "no Job of the stage was created"
    assert not [c for c in kube.calls if c[0] == "replace"], "no status was written from before the refusal"
    # Both valid: each is dry-run, then created.
    ok = RefusingKube(refuse="nothing")
    act(ok, {"status": {}}, view, d, Metrics(), ChildCache())  # type: ignore[arg-type]
    job_calls = [c for c in ok.calls if c[1] in names]
    assert job_calls == [("dry-run", names[0]), ("dry-run", names[1]), ("create", names[0]), ("create", names[1])]


def test_a_single_job_is_not_dry_run_its_create_is_refused_and_a_later_success_clears_the_refusal() -> None:
    view = pipeline_view(SPEC)
    d = decide(view, Observed(), CONFIG, NOW)
    [rank] = [m["metadata"]["name"] for m in d.create if m["kind"] == "Job"]
    kube, cache = RefusingKube(refuse=rank), ChildCache()
    with pytest.raises(CreateRefused):
        act(kube, {"status": {}}, view, d, Metrics(), cache)  # type: ignore[arg-type]
    assert not [c for c in kube.calls if c[0] == "dry-run"]
    cache.refused(("ns", "demo"), refusal(name=rank))
    act(RefusingKube(refuse="nothing"), {"status": {}}, view, d, Metrics(), cache)  # type: ignore[arg-type]
    assert cache.refusal(("ns", "demo")) is None


OWNED = [{"apiVersion": "trainpipe.io/v1alpha1", "kind": "TrainingPipeline", "name": "demo", "uid": UID, "controller": True}]
FORBIDDEN = 'Error creating: pods "{job}-0-" is forbidden: error looking up service account ns/robot: serviceaccount "robot" not found'


def test_a_job_whose_pods_cannot_be_created_stalls_with_the_unit_and_the_field_named_and_keeps_its_job() -> None:
    started = (NOW - timedelta(seconds=20)).strftime("%Y-%m-%dT%H:%M:%SZ")
    status = PipelineStatus(run_id=RUN, started_at=started, stages={**succeeded_stages("rank"), "select": StageStatus(pending=1, started_at=started)},
                            selected_targets=1)
    select = observed_job("select", run=RUN, completions=1)
    assert podless(select, RUN)
    failure = CreateFailure(job=select.name, message=FORBIDDEN.format(job=select.name), count=4)
    d = decide(pipeline_view(SPEC, status), Observed(jobs=(select,), create_failures=(failure,), spec_map_exists=True), CONFIG, NOW)
    stalled = condition(d.status, "Stalled")
    assert stalled[:2] == ("True", Reason.FAILED_CREATE.value)
    assert "unit 0 of stage select cannot be created" in stalled[2] and "4 tries" in stalled[2] and "spec.serviceAccountName" in stalled[2]
    assert d.status.stage == "select", "the run is not failed: its Job stays and goes on once the cause is fixed"
    assert d.delete_jobs == () and d.status.stages["select"].outcome is None
    # The cause fixed: its pod runs, and the stall is gone.
    running = observed_job("select", run=RUN, completions=1, active=1, ready=1)
    later = decide(pipeline_view(SPEC, d.status), Observed(jobs=(running,), create_failures=(failure,), spec_map_exists=True), CONFIG, NOW)
    assert condition(later.status, "Stalled")[0] == "False" and condition(later.status, "Reconciling")[0] == "True"


def test_a_transient_failed_create_never_stalls_the_pipeline() -> None:
    """An API server restart leaves FailedCreate Events of transport errors; the Job controller retries them."""
    started = (NOW - timedelta(seconds=20)).strftime("%Y-%m-%dT%H:%M:%SZ")
    status = PipelineStatus(run_id=RUN, started_at=started, stages={**succeeded_stages("rank"), "select": StageStatus(pending=1, started_at=started)},
                            selected_targets=1)
    select = observed_job("select", run=RUN, completions=1)
    for message in ("Error creating: unexpected error when reading response body. Please retry. Original error: read tcp "
                    "127.0.0.1:52122->127.0.0.1:32764: read: connection reset by peer",
                    "Error creating: the server is currently unable to handle the request (post pods)"):
        failure = CreateFailure(job=select.name, message=message, count=2)
        d = decide(pipeline_view(SPEC, status), Observed(jobs=(select,), create_failures=(failure,), spec_map_exists=True), CONFIG, NOW)
        assert condition(d.status, "Stalled")[0] == "False" and condition(d.status, "Reconciling")[0] == "True", message


def test_failed_create_events_are_read_per_job_keeping_the_latest() -> None:
    jobs = (observed_job("select", run=RUN), observed_job("rank", run=RUN, complete=True, succeeded=1))

    def event(job: str, when: str, message: str, reason: str = "FailedCreate", kind: str = "Job") -> dict[str, Any]:
        return {"involvedObject": {"kind": kind, "name": job}, "reason": reason, "message": message, "count": 2, "lastTimestamp": when}

    select = jobs[0].name
    listing = {"items": [event(select, "2026-12-01T11:00:05Z", "old"), event(select, "2026-12-01T11:00:09Z", "new"),
                         event("someone-elses-job", "2026-12-01T11:00:09Z", "not ours"), event(select, "2026-12-01T11:00:10Z", "x", reason="SuccessfulCreate"),
                         event(select, "2026-12-01T11:00:10Z", "a pod", kind="Pod")]}
    assert parse_create_failures(listing, jobs) == (CreateFailure(job=select, message="new", count=2),)


def test_the_message_says_what_happens_next() -> None:
    text = describe(refusal(attempts_before=1))
    assert text.endswith("it is tried again at once when the spec changes, else in 60s")
    quota = refusal_of(job_manifest(), 403, "Forbidden", 'jobs.batch "demo-rank" is forbidden: exceeded quota: q, requested: count/jobs.batch=1',
                       (), generation=1, dry_run=False, at=NOW, before=None)
    assert "a ResourceQuota of the namespace allows no more of these" in describe(quota)


class EventsKube:
    """Answers observe's reads: the run's Jobs, no pods, the claims, and FailedCreate Events; records the Event LISTs."""

    def __init__(self, jobs: list[dict[str, Any]], events: list[dict[str, Any]]) -> None:
        self.jobs, self.events, self.event_reads = jobs, events, []  # type: ignore[var-annotated]

    def get(self, resource: str, labelSelector: str = "", fieldSelector: str = "", resourceVersion: str | None = None) -> dict[str, Any]:  # noqa: N803 -- the API's parameter names
        if resource.endswith("/events"):
            self.event_reads.append(fieldSelector)
            return {"items": self.events}
        return {"items": self.jobs if resource.endswith("/jobs") else []}

    def get_or_none(self, resource: str) -> dict[str, Any] | None:
        return {"metadata": {"name": resource.rsplit("/", 1)[-1]}}


def test_observe_reads_failed_create_events_only_for_a_job_without_pods_past_the_grace_and_drops_a_refusal_of_an_older_generation() -> None:
    from trainpipe_operator.observe import observe

    name = observed_job("rank", run=RUN).name
    labels = {"trainpipe.io/pipeline": "demo", "trainpipe.io/run": RUN, "trainpipe.io/stage": "rank", "trainpipe.io/attempt": "0"}
    job = {"metadata": {"name": name, "labels": labels, "resourceVersion": "5", "ownerReferences": OWNED}, "spec": {"completions": 1}, "status": {}}
    event = {"involvedObject": {"kind": "Job", "name": name}, "reason": "FailedCreate", "message": FORBIDDEN.format(job=name), "count": 3,
             "lastTimestamp": "2026-12-01T11:59:58Z"}
    kube, cache = EventsKube([job], [event]), ChildCache()

    def view_at(seconds_ago: float, generation: int = 1) -> Any:
        started = (NOW - timedelta(seconds=seconds_ago)).strftime("%Y-%m-%dT%H:%M:%SZ")
        status = PipelineStatus(run_id=RUN, started_at=started, stages={"rank": StageStatus(pending=1, started_at=started)})
        return pipeline_view(SPEC, status, generation=generation)

    young = observe(kube, cache, view_at(3), NOW)  # type: ignore[arg-type]
    assert kube.event_reads == [] and young.create_failures == () and young.recheck_after == pytest.approx(7.0)
    old = observe(kube, cache, view_at(15), NOW)  # type: ignore[arg-type]
    assert kube.event_reads == ["involvedObject.kind=Job,reason=FailedCreate"]
    assert [f.count for f in old.create_failures] == [3]
    observe(kube, cache, view_at(16), NOW)  # type: ignore[arg-type]
    assert len(kube.event_reads) == 1, "a read a few seconds old answers the next pass"

    cache.refused(("ns", "demo"), refusal(generation=1))
    assert observe(kube, cache, view_at(16), NOW).refusal is not None  # type: ignore[arg-type]
    assert observe(kube, cache, view_at(16, generation=2), NOW).refusal is None, "a spec edit tries the create again at once"  # type: ignore[arg-type]


def test_one_event_read_answers_every_pipeline_of_its_namespace_until_it_is_too_old() -> None:
    """Events have no watch cache in the API server: each LIST decodes every Event of the namespace from etcd, so the
    pipelines of a namespace share one read instead of making one each."""
    import dataclasses

    from trainpipe_operator.observe import _create_failures

    mine = observed_job("rank", run=RUN)
    theirs = dataclasses.replace(mine, name="other-" + mine.name)
    events = [{"involvedObject": {"kind": "Job", "name": job.name}, "reason": "FailedCreate", "message": FORBIDDEN.format(job=job.name),
               "count": n, "lastTimestamp": "2026-12-01T11:59:58Z"} for job, n in ((mine, 2), (theirs, 5))]
    clock = [100.0]
    kube, cache = EventsKube([], events), ChildCache(clock=lambda: clock[0])
    assert [f.count for f in _create_failures(kube, cache, ("ns", "demo"), [mine], 10.0)] == [2]  # type: ignore[arg-type]
    assert [f.count for f in _create_failures(kube, cache, ("ns", "other"), [theirs], 10.0)] == [5]  # type: ignore[arg-type]
    assert len(kube.event_reads) == 1, "the second pipeline of the namespace used the first one's read"
    _create_failures(kube, cache, ("ns-2", "demo"), [mine], 10.0)  # type: ignore[arg-type]
    assert len(kube.event_reads) == 2, "another namespace reads its own Events"
    clock[0] += 11.0
    _create_failures(kube, cache, ("ns", "other"), [theirs], 10.0)  # type: ignore[arg-type]
    assert len(kube.event_reads) == 3, "a read older than the caller allows is made again"


def test_an_operator_not_granted_the_event_read_goes_on_without_the_reason() -> None:
    from trainpipe_operator.observe import observe

    class Forbidden(EventsKube):
        def get(self, resource: str, labelSelector: str = "", fieldSelector: str = "", resourceVersion: str | None = None) -> dict[str, Any]:  # noqa: N803
            if resource.endswith("/events"):
                self.event_reads.append(fieldSelector)
                raise ApiError("GET", resource, 403, {"reason": "Forbidden", "message": "events is forbidden"})
            return super().get(resource, labelSelector, fieldSelector, resourceVersion)

    name = observed_job("rank", run=RUN).name
    labels = {"trainpipe.io/pipeline": "demo", "trainpipe.io/run": RUN, "trainpipe.io/stage": "rank", "trainpipe.io/attempt": "0"}
    kube = Forbidden([{"metadata": {"name": name, "labels": labels, "resourceVersion": "5", "ownerReferences": OWNED}, "spec": {"completions": 1}, "status": {}}], [])
    started = (NOW - timedelta(seconds=30)).strftime("%Y-%m-%dT%H:%M:%SZ")
    view = pipeline_view(SPEC, PipelineStatus(run_id=RUN, started_at=started, stages={"rank": StageStatus(pending=1, started_at=started)}))
    cache = ChildCache()
    assert observe(kube, cache, view, NOW).create_failures == ()  # type: ignore[arg-type]
    observe(kube, cache, view, NOW)  # type: ignore[arg-type]
    assert len(kube.event_reads) == 1, "not asked again on every pass"
