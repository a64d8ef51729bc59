"""The operator's cache of pipelines and their children (`cache.ChildCache`) and the passes that read it (`observe`).

What a user would notice if it were wrong: a Job created twice or a finished stage run again (a late
watch event undoing what the operator just wrote), a deleted Job or ConfigMap never restored, or a
pass that still asks the API server for everything and so falls behind at hundreds of pipelines.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from typing import Any

import pytest

from trainpipe.contract.names import LABEL_PIPELINE, LABEL_RUN, LABEL_STAGE, Stage
from trainpipe.contract.pipeline import PipelineSpec
from trainpipe.contract.runs import run_id
from trainpipe.contract.status import PipelineStatus, StageStatus
from trainpipe_operator.cache import ChildCache, Versioned, newer
from trainpipe_operator.naming import job_name
from trainpipe_operator.observe import observe, read_pipeline
from trainpipe_operator.observed import POD_RECHECK_SECONDS, PipelineView

NOW = datetime(2026, 12, 1, 12, 0, 0, tzinfo=UTC)
KEY = ("ns", "demo")
SPEC = PipelineSpec.model_validate({"data": {"dir": "example", "volume": {"claimName": "bars"}}, "training": {"families": ["lightgbm"]}})
RUN = run_id(SPEC)
RANK = job_name("demo", RUN, Stage.RANK, None, 0)


OWNER = {"apiVersion": "trainpipe.io/v1alpha1", "kind": "TrainingPipeline", "name": "demo", "uid": "u1", "controller": True}


def job(name: str = RANK, rv: str = "10", *, succeeded: int = 0, suspend: bool = False, run: str = RUN) -> dict[str, Any]:
    labels = {LABEL_PIPELINE: "demo", LABEL_RUN: run, LABEL_STAGE: Stage.RANK.value, "trainpipe.io/attempt": "0"}
    conditions = [{"type": "Complete", "status": "True"}] if succeeded else []
    return {"kind": "Job", "metadata": {"name": name, "namespace": "ns", "resourceVersion": rv, "labels": labels, "ownerReferences": [OWNER]},
            "spec": {"completions": 1, "suspend": suspend}, "status": {"succeeded": succeeded, "conditions": conditions}}


def pod(name: str, rv: str, *, run: str = RUN, phase: str = "Running") -> dict[str, Any]:
    labels = {LABEL_PIPELINE: "demo", LABEL_RUN: run, "job-name": RANK}
    return {"kind": "Pod", "metadata": {"name": name, "namespace": "ns", "resourceVersion": rv, "labels": labels}, "status": {"phase": phase}}


def pipeline(rv: str, status: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"apiVersion": "trainpipe.io/v1alpha1", "kind": "TrainingPipeline",
            "metadata": {"name": "demo", "namespace": "ns", "resourceVersion": rv, "generation": 1, "uid": "u1"},
            "spec": SPEC.model_dump(mode="json", by_alias=True, exclude_none=True), "status": status or {}}


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


@pytest.mark.parametrize(("candidate", "held", "expected"), [
    ("11", "10", True), ("10", "10", False), ("9", "10", False),
    ("100", "99", True),  # numbers, not strings: "100" < "99" as text
    ("5", "", True),  # nothing held yet
    ("abc", "abd", True),  # not numbers: the one that arrived last wins
])
def test_resource_versions_compare_as_the_api_server_hands_them_out(candidate, held, expected):
    assert newer(candidate, held) is expected


def test_a_late_watch_event_never_undoes_the_operators_own_write():
    cache = ChildCache()
    cache.wrote(job(rv="12", suspend=True))  # the answer to the operator's suspend PATCH
    cache.job_event("MODIFIED", job(rv="11", suspend=False))  # the watch catching up on the state before it
    assert [j.suspended for j in cache.jobs(KEY)] == [True]
    cache.job_event("MODIFIED", job(rv="13", suspend=False))  # a later change (someone resumed it) is taken
    assert [j.suspended for j in cache.jobs(KEY)] == [False]


def test_the_next_pass_sees_the_status_the_operator_just_wrote_before_its_event_arrives():
    cache = ChildCache()
    cache.put_pipeline(pipeline("20"))
    cache.wrote(pipeline("21", {"stage": "select"}))  # the answer to the status PUT
    cache.put_pipeline(pipeline("20"))  # the watch delivering the older object late
    assert cache.pipeline(KEY) == (True, pipeline("21", {"stage": "select"}))


def test_a_job_the_operator_deleted_stays_gone_until_it_is_created_again():
    cache = ChildCache()
    cache.wrote(job(rv="10", succeeded=1))
    cache.job_deleted(KEY, RANK, {"kind": "Job", "metadata": {"resourceVersion": "15"}})
    cache.job_event("MODIFIED", job(rv="14", succeeded=1))  # from before the delete
    assert cache.jobs(KEY) == ()
    cache.job_event("DELETED", job(rv="16", succeeded=1))
    cache.wrote(job(rv="30"))  # created again (a new attempt of the same name)
    assert [(j.name, j.complete) for j in cache.jobs(KEY)] == [(RANK, False)]


def test_a_list_shows_what_exists_and_keeps_what_arrived_after_it():
    cache = ChildCache()
    cache.job_event(None, job("gone", rv="5"))
    cache.job_event("ADDED", job("new", rv="60"))  # created after the LIST below was served
    cache.list_jobs(KEY, {"metadata": {"resourceVersion": "50"}, "items": [job(RANK, rv="40")]})
    cache.job_event("MODIFIED", job("gone", rv="45"))  # a late event of a Job the LIST no longer holds
    assert [j.name for j in cache.jobs(KEY)] == sorted([RANK, "new"])


def test_a_deletion_the_watch_reports_during_a_list_is_not_undone_by_that_list():
    cache = ChildCache()
    cache.list_jobs(KEY, {"metadata": {"resourceVersion": "40"}, "items": [job(RANK, rv="30")]})
    cache.job_event("DELETED", job(RANK, rv="55"))  # deleted by a user while the next LIST was served
    cache.list_jobs(KEY, {"metadata": {"resourceVersion": "50"}, "items": [job(RANK, rv="30")]})
    assert cache.jobs(KEY) == ()


def test_a_deleted_pipeline_takes_its_children_out_of_the_cache():
    cache = ChildCache()
    cache.put_pipeline(pipeline("20"))
    cache.wrote(job(rv="21"))
    cache.primed(KEY)
    cache.pipeline_deleted(KEY, "30")
    assert cache.pipeline(KEY) == (True, None)
    assert cache.jobs(KEY) == () and not cache.fresh(KEY)
    cache.job_event("DELETED", job(rv="31"))  # the garbage collector's deletes leave nothing behind
    assert cache.jobs(KEY) == ()


def test_a_pod_list_serves_the_passes_of_the_next_seconds_then_is_asked_again():
    clock = Clock()
    cache = ChildCache(clock=clock)
    cpu = {"labelSelector": "x", "fieldSelector": "status.phase!=Succeeded,status.phase!=Failed"}
    assert cache.pods(KEY, RUN, cpu, 10) is None
    cache.list_pods(KEY, RUN, cpu, {"metadata": {"resourceVersion": "9"}, "items": [pod("b", "6"), pod("a", "5")]})
    clock.t += 10
    assert [p.name for p in cache.pods(KEY, RUN, cpu, 10) or ()] == ["a", "b"]
    assert cache.pods(KEY, "r0", cpu, 10) is None, "another run's pods are never taken for this run's"
    assert cache.pods(KEY, RUN, {"labelSelector": "y"}, 10) is None, "nor the answer to another selection of pods"
    clock.t += 1
    assert cache.pods(KEY, RUN, cpu, 10) is None
    cache.list_pods(KEY, RUN, cpu, {"metadata": {"resourceVersion": "9"}, "items": []})
    cache.unprime(KEY)
    assert cache.pods(KEY, RUN, cpu, 10) is None


def test_the_cache_is_trusted_for_the_relist_period_after_a_full_read_and_not_after_a_failure():
    clock = Clock()
    cache = ChildCache(relist_seconds=300, clock=clock)
    assert not cache.fresh(KEY)
    cache.primed(KEY)
    clock.t += 299
    assert cache.fresh(KEY)
    clock.t += 2
    assert not cache.fresh(KEY), "a missed watch event must not live longer than the relist period"
    cache.primed(KEY)
    cache.unprime(KEY)
    assert not cache.fresh(KEY)


def test_a_claim_seen_lately_is_not_asked_for_again_but_a_missing_one_always_is():
    clock = Clock()
    cache = ChildCache(relist_seconds=300, clock=clock)
    assert not cache.claim_known("ns", "bars")
    cache.claim_exists("ns", "bars")
    assert cache.claim_known("ns", "bars")
    clock.t += 301
    assert not cache.claim_known("ns", "bars")


def test_a_versioned_store_ignores_an_event_older_than_its_list_for_an_object_it_never_held():
    store: Versioned[str] = Versioned()
    store.replace([("a", "3", "x")], "10")
    store.apply("b", "9", "ghost")  # b was deleted before the LIST at 10
    store.apply("c", "11", "new")
    assert store.values() == ["x", "new"]


def spec_configmap(owner: dict[str, Any] | None = OWNER, name: str = f"demo-{RUN}-spec", labelled: bool = True) -> dict[str, Any]:
    labels = {LABEL_PIPELINE: "demo", LABEL_RUN: RUN} if labelled else {}
    return {"kind": "ConfigMap", "metadata": {"name": name, "namespace": "ns", "resourceVersion": "30", "labels": labels,
                                              "ownerReferences": [owner] if owner else []}, "data": {"spec.json": "{}"}}


class CountingKube:
    """The API server as `observe` sees it: fixed objects, every request counted."""

    def __init__(self, jobs: list[dict[str, Any]], pipeline_obj: dict[str, Any]) -> None:
        self.jobs, self.pipeline_obj, self.requests = jobs, pipeline_obj, []  # type: ignore[var-annotated]
        self.configmaps = [spec_configmap()]  # the run has started: its spec ConfigMap is there
        self.versions: list[str | None] = []

    def get(self, resource: str, labelSelector: str = "", resourceVersion: str | None = None, fieldSelector: str = "") -> dict[str, Any]:  # noqa: N803 -- the API's parameter names
        self.requests.append(("list", resource.rsplit("/", 1)[-1]))
        self.versions.append(resourceVersion)  # None: a consistent read; "0": whatever the API server's watch cache holds
        items = self.jobs if resource.endswith("/jobs") else self.configmaps if resource.endswith("/configmaps") else []
        return {"metadata": {"resourceVersion": "100"}, "items": items}

    def get_or_none(self, resource: str) -> dict[str, Any] | None:
        kind = resource.split("/")[-2]
        self.requests.append(("get", kind))
        if kind == "persistentvolumeclaims":
            return {"metadata": {"name": resource.rsplit("/", 1)[-1]}}
        return self.pipeline_obj if kind == "trainingpipelines" else None


def test_a_pass_after_a_full_read_asks_the_api_server_nothing_and_sees_what_the_watch_brought():
    kube = CountingKube([job(rv="40")], pipeline("50"))
    cache = ChildCache()
    found = read_pipeline(kube, cache, KEY)  # type: ignore[arg-type]
    assert found is not None
    obj, view = found
    first = observe(kube, cache, view, NOW)  # type: ignore[arg-type]
    assert sorted(set(kube.requests)) == [("get", "persistentvolumeclaims"), ("get", "trainingpipelines"), ("list", "configmaps"), ("list", "jobs")]
    assert [j.name for j in first.jobs] == [RANK]

    kube.requests.clear()
    cache.job_event("MODIFIED", job(rv="101", succeeded=1))  # rank finished: the Job's event
    found = read_pipeline(kube, cache, KEY)  # type: ignore[arg-type]
    assert found is not None
    second = observe(kube, cache, found[1], NOW)  # type: ignore[arg-type]
    assert [j.complete for j in second.jobs] == [True]
    # rank's report is still to read: that one comes from a consistent LIST of the run's pods made now
    assert kube.requests == [("list", "pods")] and kube.versions[-1] is None

    kube.requests.clear()
    settled = PipelineView(namespace="ns", name="demo", uid="u1", generation=1, spec=SPEC, spec_error=None,
                           status=PipelineStatus(run_id=RUN, selected_targets=3))
    third = observe(kube, cache, settled, NOW)  # type: ignore[arg-type]
    assert kube.requests == [] and third.recheck_after is None


def test_while_pods_wait_a_pass_lists_them_at_most_every_recheck_period_and_comes_back_by_itself():
    clock = Clock()
    kube = CountingKube([job(rv="40")], pipeline("50"))
    cache = ChildCache(clock=clock)
    waiting = {**job(rv="41"), "status": {"active": 1, "ready": 0}}  # its pod is not running yet: maybe unschedulable
    cache.list_jobs(KEY, {"metadata": {"resourceVersion": "41"}, "items": [waiting]})
    cache.list_configmaps(KEY, {"metadata": {"resourceVersion": "41"}, "items": [spec_configmap()]})
    cache.primed(KEY)
    cache.claim_exists("ns", "bars")
    cache.claim_exists("ns", "demo-artifacts")
    view = PipelineView(namespace="ns", name="demo", uid="u1", generation=1, spec=SPEC, spec_error=None, status=PipelineStatus(run_id=RUN))
    first = observe(kube, cache, view, NOW)  # type: ignore[arg-type]
    assert kube.requests == [("list", "pods")] and first.recheck_after == POD_RECHECK_SECONDS
    assert kube.versions == ["0"], "why pods wait is read from the API server's watch cache, not a quorum read"
    clock.t += POD_RECHECK_SECONDS / 2
    assert observe(kube, cache, view, NOW).recheck_after == POD_RECHECK_SECONDS  # type: ignore[arg-type]
    assert kube.requests == [("list", "pods")], "a LIST a few seconds old still says why pods wait"
    clock.t += POD_RECHECK_SECONDS
    observe(kube, cache, view, NOW)  # type: ignore[arg-type]
    assert kube.requests == [("list", "pods")] * 2

    kube.requests.clear()
    just_started = view.status.model_copy(update={"stages": {"rank": StageStatus(active=1, started_at="2026-12-01T11:59:58Z")}})
    fresh_stage = observe(kube, cache, dataclasses.replace(view, status=just_started), NOW)  # type: ignore[arg-type]
    assert kube.requests == [] and fresh_stage.recheck_after == pytest.approx(POD_RECHECK_SECONDS - 2), \
        "a stage whose pods started 2 s ago is not asked about yet, and is looked at again when it is due"


def test_a_runs_spec_configmap_is_known_from_its_events_until_deleted():
    cache = ChildCache()
    key = ("ns", "demo")
    spec_map = {"kind": "ConfigMap", "metadata": {"name": "demo-r1-spec", "namespace": "ns", "resourceVersion": "5",
                                                  "labels": {LABEL_PIPELINE: "demo", LABEL_RUN: "r1"}}, "data": {"spec.json": "{}"}}
    assert not cache.has_configmap(key, "demo-r1-spec")
    cache.configmap_event("ADDED", spec_map)
    assert cache.has_configmap(key, "demo-r1-spec") and cache.plan(key, "demo-plan") is None
    cache.configmap_event("DELETED", {**spec_map, "metadata": {**spec_map["metadata"], "resourceVersion": "6"}})
    assert not cache.has_configmap(key, "demo-r1-spec"), "deleted: the next Jobs' pass creates it again"
