"""The operator's pure helpers around `decide`: API-dict parsers, the watch-stall detector, the work queue."""

from __future__ import annotations

import asyncio

import pytest

from trainpipe.contract.names import Stage
from trainpipe.kube.pods import parse_pod
from trainpipe_operator.health import WatchHealth
from trainpipe_operator.observed import parse_job, parse_pipeline, parse_plan_configmap
from trainpipe_operator.workqueue import WorkQueue

LABELS = {"trainpipe.io/pipeline": "demo", "trainpipe.io/run": "r1", "trainpipe.io/stage": "cpu", "trainpipe.io/family": "xgboost",
          "trainpipe.io/attempt": "1"}


def test_an_indexed_job_with_failed_indexes_reads_as_failed_units_with_its_condition():
    obj = {"metadata": {"name": "demo-r1-cpu-xgboost-1", "labels": LABELS, "annotations": {"trainpipe.io/plan-digest": "abc"}},
           "spec": {"completions": 6, "completionMode": "Indexed", "suspend": False},
           "status": {"succeeded": 3, "failed": 4, "failedIndexes": "1,3-4", "conditions": [
               {"type": "FailureTarget", "status": "True"}, {"type": "Failed", "status": "True", "reason": "FailedIndexes", "message": "Job has failed indexes"}]}}
    job = parse_job(obj)
    assert job is not None and job.stage is Stage.CPU and job.family == "xgboost" and job.attempt == 1 and job.run == "r1"
    assert job.failed_indexes == (1, 3, 4) and job.failed_units == 3 and job.failed_condition == "FailedIndexes: Job has failed indexes"
    assert job.indexed and job.completions == 6 and not job.complete and job.plan_digest == "abc"


def test_jobs_without_our_labels_are_not_ours():
    assert parse_job({"metadata": {"name": "x", "labels": {"app": "other"}}, "spec": {}, "status": {}}) is None


