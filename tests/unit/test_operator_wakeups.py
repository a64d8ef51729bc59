"""How soon a watch event wakes a pipeline's pass (`cache.Change`, `Wakeups.changed`).

What a user would notice if it were wrong: a stage that finished but whose next stage starts late
(its pass queued behind hundreds of passes that had nothing to do), or one that never starts (an
event wrongly taken for noise). Every pod a Job starts or finishes changes the Job; at 200
pipelines those events woke most of the operator's passes, and the queue they made was the p99 of
the stage hand-off.
"""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

import pytest

from test_operator_cache import KEY, RANK, job, pipeline
from trainpipe.contract.names import Stage
from trainpipe_operator.cache import Change, ChildCache, change
from trainpipe_operator.config import OperatorConfig
from trainpipe_operator.health import WatchHealth
from trainpipe_operator.metrics import Metrics
from trainpipe_operator.observed import ObservedJob, ObservedPlan
from trainpipe_operator.pacing import StatusPacing, progress_hold
from trainpipe_operator.resync import due
from trainpipe_operator.runtime import Reconciler
from trainpipe_operator.workqueue import WorkQueue

BASE = ObservedJob(name=RANK, run="r1", stage=Stage.RANK, family=None, attempt=0, completions=4, indexed=True)


@pytest.mark.parametrize(("update", "expected"), [
    ({"succeeded": 1}, Change.COUNTS),
    ({"active": 3, "ready": 1}, Change.COUNTS),  # pods starting: the pass that asks why they wait comes on its own timer
    ({"failed": 1, "active": 1}, Change.COUNTS),  # a failed try the Job retries within its backoff
    ({"complete": True, "succeeded": 4}, Change.STATE),  # the stage may be done: the next one starts now
    ({"failed_condition": "BackoffLimitExceeded: ..."}, Change.STATE),
    ({"failed_indexes": (2,)}, Change.STATE),
    ({"suspended": True}, Change.STATE),
    ({"deleting": True}, Change.STATE),
    ({"plan_digest": "other"}, Change.STATE),
    ({}, Change.NONE),  # e.g. the Job controller stamping a field no pass reads
])
def test_a_jobs_change_is_counts_only_when_nothing_but_its_running_counts_moved(update, expected):
    assert change(True, BASE, dataclasses.replace(BASE, **update)) is expected


@pytest.mark.parametrize(("taken", "before", "after", "expected"), [
    (False, None, BASE, Change.NONE),  # older than what is held: nothing new
    (True, None, BASE, Change.STATE),  # a Job appeared
    (True, BASE, None, Change.STATE),  # a Job went
    (True, ObservedPlan("r1", "d", "p", {"lightgbm": 1}), ObservedPlan("r1", "e", "p", {"lightgbm": 1}), Change.STATE),
])
def test_children_appearing_going_or_changing_are_state(taken, before, after, expected):
    assert change(taken, before, after) is expected


def test_the_watch_echo_of_the_operators_own_writes_is_not_news():
    cache = ChildCache()
    created = job(rv="20")
    cache.wrote(created)  # the API's answer to the operator's create
    assert cache.job_event("ADDED", created) is Change.NONE
    assert cache.job_event("MODIFIED", {**created, "metadata": {**created["metadata"], "resourceVersion": "21"},
                                        "status": {"active": 1}}) is Change.COUNTS
    assert cache.job_event("MODIFIED", job(rv="22", succeeded=1)) is Change.STATE
    assert cache.job_event("MODIFIED", job(rv="21")) is Change.NONE, "a late event of an older version"

    written = pipeline("30", {"phase": "Running"})
    cache.put_pipeline(pipeline("29"))
    cache.wrote(written)  # the answer to the operator's status PUT
    assert cache.put_pipeline(written) is False, "its watch event brings nothing the pass did not write"
    assert cache.put_pipeline(pipeline("31")) is True, "a user's edit after it is news"


class Loop:
    """The parts of asyncio's loop `Reconciler.later` uses, on a clock the test moves."""

    def __init__(self) -> None:
        self.t = 0.0
        self.calls: list[tuple[float, Any]] = []

    def time(self) -> float:
        return self.t

    def get_debug(self) -> bool:
        return False

    def _timer_handle_cancelled(self, handle: asyncio.TimerHandle) -> None:
        pass

    def call_at(self, when: float, fn: Any, *args: Any) -> asyncio.TimerHandle:
        self.calls.append((when, args))
        return asyncio.TimerHandle(when, fn, args, self)  # type: ignore[arg-type]


