"""A round of deliveries: every notice that is due, to every channel still owed it.

Used by the daemon's announcer thread and by CLI runs. A failed send is logged and retried
later with backoff (the outbox keeps when); nothing here raises into a pass. Each send is
bounded as a whole (send.py); a round given a deadline starts no send past it, and what it
did not send stays in the outbox as it was.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping

import httpx

from reconciler.common.errors import ReconcilerError
from reconciler.engine.events import EventLog
from reconciler.engine.notify.detect import retry_in
from reconciler.engine.notify.outbox import OpenState, current, settle
from reconciler.engine.notify.send import CLIENT_LIMITS, SEND_SECONDS, Channel, channel, deliver
from reconciler.specs.models import NotificationSpec
from reconciler.state.model import Notice

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
