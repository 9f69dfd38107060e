"""What the loop tells the rest of the daemon after each load and pass: the dashboard's board,
the notification announcer and the webhook inbox. Without them (the defaults) it tells nobody.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable

from reconciler.api.batch import is_terminal
from reconciler.daemon.announcer import Announcer
from reconciler.daemon.board import Board, LastPass
from reconciler.daemon.load import Loaded
from reconciler.daemon.passes import PassResult
from reconciler.daemon.schedule import (
    IDLE,
    Cadence,
    earliest,
    next_poll,
    polled_status,
    watched_statuses,
)
from reconciler.daemon.webhooks import WebhookInbox
from reconciler.engine.apply.failures import describe
from reconciler.state.model import State

# With webhooks, polling is only the safety net for a lost delivery.
WEBHOOK_POLL_FACTOR = 10
OWN_WORK = frozenset({"pending", "collecting"})  # the reconciler's, not the provider's: no webhook says it


class Hooks:
    def __init__(
        self,
        board: Board | None = None,
        announcer: Announcer | None = None,
        inbox: WebhookInbox | None = None,
    ) -> None:
        self.board = board or Board()
        self.announcer, self.inbox = announcer, inbox
        self.covered: tuple[str, ...] = ()  # providers whose webhooks are verified

    def loaded(self, loaded: Loaded) -> None:
        repo = loaded.ws.repo
        if self.announcer is not None:
            self.announcer.follow(repo.notifications)
        if self.inbox is not None:
            self.covered = self.inbox.configure(repo.providers, os.environ)
        self.board.publish(
            problems=tuple(str(p) for p in loaded.problems),
            webhooks=self.covered,
            notifications=tuple(sorted(repo.notifications)),
            schedules={name: job.schedule for name, job in loaded.ws.desired.items() if job.schedule},
        )

    def poll(self, state: State, skip: Iterable[str], cadence: Cadence) -> float | None:
        """Seconds until the next resync: jobs on a provider with webhooks only at a long interval."""
        skipped = set(skip)
        hooked = {n for n, j in state.jobs.items() if j.provider in self.covered and n not in skipped}
        plain = next_poll(watched_statuses(state, skip=skipped | hooked), cadence)
        statuses = [
            s
            for n in hooked
            for s in (polled_status(state.jobs[n]), *(b.status for b in state.jobs[n].batches))
        ]
        own = cadence.quick if any(s in OWN_WORK for s in statuses) else None
        running = any(s not in IDLE and not is_terminal(s) for s in statuses)
        return earliest(plain, own, cadence.interval * WEBHOOK_POLL_FACTOR if running else None)

    def passed(self, number: int, result: PassResult, degraded: bool, delay: float | None) -> None:
        errors = [describe(failure) for failure in result.outcome.failures]
        errors += [result.held_back] if result.held_back else []
        now = time.time()
        last = LastPass(number, now, "degraded" if degraded else "ok", tuple(errors))
        self.board.publish(state=result.after, last_pass=last, next_pass_at=_at(now, delay))
        if self.announcer is not None:
            self.announcer.after_pass()

    def failed(self, number: int, message: str, delay: float) -> None:
        now = time.time()
        self.board.publish(last_pass=LastPass(number, now, "failed", (message,)), next_pass_at=now + delay)


def _at(now: float, delay: float | None) -> float | None:
    return None if delay is None else now + delay
