"""The daemon's notifications: after each pass the loop adds its events to the outbox (a short
locked write); this thread sends them, so a slow or hanging channel never holds up a pass.

On start it sends what a crash or a stop left in the outbox; after a failed send it wakes
when the backoff is over, even if no pass runs.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Mapping

from reconciler.common.errors import ReconcilerError
from reconciler.daemon.metrics import Metrics
from reconciler.engine.converge import utc_now
from reconciler.engine.events import EventLog
from reconciler.engine.notify.courier import Courier, OpenState, enqueue, source_of
from reconciler.specs.loader import LoadedNotification
from reconciler.specs.models import NotificationSpec

COMMAND = "reconciler reconcile --watch"
RETRY_AFTER_ERROR_SECONDS = 5.0


class Announcer:
    def __init__(self, open_state: OpenState, owner_tag: str, log: EventLog, metrics: Metrics) -> None:
        self.log, self.metrics = log, metrics
        self.courier = Courier(open_state, COMMAND, source_of(owner_tag), log, self._count)
        self._notifications: Mapping[str, NotificationSpec] = {}
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="announcer", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def follow(self, notifications: Mapping[str, LoadedNotification]) -> None:
        """The Notifications of the latest load (replaced whole: the thread reads it unlocked)."""
        self._notifications = {name: told.notification.spec for name, told in notifications.items()}

    def after_pass(self) -> None:
        """On the loop's thread, after a successful pass: the pass's events into the outbox."""
        try:
            _, dropped = enqueue(self.courier.open_state, self._notifications, utc_now(), COMMAND)
        except ReconcilerError as error:  # e.g. a CLI run holds the lock: the next pass finds them
            self.log.warning("notify_failed", f"events not recorded this pass: {'; '.join(error.lines())}")
            return
        if dropped:
            self.log.error("notify_dropped", f"the outbox is full: {dropped} oldest events dropped")
        self._wake.set()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=2.0)
        self.courier.close()

    def _run(self) -> None:
        due: float | None = 0.0  # look at the outbox once at start: a crash may have left some
        while not self._stop.is_set():
            self._wake.wait(None if due is None else max(due - time.time(), 0.0))
            self._wake.clear()
            if self._stop.is_set():
                return
            try:
                due = self.courier.round(self._notifications, os.environ) if self._notifications else None
            except Exception as error:  # the lock held by a CLI run, a damaged state, a bug: try again
                lines = (
                    error.lines()
                    if isinstance(error, ReconcilerError)
                    else [f"{type(error).__name__}: {error}"]
                )
                self.log.warning("notify_failed", f"notifications not sent: {'; '.join(lines)}")
                due = time.time() + RETRY_AFTER_ERROR_SECONDS

    def _count(self, name: str, delivered: bool) -> None:
        counter = self.metrics.notifications_sent if delivered else self.metrics.notifications_failed
        counter.labels(notification=name).inc()
