"""Which events the state shows since the Notifications last looked, and what a send round changed.

Pure: the state in, the state out. An event is found by comparing each job with how it was
last seen (`notices.seen`), and is written to the outbox in the same state write that marks
the job seen: a crash before that write finds the event again; after it, the outbox has it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from fnmatch import fnmatchcase

from reconciler.api.batch import START_FAILURES, is_terminal
from reconciler.specs.models import NotificationSpec
from reconciler.state.model import JobState, Notice, Notices, Seen, State

ANNOUNCED_STATUSES = ("completed", "failed", "expired", "cancelled")
MAX_OUTBOX = 500  # a channel down for days must not grow the state file without end
MAX_ATTEMPTS = 12  # about an hour and a half of backoff (see retry_in)


def detect(state: State, notifications: Mapping[str, NotificationSpec], now: str) -> tuple[State, int]:
    """The state with new events in the outbox and every job marked seen; and how many old
    events were dropped to keep the outbox bounded."""
    if not notifications:  # nobody listens: forget, so a channel added later starts from now
        return (state, 0) if state.notices is None else (state.model_copy(update={"notices": None}), 0)
    seen = {name: _seen(job) for name, job in state.jobs.items()}
    if state.notices is None:  # the first look: what happened before is history, not news
        return state.model_copy(update={"notices": Notices(seen=seen)}), 0
    found: list[Notice] = []
    for name, job in state.jobs.items():
        for event in events_of(state.notices.seen.get(name), job):
            to = tuple(n for n, spec in sorted(notifications.items()) if wants(spec, event, name))
            if to:
                found.append(_notice(name, job, event, to, now))
    if seen == state.notices.seen and not found:
        return state, 0
    outbox = state.notices.outbox + tuple(found)
    dropped = max(0, len(outbox) - MAX_OUTBOX)
    notices = Notices(seen=seen, outbox=outbox[dropped:])
    return state.model_copy(update={"notices": notices}), dropped


def events_of(old: Seen | None, job: JobState) -> list[str]:
    events = []
    was_running = old is not None and old.status != "none" and not is_terminal(old.status)
    if old is not None and old.generation != job.generation and was_running:
        events.append("replaced")
    # A new run of the same generation ends anew: its run tells it from the last one.
    changed = old is None or (old.status, old.generation, old.run) != (job.status, job.generation, job.run)
    if job.status in ANNOUNCED_STATUSES and changed:
        events.append(job.status)
    elif job.status in START_FAILURES and changed:
        # Portkey could not start its batch (the job is `pending` while a restart is owed); once
        # the restarts are spent it ends in that status: a failure, with its status as it came.
        events.append("failed")
    if job.missed_slot is not None and (old is None or old.missed_slot != job.missed_slot):
        events.append("schedule_missed")
    return events


def _seen(job: JobState) -> Seen:
    return Seen(generation=job.generation, status=job.status, run=job.run, missed_slot=job.missed_slot)


def wants(spec: NotificationSpec, event: str, job: str) -> bool:
    return event in spec.events and any(fnmatchcase(job, pattern) for pattern in spec.jobs)


def _notice(name: str, job: JobState, event: str, to: tuple[str, ...], now: str) -> Notice:
    batches = tuple(b.batch_id for b in job.batches)
    key = "\0".join((name, event, job.generation, job.run or "", job.missed_slot or "", job.status, *batches))
    return Notice(
        id="evt_" + hashlib.sha256(key.encode()).hexdigest()[:24],
        event=event,
        job=name,
        at=now,
        status=job.status,
        generation=job.generation,
        request_counts=dict(job.request_counts),
        batches=batches,
        slot=job.missed_slot if event == "schedule_missed" else None,
        to=to,
    )


def settled(state: State, results: Mapping[tuple[str, str], bool], known: set[str], now: float) -> State:
    """The outbox after a send round: `results[(notice id, channel)]` True when delivered.
    Channels no longer defined are dropped; a notice is gone once nobody is owed it."""
    if state.notices is None:
        return state
    outbox = []
    for notice in state.notices.outbox:
        owed = tuple(n for n in notice.to if n in known and not results.get((notice.id, n), False))
        failed = any(results.get((notice.id, n)) is False for n in owed)
        attempts = notice.attempts + 1 if failed else notice.attempts
        if owed and attempts < MAX_ATTEMPTS:
            later = now + retry_in(attempts) if failed else notice.next_attempt
            outbox.append(notice.model_copy(update={"to": owed, "attempts": attempts, "next_attempt": later}))
    if tuple(outbox) == state.notices.outbox:
        return state
    return state.model_copy(update={"notices": state.notices.model_copy(update={"outbox": tuple(outbox)})})


def retry_in(attempts: int) -> float:
    """2 s, 4 s, 8 s … at most 10 minutes between tries."""
    return float(min(600, 2**attempts))