def test_a_pod_reads_as_its_job_index_termination_message_and_scheduler_reason():
    pending = parse_pod({"metadata": {"name": "p", "labels": {"batch.kubernetes.io/job-name": "j"}, "annotations": {"batch.kubernetes.io/job-completion-index": "2"}},
                         "status": {"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                                                                         "message": "0/4 nodes are available: 2 Insufficient nvidia.com/gpu."}]}})
    assert pending is not None and pending.index == 2 and "Insufficient nvidia.com/gpu" in (pending.unschedulable or "")
    failed = parse_pod({"metadata": {"name": "q", "labels": {"job-name": "j"}},
                        "status": {"phase": "Failed", "containerStatuses": [{"state": {"terminated": {"exitCode": 3, "message": "bad data in AAPL.parquet\n"}}}]}})
    assert failed is not None and failed.exit_code == 3 and failed.message == "bad data in AAPL.parquet" and failed.index is None


def test_a_pipeline_with_an_unusable_spec_names_the_field_under_spec():
    view = parse_pipeline({"metadata": {"name": "p", "namespace": "n", "generation": 3, "annotations": {"trainpipe.io/retry": "t"}},
                           "spec": {"targets": {"topN": 0}}})
    assert view.spec is None and "spec.targets.topN" in (view.spec_error or "") and view.generation == 3 and view.retry_token == "t"


def test_a_foreign_or_edited_plan_config_map_is_ignored_so_it_gets_rewritten():
    assert parse_plan_configmap({"data": {"run": "r", "digest": "d", "path": "p", "units": '{"lightgbm": 2}'}}).units == {"lightgbm": 2}
    assert parse_plan_configmap({"data": {"run": "r", "digest": "d"}}) is None
    assert parse_plan_configmap({"data": {"run": "r", "digest": "d", "path": "p", "units": "not json"}}) is None


def test_the_watch_is_stalled_only_when_a_list_keeps_showing_versions_no_event_brought():
    health = WatchHealth(grace_seconds=60)
    key = ("ns", "p")
    health.saw(key, "10")
    health.listed({key: "10"}, now=0)
    assert health.stalled(now=1000) == []  # quiet but in step: healthy
    health.listed({key: "11"}, now=100)  # the LIST is ahead of the watch
    assert health.stalled(now=150) == []  # within the grace period: the event may be on its way
    assert health.stalled(now=161) == [key]
    health.saw(key, "11")
    assert health.stalled(now=200) == []
    health.listed({key: "12"}, now=300)
    health.listed({}, now=310)  # deleted: no longer tracked
    assert health.stalled(now=1000) == []


def test_the_queue_folds_bursts_and_never_runs_one_key_twice_at_once():
    async def scenario() -> list[tuple[str, str]]:
        queue: WorkQueue[tuple[str, str]] = WorkQueue()
        a, b = ("ns", "a"), ("ns", "b")
        for key in (a, a, b, a):
            queue.add(key)
        assert len(queue) == 2
        first = await queue.take()
        queue.add(first)  # an event while its pass runs: one more pass afterwards, not a parallel one
        second = await queue.take()
        assert second != first
        queue.done(first)
        third = await queue.take()
        queue.done(second)
        queue.done(third)
        return [first, second, third]

    assert asyncio.run(scenario()) == [("ns", "a"), ("ns", "b"), ("ns", "a")]


def test_failures_back_off_longer_each_time_until_a_success_resets_them():
    queue: WorkQueue[str] = WorkQueue(backoff=(0.5, 1.0, 5.0))
    assert [queue.failed("a") for _ in range(4)] == [0.5, 1.0, 5.0, 5.0]
    assert queue.failed("b") == 0.5, "each key backs off on its own"
    queue.forget("a")
    assert queue.failed("a") == 0.5


def test_the_token_bucket_allows_a_burst_then_the_sustained_rate():
    from trainpipe_operator.ratelimit import TokenBucket

    now = [0.0]
    bucket = TokenBucket(qps=10, burst=3, clock=lambda: now[0], sleep=lambda s: None)
    assert [bucket.reserve() for _ in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.reserve() == pytest.approx(0.1)  # the fourth waits one token's time
    now[0] = 1.0  # a second later the bucket is full again (capped at the burst)
    assert [bucket.reserve() for _ in range(3)] == [0.0, 0.0, 0.0]


@pytest.mark.parametrize(("flag", "value", "message"), [
    ("--cpu-node-selector", ["pool"], "KEY=VALUE"),
    ("--gpu-toleration", ["{not json"], "not JSON"),
    ("--gpu-toleration", ['{"key": "a", "colour": "red"}'], "keys among"),
])
def test_operator_flags_that_cannot_be_used_are_refused_naming_the_flag(flag, value, message):
    from trainpipe_operator.config import ConfigError, parse_selector, parse_toleration

    with pytest.raises(ConfigError, match=message) as err:
        if flag.endswith("selector"):
            parse_selector(flag, value)
        else:
            parse_toleration(flag, value[0])
    assert flag in str(err.value)


def test_an_urgent_key_is_taken_before_routine_ones_that_waited_longer_and_only_once():
    async def scenario() -> list[str]:
        queue: WorkQueue[str] = WorkQueue()
        for key in ("new-1", "new-2", "new-3"):
            queue.add(key)  # pipelines just created: their first passes
        queue.add("handoff", urgent=True)  # a Job of a running pipeline finished: its next stage waits on this pass
        queue.add("new-2", urgent=True)  # a key already waiting moves ahead, and is still taken once
        taken = [await queue.take() for _ in range(4)]
        assert len(queue) == 0
        for key in taken:
            queue.done(key)
        queue.add("new-1")
        assert await queue.take() == "new-1", "a stale entry of a key taken earlier is skipped, not run twice"
        return taken

    assert asyncio.run(scenario()) == ["handoff", "new-2", "new-1", "new-3"]


def test_an_urgent_add_during_a_pass_makes_the_pass_after_it_urgent():
    async def scenario() -> list[str]:
        queue: WorkQueue[str] = WorkQueue()
        queue.add("a")
        running = await queue.take()
        queue.add("b")
        queue.add("a", urgent=True)  # a Job of `a` finished while its pass ran
        queue.done(running)
        return [await queue.take(), await queue.take()]

    assert asyncio.run(scenario()) == ["a", "b"]


def test_a_pass_replaces_the_look_an_earlier_pass_asked_for_but_never_an_events_wake_up():
    async def scenario() -> tuple[float | None, float | None, float | None]:
        queue: WorkQueue[str] = WorkQueue()
        now = asyncio.get_running_loop().time()
        queue.requeue("a", 10.0)  # a pass that created Jobs looks again in 10 s
        queue.requeue("a", 60.0)  # the next pass saw them start: its own look is all that is left
        replaced = queue.wakes_at("a")
        queue.add_after("a", 0.25, urgent=True)  # an event meanwhile: its wake-up stands
        queue.requeue("a", 30.0)
        event = queue.wakes_at("a")
        await asyncio.sleep(0.3)
        queue.cancel_requeue("a")
        left = queue.wakes_at("a")
        assert await queue.take() == "a"
        return (replaced - now if replaced else None, event - now if event else None, left)

    replaced, event, left = asyncio.run(scenario())
    assert replaced == pytest.approx(60.0, abs=0.1) and event == pytest.approx(0.25, abs=0.1) and left is None
