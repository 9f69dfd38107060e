"""Notifications after a CLI run's pass: the pass's events into the outbox, then what is due sent.

A CLI run waits for its channels a few seconds at most (`patience`, one retry); what is still
owed stays in the outbox for the next run or the daemon. Nothing here fails the command.
"""

from __future__ import annotations

import os
import time

from reconciler.common.errors import ReconcilerError
from reconciler.engine.events import EventLog
from reconciler.engine.notify.courier import Courier
from reconciler.engine.notify.outbox import enqueue
from reconciler.engine.passes import utc_now
from reconciler.engine.workspace import Workspace, open_state

CLI_PATIENCE_SECONDS = 3.0


def source_of(owner_tag: str) -> str:
    """The CloudEvents `source`: one per owner, so two teams' events never share ids."""
    return f"urn:reconciler:{owner_tag}"


def announce(ws: Workspace, log: EventLog, command: str, *, patience: float = CLI_PATIENCE_SECONDS) -> None:
    notifications = {name: told.notification.spec for name, told in ws.repo.notifications.items()}
    deadline = time.monotonic() + patience
    courier: Courier | None = None
    try:
        _, dropped = enqueue(lambda: open_state(ws), notifications, utc_now(), command)
        if dropped:
            log.error("notify_dropped", f"the outbox is full: {dropped} oldest events dropped")
        if not notifications:
            return
        courier = Courier(lambda: open_state(ws), command, source_of(ws.owner_tag), log)
        while (due := courier.round(notifications, os.environ)) is not None:
            wait = due - time.time()
            if time.monotonic() + wait > deadline:
                return
            time.sleep(max(wait, 0.0))
    except ReconcilerError as error:
        log.warning("notify_failed", f"notifications not sent this time: {'; '.join(error.lines())}")
    finally:
        if courier is not None:
            courier.close()
