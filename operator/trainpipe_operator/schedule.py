"""Cron schedules of pipelines: which fire time the current run belongs to and when the next one is (pure).

A fire time starts a run only when it is later than both the run it would replace and the moment the
operator first saw this schedule: adding or editing a schedule never starts a run by itself, and
fire times missed while the operator was down start one run at its return, not one per missed time.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import NamedTuple
from zoneinfo import ZoneInfo

from croniter import croniter

from trainpipe.contract.cluster import ScheduleSpec
from trainpipe.contract.pipeline import PipelineSpec
from trainpipe.contract.runs import run_id
from trainpipe.contract.status import ScheduleStatus
from trainpipe.contract.timestamps import parse_stamp, stamp


def _utc(text: str) -> datetime:
    moment = parse_stamp(text)
    if moment is None:
        raise ValueError("an empty timestamp in the schedule status")
    return moment


def last_fire(schedule: ScheduleSpec, now: datetime) -> datetime:
    """The latest fire time at or before `now`, read in the schedule's time zone."""
    # get_prev is strictly before its start: start one second later so that a fire time equal to now counts.
    local = now.astimezone(ZoneInfo(schedule.time_zone)).replace(microsecond=0) + timedelta(seconds=1)
    return croniter(schedule.cron, local).get_prev(datetime)


def next_fire(schedule: ScheduleSpec, now: datetime) -> datetime:
    return croniter(schedule.cron, now.astimezone(ZoneInfo(schedule.time_zone))).get_next(datetime)


def schedule_state(spec: ScheduleSpec | None, previous: ScheduleStatus | None, now: datetime) -> tuple[str | None, ScheduleStatus | None]:
    """(the slot the current run belongs to, the schedule status to write). Removing the schedule keeps the slot."""
    slot = previous.slot if previous else None
    if spec is None:
        return slot, previous.model_copy(update={"next_run_at": None}) if previous else None
    same = previous is not None and (previous.cron, previous.time_zone) == (spec.cron, spec.time_zone)
    since = previous.since if same and previous is not None else stamp(now)
    fired = last_fire(spec, now)
    floor = max(_utc(since), _utc(slot)) if slot else _utc(since)
    if fired > floor:
        slot = stamp(fired)
    return slot, ScheduleStatus(cron=spec.cron, time_zone=spec.time_zone, since=since, slot=slot, next_run_at=stamp(next_fire(spec, now)))


class CurrentRun(NamedTuple):
    """Which run a pipeline is on at one instant: computed once per pass and handed to observe and decide,
    as observe selects the run's pods by this id (an id computed without the slot would find no pods of
    a scheduled run, and its rank and plan reports would never be read)."""

    run_id: str
    slot: str | None  # the cron fire time the run belongs to, if the schedule started it
    schedule: ScheduleStatus | None  # the schedule status to write


def current_run(spec: PipelineSpec, rerun_token: str | None, previous: ScheduleStatus | None, now: datetime) -> CurrentRun:
    slot, schedule = schedule_state(spec.schedule, previous, now)
    return CurrentRun(run_id(spec, rerun_token, slot), slot, schedule)


def seconds_until(text: str | None, now: datetime) -> float | None:
    return None if text is None else max(0.0, (_utc(text) - now.astimezone(UTC)).total_seconds())
