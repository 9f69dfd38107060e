"""Where the file watcher, the signal handlers and the clock meet the daemon's loop."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass


@dataclass(frozen=True)
class Wake:
    files: bool
    stopped: bool
    refresh: bool = False  # a webhook said a batch of ours changed


class Waker:
    """Any number of file changes between two waits make one wake-up; a stop ends every wait."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._files = False
        self._refresh = False
        self.stop_reason: str | None = None

    def files_changed(self) -> None:
        with self._cond:
            self._files = True
            self._cond.notify_all()

    def refresh(self) -> None:
        with self._cond:
            self._refresh = True
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
            files, refresh, self._files, self._refresh = self._files, self._refresh, False, False
            return Wake(files, self.stop_reason is not None, refresh)
