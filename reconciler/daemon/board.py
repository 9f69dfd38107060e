"""What the dashboard shows and the webhooks check against: the loop's latest word, in memory.

The loop publishes after every load and pass; HTTP threads only read. Each publish bumps a
version, which Server-Sent Events streams wait on, so a page updates as soon as a pass ends.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from reconciler.plans.changes import Slot
from reconciler.state.model import State


@dataclass(frozen=True)
class LastPass:
    number: int
    at: float
    result: str  # ok, degraded, failed
    errors: tuple[str, ...] = ()


@dataclass(frozen=True)
class Snapshot:
    version: int = 0
    state: State | None = None
    last_pass: LastPass | None = None
    next_pass_at: float | None = None
    problems: tuple[str, ...] = ()  # spec problems of the last load
    webhooks: tuple[str, ...] = ()  # providers whose webhooks are taken
    notifications: tuple[str, ...] = ()
    schedules: Mapping[str, Slot] = field(default_factory=dict)  # job → its schedule, as specced
    started: float = field(default_factory=time.time)

    def batch_ids(self) -> frozenset[str]:
        if self.state is None:
            return frozenset()
        return frozenset(b.batch_id for job in self.state.jobs.values() for b in job.batches)


class Board:
    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._snapshot = Snapshot()
        self.closed = False

    def publish(self, **changes: Any) -> None:
        with self._cond:
            self._snapshot = replace(self._snapshot, version=self._snapshot.version + 1, **changes)
            self._cond.notify_all()

    def snapshot(self) -> Snapshot:
        with self._cond:
            return self._snapshot

    def wait_newer(self, version: int, timeout: float) -> Snapshot:
        """The snapshot once its version is not `version`, or after `timeout` (or on close) as it is."""
        with self._cond:
            self._cond.wait_for(lambda: self._snapshot.version != version or self.closed, timeout)
            return self._snapshot

    def close(self) -> None:
        with self._cond:
            self.closed = True
            self._cond.notify_all()
