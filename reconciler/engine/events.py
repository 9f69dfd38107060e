"""The event log of the daemon and of `reconcile --wait`: a human line or a JSON object per event.

Every message is built from data that is already safe to show (job names, batch and file
ids, statuses, and API errors that the client has scrubbed of credentials); nothing here
ever formats a header, a Provider document or the environment.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any, TextIO

LOG_FORMATS = ("text", "json")
LEVELS = ("info", "warning", "error")


class EventLog:
    def __init__(self, fmt: str = "text", stream: TextIO | None = None) -> None:
        self._json = fmt == "json"
        self._stream = stream or sys.stderr
        self._lock = threading.Lock()  # the loop, the file watcher and signal handling all log
        self.context: dict[str, Any] = {}  # added to every JSON record, e.g. the pass number

    def info(self, event: str, message: str, **fields: Any) -> None:
        self.emit("info", event, message, **fields)

    def warning(self, event: str, message: str, **fields: Any) -> None:
        self.emit("warning", event, message, **fields)

    def error(self, event: str, message: str, **fields: Any) -> None:
        self.emit("error", event, message, **fields)

    def emit(self, level: str, event: str, message: str, **fields: Any) -> None:
        stamp = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        if self._json:
            record = {"ts": stamp, "level": level, "event": event, **self.context, **_present(fields)}
            record["message"] = message
            line = json.dumps(record, default=str, ensure_ascii=False)
        else:
            prefix = "" if level == "info" else f"{level}: "
            line = f"{stamp} {prefix}{message}"
        with self._lock:
            try:
                self._stream.write(line + "\n")
                self._stream.flush()
            except (OSError, ValueError):  # stderr gone (closed pipe): the loop must keep running
                pass


def _present(fields: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in fields.items() if value is not None}


class _Forward(logging.Handler):
    def __init__(self, log: EventLog) -> None:
        super().__init__(logging.WARNING)
        self._log = log

    def emit(self, record: logging.LogRecord) -> None:
        self._log.warning("warning", record.getMessage())


@contextlib.contextmanager
def warnings_to(log: EventLog) -> Iterator[None]:
    """Warnings of the `reconciler` logger (a skipped foreign batch) go to this event log
    instead of the CLI's stderr, for as long as the block runs."""
    logger = logging.getLogger("reconciler")
    before = list(logger.handlers)
    logger.handlers = [_Forward(log)]
    try:
        yield
    finally:
        logger.handlers = before
