"""`reconciler status JOB`: one job in detail, a line per batch with its files."""

from __future__ import annotations

import time

from reconciler.cli.render_status import first_errors, results_cell, sync
from reconciler.cli.status_view import StatusView
from reconciler.common.errors import UserError
from reconciler.plans.status import duration, job_progress
from reconciler.state.model import BatchRecord, JobState

BATCH_COLUMNS = ("BATCH", "PART", "ATTEMPT", "STATUS", "DONE/FAILED/TOTAL", "OUTPUT", "ERRORS")


def status_detail(view: StatusView, name: str, now: float) -> str:
    job = view.state.jobs.get(name)
    if job is None:
        known = sorted(set(view.state.jobs) | set(view.desired or {}))
        if name in known:
            return f"{name}: no batch yet ({sync(view, name)})"
        raise UserError(f"no job {name!r} in the state or the specs; known: {', '.join(known) or 'none'}")
    figures = job_progress(job, now)
    lines = [
        f"{name}: {job.status}, {sync(view, name)}",
        f"  provider     {job.provider}, generation {job.generation}",
        f"  observed     {job.observed_at or '-'}",
        f"  requests     {figures.done - figures.failed} done, {figures.failed} failed, "
        f"{figures.total} total",
    ]
    if figures.per_minute is not None:
        eta = duration(figures.eta_seconds) if figures.eta_seconds is not None else "-"
        lines.append(f"  rate         {figures.per_minute:,.0f} requests/min, about {eta} to go")
    if job.results is not None:
        lines.append(f"  results      {results_cell(view, name, job)}, sha256 {job.results.sha256}")
        if job.results.lost:
            lines.append(f"  results lost {job.results.lost}")
    lines += [f"  pending      create {p.attempt} (part {p.part}, attempt {p.retry})" for p in job.pending]
    lines += ["", *_batch_table(job)] if job.batches else []
    lines += [f"  {line}" for line in first_errors(job)]
    lines += ["", *history_table(job)]
    return "\n".join(lines)


def _batch_table(job: JobState) -> list[str]:
    rows = [_batch_row(b, set(job.deleted_files)) for b in job.batches]
    widths = [max(len(r[i]) for r in [BATCH_COLUMNS, *rows]) for i in range(len(BATCH_COLUMNS))]
    return [
        "  " + "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
        for r in [BATCH_COLUMNS, *rows]
    ]


def _batch_row(batch: BatchRecord, deleted: set[str]) -> tuple[str, ...]:
    counts = batch.request_counts or {}
    return (
        batch.batch_id,
        str(batch.part),
        str(batch.retry),
        batch.status,
        f"{counts.get('completed', 0)}/{counts.get('failed', 0)}/{counts.get('total', 0)}",
        file_cell(batch.output_file_id, deleted),
        file_cell(batch.error_file_id, deleted),
    )


def file_cell(file_id: str | None, deleted: set[str]) -> str:
    if not file_id:
        return "-"
    return f"{file_id} (deleted)" if file_id in deleted else file_id


HISTORY_COLUMNS = ("RUN", "STATUS", "DONE/FAILED/TOTAL", "STARTED", "ENDED", "BATCHES", "RESULTS", "COST")


def history_table(job: JobState) -> list[str]:
    """The job's runs, newest first."""
    if not job.history:
        return ["No runs recorded yet."]
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
            f"${record.cost_usd:.6g}" if record.cost_usd is not None else "-",
        )
        for record in job.history
    ]
    widths = [max(len(r[i]) for r in [HISTORY_COLUMNS, *rows]) for i in range(len(HISTORY_COLUMNS))]
    lines = ["Runs (newest first, at most the spec's history_limit):"]
    for row in [HISTORY_COLUMNS, *rows]:
        lines.append("  " + "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    return lines


def _counts(counts: dict[str, int]) -> str:
    return f"{counts.get('completed', 0)}/{counts.get('failed', 0)}/{counts.get('total', 0)}"


def _when(stamp: int | None) -> str:
    if stamp is None:
        return "-"
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(stamp))
