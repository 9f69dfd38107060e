"""Delivering notifications: the outbox in the state, rounds of deliveries, and a CLI run's share.

The outbox: events are added after a pass and taken out once delivered.  Each change is a
short read-modify-write under the owner's writer lock of the state backend (the file, or the
database), never holding it across a send.

A round of deliveries sends every notice that is due, to every channel still owed it; the
daemon's announcer thread and CLI runs use it. A failed send is logged and retried later with
backoff (the outbox keeps when); nothing here raises into a pass. Each send is bounded as a
whole (send.py); a round given a deadline starts no send past it, and what it did not send
stays in the outbox as it was.

After a CLI run's pass (`announce`): the pass's events into the outbox, then what is due sent.
A CLI run spends at most its `NotifyBudget` on notifications, all rounds together (10 s): each
send is cut off at the budget's end, none starts after it, and waiting for a retry
(`patience`, a few seconds) comes out of it too. What is still owed stays in the outbox for
the next run or the daemon. Nothing here fails the command.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterator, Mapping

import httpx

from reconciler.common.errors import ReconcilerError
from reconciler.engine.converge import utc_now
from reconciler.engine.events import EventLog
from reconciler.engine.notify.detect import detect, retry_in, settled
from reconciler.engine.notify.send import CLIENT_LIMITS, SEND_SECONDS, Channel, channel, deliver
from reconciler.engine.workspace import Workspace, open_state
from reconciler.specs.models import NotificationSpec
from reconciler.state.backend import StateBackend
from reconciler.state.model import Notice, State

# Opens the state backend for one read-modify-write (engine/workspace.open_state, or the daemon's).
OpenState = Callable[[], contextlib.AbstractContextManager[StateBackend]]


def enqueue(
    open_state: OpenState, notifications: Mapping[str, NotificationSpec], now: str, command: str
) -> tuple[State, int]:
    """The state with this pass's events added; and how many old ones the bound dropped."""
    with open_state() as backend:
        current = backend.read()
        if not notifications and current.notices is None:
            return current, 0  # the common case: no Notification, nothing to lock or write
        with backend.writer_lock(command):
            state = backend.read()
            updated, dropped = detect(state, notifications, now)
            if updated is not state:
                updated = backend.write(updated)
    return updated, dropped


def settle(
    open_state: OpenState, results: Mapping[tuple[str, str], bool], known: set[str], now: float, command: str
) -> State:
    with open_state() as backend, backend.writer_lock(command):
        state = backend.read()
        updated = settled(state, results, known, now)
        return backend.write(updated) if updated is not state else state


def current(open_state: OpenState) -> State:
    with open_state() as backend:
        return backend.read()


Counted = Callable[[str, bool], None]  # (channel, delivered)


class Courier:
    def __init__(
        self, open_state: OpenState, command: str, source: str, log: EventLog, counted: Counted | None = None
    ) -> None:
        self.open_state, self.command, self.source, self.log = open_state, command, source, log
        self.counted = counted or (lambda name, ok: None)
        self.client = httpx.Client(timeout=SEND_SECONDS, limits=CLIENT_LIMITS, follow_redirects=False)
        self.unsettled: dict[tuple[str, str], bool] = {}  # sent, but not yet recorded in the state

    def close(self) -> None:
        self.client.close()

    def round(
        self,
        notifications: Mapping[str, NotificationSpec],
        env: Mapping[str, str],
        ends_at: float | None = None,
    ) -> float | None:
        """Sends what is due, none starting past `ends_at` (monotonic); returns when the next send
        is due (unix time), None when nothing is owed."""
        state = current(self.open_state)
        outbox = state.notices.outbox if state.notices else ()
        now, results = time.time(), dict(self.unsettled)
        channels: dict[str, Channel | str] = {}
        for notice, name in self._owed(outbox, notifications, now, set(results)):
            if ends_at is not None and time.monotonic() >= ends_at:
                break
            target = channels.get(name) or self._channel(name, notifications[name], env)
            channels[name] = target
            results[(notice.id, name)] = self._send(target, notice, ends_at)
        if results:
            self.unsettled = results
            after = settle(self.open_state, results, set(notifications), time.time(), self.command)
            self.unsettled = {}
            self._report_given_up(outbox, after.notices.outbox if after.notices else (), results)
            outbox = after.notices.outbox if after.notices else ()
        return min((n.next_attempt for n in outbox), default=None)

    @staticmethod
    def _owed(
        outbox: tuple[Notice, ...],
        notifications: Mapping[str, NotificationSpec],
        now: float,
        done: set[tuple[str, str]],
    ) -> Iterator[tuple[Notice, str]]:
        for notice in outbox:
            for name in notice.to if notice.next_attempt <= now else ():
                if (notice.id, name) not in done and name in notifications:
                    yield notice, name

    def _channel(self, name: str, spec: NotificationSpec, env: Mapping[str, str]) -> Channel | str:
        try:
            return channel(name, spec, env)
        except ReconcilerError as error:
            return str(error)

    def _send(self, target: Channel | str, notice: Notice, ends_at: float | None) -> bool:
        if isinstance(target, str):  # a variable missing: the channel's own problem, said each try
            self.log.error(
                "notify_failed", f"{notice.job}: {notice.event} not sent: {target}", job=notice.job
            )
            return False
        own = time.monotonic() + SEND_SECONDS
        if ends_at is not None and ends_at < own:
            reason = deliver(self.client, target, notice, self.source, ends_at, "by this run's deadline")
        else:
            reason = deliver(self.client, target, notice, self.source, own, f"within {SEND_SECONDS:g}s")
        self.counted(target.name, reason is None)
        if reason is None:
            message = f"{notice.job}: {notice.event} sent to notification {target.name}"
            self.log.info("notified", message, job=notice.job, notification=target.name, id=notice.id)
            return True
        wait = retry_in(notice.attempts + 1)
        message = (
            f"{notice.job}: {notice.event} not sent to notification {target.name}: {reason}; "
            f"retrying in {wait:g}s"
        )
        self.log.warning("notify_failed", message, job=notice.job, notification=target.name, id=notice.id)
        return False

    def _report_given_up(
        self, before: tuple[Notice, ...], after: tuple[Notice, ...], results: Mapping[tuple[str, str], bool]
    ) -> None:
        left = {n.id for n in after}
        for notice in before:
            failed = [name for name in notice.to if results.get((notice.id, name)) is False]
            if notice.id not in left and failed:
                tries = notice.attempts + 1
                message = f"{notice.job}: {notice.event} dropped after {tries} tries to {', '.join(failed)}"
                self.log.error("notify_dropped", message, job=notice.job)


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
