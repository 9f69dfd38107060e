"""The state file as a table (`reconciler status`) and as JSON."""

from __future__ import annotations

import json
import time
from typing import Any

import click

from reconciler.state.model import JobState, State

STATUS_COLOURS = {
    "completed": "green",
    "failed": "red",
    "expired": "red",
    "cancelled": "yellow",
    "cancelling": "yellow",
}
COLUMNS = ("JOB", "STATUS", "DONE/FAILED/TOTAL", "AGE", "BATCH", "OUTPUT", "ERRORS")
MAX_ERRORS_SHOWN = 3


def status_table(state: State, *, colour: bool, now: float | None = None) -> str:
    if not state.jobs:
        return "No jobs in the state yet: run `reconciler plan`, then `reconciler apply`."
    now = time.time() if now is None else now
    rows = [_row(name, job, now) for name, job in state.jobs.items()]
    widths = [max(len(r[i]) for r in [COLUMNS, *rows]) for i in range(len(COLUMNS))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(COLUMNS, widths, strict=True)).rstrip()]
    for job, row in zip(state.jobs.values(), rows, strict=True):
        cells = [c.ljust(w) for c, w in zip(row, widths, strict=True)]
        if colour and job.status in STATUS_COLOURS:
            cells[1] = click.style(cells[1], fg=STATUS_COLOURS[job.status])
        lines.append("  ".join(cells).rstrip())
        lines.extend(f"    {line}" for line in _first_errors(job))
    return "\n".join(lines)


def _row(name: str, job: JobState, now: float) -> tuple[str, ...]:
    counts = job.request_counts
    created = [b.created_at for b in job.batches if b.created_at]
    latest = job.batches[-1] if job.batches else None
    return (
        name,
        job.status,
        f"{counts.get('completed', 0)}/{counts.get('failed', 0)}/{counts.get('total', 0)}",
        _age(now - min(created)) if created else "-",
        ", ".join(b.batch_id for b in job.batches)
        or (f"pending {', '.join(p.attempt for p in job.pending)}" if job.pending else "-"),
        (latest.output_file_id if latest else None) or "-",
        (latest.error_file_id if latest else None) or "-",
    )


def _first_errors(job: JobState) -> list[str]:
    lines: list[str] = []
    for batch in job.batches:
        for error in ((batch.errors or {}).get("data") or [])[:MAX_ERRORS_SHOWN]:
            if isinstance(error, dict):
                line = f" line {error['line']}" if error.get("line") else ""
                lines.append(f"{batch.batch_id}{line}: {error.get('code')}: {error.get('message')}")
    return lines


def _age(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{int(seconds // size)}{unit}"
    return f"{max(int(seconds), 0)}s"


def status_json(state: State) -> str:
    document: dict[str, Any] = state.model_dump(mode="json")
    return json.dumps(document, indent=2, sort_keys=True)


HISTORY_COLUMNS = ("RUN", "STATUS", "DONE/FAILED/TOTAL", "STARTED", "ENDED", "BATCHES", "RESULTS")


def job_detail(name: str, job: JobState, *, colour: bool) -> str:
    """`status JOB`: the job's row, then its runs, newest first."""
    lines = [status_table(State(lineage="-", jobs={name: job}), colour=colour), ""]
    if not job.history:
        return "\n".join([*lines, "No runs recorded yet."])
    rows = [
        (
            record.run
            + (" (current)" if record.run == job.run and record.generation == job.generation else ""),
            record.status,
            _counts(record.request_counts),
            _when(record.started_at),
            _when(record.ended_at),
            str(len(record.batches)),
            record.results or "-",
        )
        for record in job.history
    ]
    widths = [max(len(r[i]) for r in [HISTORY_COLUMNS, *rows]) for i in range(len(HISTORY_COLUMNS))]
    lines.append("Runs (newest first, at most the spec's history_limit):")
    for row in [HISTORY_COLUMNS, *rows]:
        lines.append("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    return "\n".join(lines)


def _counts(counts: dict[str, int]) -> str:
    return f"{counts.get('completed', 0)}/{counts.get('failed', 0)}/{counts.get('total', 0)}"


def _when(stamp: int | None) -> str:
    if stamp is None:
        return "-"
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(stamp))
