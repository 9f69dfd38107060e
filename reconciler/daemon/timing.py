"""When the daemon looks again, and what wakes it.

Pure functions from what it last saw to the next delay: batches in a short transitional status
(`validating`, `finalizing`, `cancelling`) and jobs the reconciler itself still owes work
(`pending` creates, `collecting` results) are polled fast; long `in_progress` batches at the
interval; finished work not at all, so an idle daemon wakes only for file changes.  The
`Waker` is where the file watcher, the signal handlers and the clock meet the daemon's loop.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from reconciler.api.batch import is_terminal
from reconciler.api.transport import Backoff
from reconciler.plans.jobstatus import attempts_by_part, restart_at, restart_owed
from reconciler.state.model import JobState, State

FAST_POLL_SECONDS = 2.0
SOON = frozenset({"validating", "finalizing", "cancelling", "pending", "collecting"})
IDLE = frozenset({"none"})  # a job with nothing to watch: suspended, or a create that failed (retried apart)

# After a failed pass: 1 s, 2 s, 4 s … up to 5 minutes.
FAILURE_BACKOFF = Backoff(initial=1.0, factor=2.0, cap=300.0)
# A pass holds the owner's writer lock, which another writer waits 5 s for by default: inside a
# request the daemon waits out only a server's short Retry-After.  A longer one ends the
# request (and the pass, or that job's action), and the loop runs the next pass when the wait
# is over: up to an hour on, so a wait of days cannot park the daemon (each look costs one
# request, answered with the wait that is left).
REQUEST_BACKOFF = Backoff(max_retry_after=5.0)
MAX_SCHEDULED_WAIT = 3600.0


@dataclass(frozen=True)
class Cadence:
    interval: float
    fast: float = FAST_POLL_SECONDS

    @property
    def quick(self) -> float:
        return min(self.fast, self.interval)


def next_poll(statuses: Iterable[str], cadence: Cadence) -> float | None:
    """Seconds until the next resync, or None when nothing is running (wait for a file change)."""
    delay: float | None = None
    for status in statuses:
        if status in SOON:
            return cadence.quick
        if status not in IDLE and not is_terminal(status):  # in_progress, or a status we do not know
            delay = cadence.interval
    return delay


def watched_statuses(state: State, skip: Iterable[str] = ()) -> list[str]:
    """Every job's overall status and each of its batches' own (a job's status shows only its
    busiest part, and a part still validating must not wait a whole interval)."""
    skipped = set(skip)
    statuses: list[str] = []
    for name, job in state.jobs.items():
        if name in skipped:
            continue
        statuses.append(polled_status(job))
        statuses.extend(record.status for record in job.batches)
    return statuses


def polled_status(job: JobState) -> str:
    """A job's status as polling sees it: `pending` without a create intent is a failed start
    whose restart waits its time (plans/jobstatus.py); nothing to poll for, `restart_wait` wakes
    the daemon when it is due."""
    return "none" if job.status == "pending" and not job.pending else job.status


def restart_wait(state: State, now: float) -> float | None:
    """Seconds until the first restart of a failed start is due; None when none is owed."""
    due = [
        restart_at(attempts)
        for job in state.jobs.values()
        if job.status == "pending" and not job.pending
        for attempts in attempts_by_part(job.batches).values()
        if restart_owed(attempts)
    ]
    return max(min(due) - now, 0.0) if due else None


def retry_delay(
    failures: int, retry_after: float | None, rng: random.Random, cap: float | None = None
) -> float:
    """After `failures` consecutive failures (≥ 1): capped, jittered; a server's wait wins (up to
    MAX_SCHEDULED_WAIT), whatever `cap` says."""
    if retry_after is not None and retry_after > 0:
        return min(retry_after, MAX_SCHEDULED_WAIT)
    delay = FAILURE_BACKOFF.delay(max(failures, 1), None, rng)
    return delay if cap is None else min(delay, cap)


def earliest(*delays: float | None) -> float | None:
    present = [d for d in delays if d is not None]
    return min(present) if present else None


@dataclass(frozen=True)
class Wake:
    files: bool
    stopped: bool
    refresh: bool = False  # a webhook said a batch of ours changed
    paths: frozenset[Path] | None = frozenset()  # the files that changed; None: any may have
    batches: frozenset[str] = frozenset()  # the batches webhooks named


class Waker:
    """Any number of file changes between two waits make one wake-up; a stop ends every wait.
    It keeps which files changed, which batches webhooks named, and when a file last changed."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._files = False
        self._paths: set[Path] | None = set()
        self._refresh = False
        self._batches: set[str] = set()
        self.last_file_event = 0.0  # time.monotonic() of the latest file change
        self.stop_reason: str | None = None

    def files_changed(self, paths: Iterable[Path] | None = None) -> None:
        """`paths`: the files that changed; None when any may have (a reload asked for)."""
        with self._cond:
            self._files = True
            if paths is None or self._paths is None:
                self._paths = None
            else:
                self._paths.update(paths)
            self.last_file_event = time.monotonic()
            self._cond.notify_all()

    def refresh(self, batch: str | None = None) -> None:
        with self._cond:
            self._refresh = True
            if batch is not None:
                self._batches.add(batch)
            self._cond.notify_all()

    def stop(self, reason: str) -> None:
        with self._cond:
            self.stop_reason = self.stop_reason or reason
            self._cond.notify_all()

    def wait(self, timeout: float | None) -> Wake:
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while not self._files and not self._refresh and self.stop_reason is None:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    break
                self._cond.wait(remaining)
            paths = None if self._paths is None else frozenset(self._paths)
            wake = Wake(
                self._files, self.stop_reason is not None, self._refresh, paths, frozenset(self._batches)
            )
            self._files, self._refresh, self._paths, self._batches = False, False, set(), set()
            return wake
