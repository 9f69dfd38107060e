"""A job's runs, newest first and bounded: what `status JOB` shows and a lost state regains."""

from __future__ import annotations

from collections.abc import Sequence

from reconciler.api.batch import LiveBatch, is_terminal
from reconciler.plans.jobstatus import job_status, request_counts
from reconciler.state.model import BatchRecord, JobState, RunRecord

ENDED_FIELDS = ("completed_at", "failed_at", "expired_at", "cancelled_at")


def updated_history(job: JobState, live: Sequence[LiveBatch], limit: int) -> tuple[RunRecord, ...]:
    """The recorded runs with those seen live brought up to date; the current run as the job
    itself says it (results and pending creates included)."""
    groups: dict[tuple[str, str], list[BatchRecord]] = {}
    for batch in live:
        key = (batch.run, batch.generation or "")
        groups.setdefault(key, []).append(BatchRecord.from_batch(batch.batch))
    runs = {(r.run, r.generation): r for r in job.history}
    for (run, generation), records in groups.items():
        runs[(run, generation)] = _run_record(run, generation, tuple(records), runs.get((run, generation)))
    if job.run is not None and (job.batches or job.pending):
        key = (job.run, job.generation)
        runs[key] = _current_record(job, runs.get(key))
    ordered = sorted(
        runs.values(), key=lambda r: (r.started_at is None, r.started_at or 0, r.run), reverse=True
    )
    return tuple(ordered[:limit])


def _run_record(
    run: str, generation: str, records: tuple[BatchRecord, ...], before: RunRecord | None
) -> RunRecord:
    status = job_status(records, ())
    return RunRecord(
        run=run,
        generation=generation,
        status=status,
        request_counts=request_counts(records),
        batches=tuple(sorted(r.batch_id for r in records)),
        started_at=_started(records),
        ended_at=_ended(records) if is_terminal(status) else None,
        # What only the state knows of a run (read from its files while it was current) stays.
        results=before.results if before else None,
        usage=before.usage if before else None,
        cost_usd=before.cost_usd if before else None,
    )


def _current_record(job: JobState, before: RunRecord | None) -> RunRecord:
    assert job.run is not None
    return RunRecord(
        run=job.run,
        generation=job.generation,
        status=job.status,
        request_counts=job.request_counts,
        batches=tuple(sorted(b.batch_id for b in job.batches)),
        started_at=_started(job.batches) or (before.started_at if before else None),
        ended_at=_ended(job.batches) if is_terminal(job.status) else None,
        results=job.results.path if job.results else (before.results if before else None),
        usage=job.total_usage if job.usage else (before.usage if before else None),
        cost_usd=job.cost_usd if job.usage else (before.cost_usd if before else None),
    )


def _started(records: Sequence[BatchRecord]) -> int | None:
    created = [r.created_at for r in records if r.created_at]
    return min(created) if created else None


def _ended(records: Sequence[BatchRecord]) -> int | None:
    ends = [getattr(r, name) for r in records for name in ENDED_FIELDS if getattr(r, name)]
    return max(ends) if ends else None
