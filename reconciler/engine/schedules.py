"""Each scheduled job's slots as of one instant: the latest due and the next (cronsim reads the
five-field expression in the job's time zone, daylight saving time included)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from cronsim import CronSim

from reconciler.plans.changes import DesiredJob, Slot


def at_time(desired: Mapping[str, DesiredJob], now: datetime) -> dict[str, DesiredJob]:
    """The desired jobs with their schedules evaluated at `now`."""
    return {
        name: dataclasses.replace(job, schedule=slots_at(job.schedule, now)) if job.schedule else job
        for name, job in desired.items()
    }


def slots_at(slot: Slot, now: datetime) -> Slot:
    local = now.astimezone(ZoneInfo(slot.timezone))
    # The latest slot at or before `now`: reverse iteration starts one tick before its start.
    due = next(
        CronSim(slot.expression, local.replace(microsecond=0) + timedelta(seconds=1), reverse=True), None
    )
    upcoming = next(CronSim(slot.expression, local), None)
    return dataclasses.replace(slot, now=now, due=due, next=upcoming)


def seconds_until_next(desired: Mapping[str, DesiredJob], now: datetime) -> float | None:
    """Until the earliest next slot of any scheduled, unsuspended job; None without one."""
    waits = [
        (upcoming - now).total_seconds()
        for job in desired.values()
        if job.schedule and not job.suspend and (upcoming := slots_at(job.schedule, now).next) is not None
    ]
    return max(min(waits), 0.0) if waits else None
