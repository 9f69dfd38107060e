"""The reconciler's clock, and each scheduled job's slots by it.

What time it is for schedules, `--replace`'s run names and when a failed start's restart is
due (plans/jobstatus.py).  `RECONCILER_NOW` (ISO 8601 with a zone, e.g. `2026-12-01T01:59:58Z`)
starts this clock at that instant, from where it runs at the real pace: a test, or a rehearsal
of a schedule, reaches a cron slot (or a restart's time) without waiting for the wall clock.
Read here and nowhere else.

Each scheduled job's slots as of one instant: the latest due and the next.  cronsim reads the
five-field expression (a macro such as `@daily` as the five fields it stands for,
`specs/fields.cron_fields`) in the job's time zone the way Debian's cron does when the clock
changes: an expression naming a fixed minute and hour runs a wall time that occurs twice
(autumn) at its first occurrence only, and one that does not occur (spring) at the first
instant after the gap; an expression with `*` in its minute or hour follows the clock, so
every instant whose wall time matches is a slot.  Slots are kept and compared as UTC instants:
two wall times may name one instant, and one wall time two.
"""

from __future__ import annotations

import dataclasses
import itertools
import os
import time
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from cronsim import CronSim

from reconciler.common.errors import UserError
from reconciler.plans.changes import DesiredJob, Slot
from reconciler.specs.fields import cron_fields

NOW_ENV = "RECONCILER_NOW"
_started: dict[str, tuple[float, datetime]] = {}  # env value → (monotonic, the instant it named)


def now() -> datetime:
    """The current time, aware, in UTC."""
    given = os.environ.get(NOW_ENV)
    if not given:
        return datetime.now(UTC)
    if given not in _started:
        _started[given] = (time.monotonic(), _parse(given))
    began, instant = _started[given]
    return instant + timedelta(seconds=time.monotonic() - began)


def _parse(value: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        parsed = None
    if parsed is None or parsed.tzinfo is None:
        raise UserError(
            f"${NOW_ENV}: {value[:40]!r} is not an ISO 8601 time with a zone, e.g. 2026-12-01T02:00:00Z"
        )
    return parsed.astimezone(UTC)


# Slots between the wall-clock latest and `now` (a repeated hour holds at most 60 for a
# five-field expression); more means an expression cronsim reads in a way not foreseen here.
_MAX_CATCH_UP = 1000


def at_time(desired: Mapping[str, DesiredJob], now: datetime) -> dict[str, DesiredJob]:
    """The desired jobs with their schedules evaluated at `now`."""
    return {
        name: dataclasses.replace(job, schedule=slots_at(job.schedule, now)) if job.schedule else job
        for name, job in desired.items()
    }


def slots_at(slot: Slot, now: datetime) -> Slot:
    """`due`: the latest slot at or before `now`; `next`: the first after it (UTC instants)."""
    zone = ZoneInfo(slot.timezone)
    now = now.astimezone(UTC)
    due = _latest_by_wall_clock(slot.expression, now.astimezone(zone))
    upcoming = None
    # Forward from there, instant by instant: in a repeated hour a slot whose wall time is
    # still ahead of the clock may already be past (its first occurrence), and is the latest.
    start = due.astimezone(zone) if due is not None else now.astimezone(zone)
    for found in itertools.islice(CronSim(cron_fields(slot.expression), start), _MAX_CATCH_UP):
        instant = found.astimezone(UTC)
        if instant > now:
            upcoming = instant
            break
        if due is None or instant > due:
            due = instant
    return dataclasses.replace(slot, now=now, due=due, next=upcoming)


def _latest_by_wall_clock(expression: str, local: datetime) -> datetime | None:
    """The slot with the latest wall time at or before `local`'s: reverse iteration starts one
    tick before its start.  Not always the latest instant (see slots_at)."""
    start = local.replace(microsecond=0) + timedelta(seconds=1)
    found = next(CronSim(cron_fields(expression), start, reverse=True), None)
    return found.astimezone(UTC) if found is not None else None


def seconds_until_next(desired: Mapping[str, DesiredJob], now: datetime) -> float | None:
    """Until the earliest next slot of any scheduled, unsuspended job; None without one."""
    waits = [
        (upcoming - now).total_seconds()
        for job in desired.values()
        if job.schedule and not job.suspend and (upcoming := slots_at(job.schedule, now).next) is not None
    ]
    return max(min(waits), 0.0) if waits else None
