"""The event log of the daemon and of `reconcile --wait`: a human line or a JSON object per event,
and status transitions as one human line each (`nightly-eval: in_progress → completed (3/3,
output file-…)`).

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

from reconciler.state.model import JobState, State

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


def report_transitions(before: State, after: State, log: EventLog) -> None:
    for name, job in after.jobs.items():
        old = before.jobs.get(name)
        if old is job:  # the very record: nothing to tell
            continue
        _report_results_lost(name, old, job, log)
        was = old.status if old else "none"
        if job.status == was:
            continue
        log.info(
            "transition",
            f"{name}: {was} → {job.status} ({describe(job)})",
            job=name,
            previous=was,
            status=job.status,
            request_counts=job.request_counts,
            batches=[b.batch_id for b in job.batches],
            output_files=[b.output_file_id for b in job.batches if b.output_file_id],
        )


def _report_results_lost(name: str, old: JobState | None, job: JobState, log: EventLog) -> None:
    """Once, when a results file is found gone for good; plan and status keep saying it."""
    lost = job.results.lost if job.results else None
    if lost and not (old and old.results and old.results.lost):
        assert job.results is not None
        log.warning("results_lost", f"{name}: {job.results.path} cannot be written again: {lost}", job=name)


def describe(job: JobState) -> str:
    """`2/3, 1 failed, output file-…` — counts, then where the results are."""
    counts = job.request_counts
    parts = [f"{counts.get('completed', 0)}/{counts.get('total', 0)}"]
    if counts.get("failed"):
        parts.append(f"{counts['failed']} failed")
    outputs = [b.output_file_id for b in job.batches if b.output_file_id]
    if len(outputs) == 1:
        parts.append(f"output {outputs[0]}")
    elif outputs:
        parts.append(f"{len(outputs)} output files")
    first_error = _first_error(job)
    if first_error:
        parts.append(first_error)
    if job.results is not None:
        parts.append(f"results {job.results.path}")
    return ", ".join(parts)


def _first_error(job: JobState) -> str | None:
    """`invalid_json_line at line 2 and 3 more`: why a batch failed validation."""
    errors = [e for b in job.batches for e in ((b.errors or {}).get("data") or []) if isinstance(e, dict)]
    if not errors:
        return None
    first = errors[0]
    where = f" at line {first['line']}" if first.get("line") else ""
    more = f" and {len(errors) - 1} more" if len(errors) > 1 else ""
    return f"{first.get('code', 'error')}{where}{more}"