def reconciler(monkeypatch: pytest.MonkeyPatch, loop: Loop) -> Reconciler:
    monkeypatch.setattr(asyncio, "get_running_loop", lambda: loop)
    return Reconciler(kube=None, config=OperatorConfig(), metrics=Metrics(), health=WatchHealth(grace_seconds=60),  # type: ignore[arg-type]
                      pacing=StatusPacing(floor=10.0), batch_seconds=0.25)


def test_a_state_change_wakes_the_pass_within_the_batch_window_and_counts_wait_for_the_status_hold(monkeypatch):
    loop, clock = Loop(), [100.0]
    monkeypatch.setattr("trainpipe_operator.pacing.time.monotonic", lambda: clock[0])
    r = reconciler(monkeypatch, loop)

    r.wakeups.changed(KEY, Change.NONE)
    assert loop.calls == [], "no pass for an event that changed nothing a pass reads"

    r.wakeups.changed(KEY, Change.COUNTS)  # no status written yet: nothing to wait for
    assert [when for when, _ in loop.calls] == [0.25]

    loop.calls.clear()
    r.queue = r.wakeups.queue = WorkQueue()
    clock[0] -= 4.0
    r.pacing.passed(KEY, running=True, wrote=True)  # the last status write was 4 s ago
    clock[0] += 4.0
    r.wakeups.changed(KEY, Change.COUNTS)
    assert [when for when, _ in loop.calls] == [pytest.approx(6.0)], "counts go in when the status may take them, not before"

    r.wakeups.changed(KEY, Change.STATE)  # a Job finished meanwhile: the earlier wake-up replaces the later one
    assert [when for when, _ in loop.calls][-1] == 0.25
    assert r.queue.wakes_at(KEY) == 0.25


@pytest.mark.parametrize(("running", "floor", "rate", "expected"), [
    (0, 10.0, 5.0, 10.0),
    (50, 10.0, 5.0, 10.0),  # at 50 running, a 10 s hold already keeps to 5 count writes a second
    (200, 10.0, 5.0, 40.0),  # beyond, each pipeline's counts wait longer so the total stays at 5/s
    (1000, 10.0, 5.0, 200.0),
    (1000, 10.0, 0.0, 10.0),  # no cap
    (3, 0.0, 5.0, 0.6),
])
def test_count_only_status_writes_keep_to_a_rate_across_all_running_pipelines(running, floor, rate, expected):
    assert progress_hold(running, floor, rate) == pytest.approx(expected)


def test_a_resync_passes_only_pipelines_without_a_pass_this_period_or_with_a_version_no_event_brought(monkeypatch):
    loop, clock = Loop(), [1000.0]
    monkeypatch.setattr("trainpipe_operator.resync.time.monotonic", lambda: clock[0])
    r = reconciler(monkeypatch, loop)
    busy, idle, missed = ("ns", "busy"), ("ns", "idle"), ("ns", "missed")
    r.resync._passed.update({busy: 990.0, idle: 900.0, missed: 995.0})
    enqueued: list[tuple[str, str]] = []
    monkeypatch.setattr(r.queue, "add", enqueued.append)

    async def one_resync() -> None:
        async def listed() -> tuple[dict[tuple[str, str], str], set[tuple[str, str]]]:
            return {busy: "1", idle: "2", missed: "3", ("ns", "new"): "4"}, {missed}

        class Once(Exception):
            pass

        async def stop(_: float) -> None:
            raise Once

        loop_ = asyncio.get_event_loop()
        monkeypatch.setattr(loop_, "run_in_executor", lambda _ex, _fn: listed())
        monkeypatch.setattr("trainpipe_operator.resync.asyncio.get_running_loop", lambda: loop_)
        monkeypatch.setattr("trainpipe_operator.resync.asyncio.sleep", stop)
        with pytest.raises(Once):
            await r.resync.run(30.0)

    asyncio.run(one_resync())
    assert sorted(enqueued) == [("ns", "idle"), ("ns", "missed"), ("ns", "new")]


@pytest.mark.parametrize(("passed", "missed", "expected"), [
    (None, False, True),  # never passed (new, or the operator just started)
    (995.0, False, False),  # passed 5 s ago: within the period, an event woke it already
    (970.0, False, True),  # exactly a period ago
    (900.0, False, True),
    (995.0, True, True),  # the LIST shows a version no watch event brought: the watch missed it
])
def test_a_resync_passes_a_pipeline_not_passed_within_the_period_or_one_the_watch_missed(passed, missed, expected):
    key = ("ns", "p")
    assert due([key], {key} if missed else set(), {} if passed is None else {key: passed}, now=1000.0, period=30.0) == ([key] if expected else [])
