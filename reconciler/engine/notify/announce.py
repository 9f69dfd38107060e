"""Notifications after a CLI run's pass: the pass's events into the outbox, then what is due sent.

A CLI run spends at most its `NotifyBudget` on notifications, all rounds together (10 s):
each send is cut off at the budget's end, none starts after it, and waiting for a retry
(`patience`, a few seconds) comes out of it too. What is still owed stays in the outbox for
the next run or the daemon. Nothing here fails the command.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator

from reconciler.common.errors import ReconcilerError
from reconciler.engine.events import EventLog
from reconciler.engine.notify.courier import Courier
from reconciler.engine.notify.outbox import current, enqueue
from reconciler.engine.passes import utc_now
from reconciler.engine.workspace import Workspace, open_state

CLI_PATIENCE_SECONDS = 3.0
CLI_NOTIFY_SECONDS = 10.0  # a stalled channel delays a CI job by this much at most


class NotifyBudget:
    """The time one CLI run may spend on notifications, over every `announce` of the run."""

    def __init__(self, seconds: float = CLI_NOTIFY_SECONDS) -> None:
        self.seconds = self.remaining = seconds
        self.spent_said = False

    @contextlib.contextmanager
    def spending(self) -> Iterator[float]:
        """Yields when the budget ends (monotonic); what the block took is taken off it."""
        started = time.monotonic()
        try:
            yield started + self.remaining
        finally:
            self.remaining = max(0.0, self.remaining - (time.monotonic() - started))


def source_of(owner_tag: str) -> str:
    """The CloudEvents `source`: one per owner, so two teams' events never share ids."""
    return f"urn:reconciler:{owner_tag}"


def announce(
    ws: Workspace,
    log: EventLog,
    command: str,
    budget: NotifyBudget,
    *,
    patience: float = CLI_PATIENCE_SECONDS,
) -> None:
    notifications = {name: told.notification.spec for name, told in ws.repo.notifications.items()}
    courier: Courier | None = None
    with budget.spending() as ends_at:
        try:
            _, dropped = enqueue(lambda: open_state(ws), notifications, utc_now(), command)
            if dropped:
                log.error("notify_dropped", f"the outbox is full: {dropped} oldest events dropped")
            if not notifications:
                return
            courier = Courier(lambda: open_state(ws), command, source_of(ws.owner_tag), log)
            patient_until = min(time.monotonic() + patience, ends_at)
            while (due := courier.round(notifications, os.environ, ends_at)) is not None:
                if time.monotonic() >= ends_at:
                    _say_spent(ws, log, budget)
                    return
                wait = due - time.time()
                if time.monotonic() + wait > patient_until:
                    return
                time.sleep(max(wait, 0.0))
        except ReconcilerError as error:
            log.warning("notify_failed", f"notifications not sent this time: {'; '.join(error.lines())}")
        finally:
            if courier is not None:
                courier.close()


def _say_spent(ws: Workspace, log: EventLog, budget: NotifyBudget) -> None:
    if budget.spent_said:
        return
    budget.spent_said = True
    state = current(lambda: open_state(ws))
    owed = len(state.notices.outbox) if state.notices else 0
    log.warning(
        "notify_deferred",
        f"notifications: this run's {budget.seconds:g}s for them are spent; {owed} left in the outbox "
        "for the next run or the daemon",
    )
