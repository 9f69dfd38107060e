"""What the state file should say after a pass: pure, from desired jobs and live batches."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from reconciler.api.batch import LiveBatch
from reconciler.plans.changes import DesiredJob
from reconciler.plans.duplicates import split_duplicates
from reconciler.plans.jobstatus import job_status, request_counts
from reconciler.state.model import BatchRecord, JobState, PendingCreate, State


def record(
    desired: Mapping[str, DesiredJob],
    state: State,
    live: Sequence[LiveBatch],
    *,
    forgotten: Iterable[str] = (),
    now: str,
) -> State:
    """The state with every job's batches and status taken from `live`."""
    gone = set(forgotten)
    by_job: dict[str, list[LiveBatch]] = {}
    for batch in live:  # grouped once: scanning every live batch for each job is quadratic
        by_job.setdefault(batch.batch.job or "", []).append(batch)
    jobs: dict[str, JobState] = {}
    for name, previous in state.jobs.items():
        if name not in desired and name not in gone:
            jobs[name] = observed_job(name, previous, by_job.get(name, []), now)
    for name, job in desired.items():
        base = _as_desired(job, state.jobs.get(name))
        jobs[name] = observed_job(name, base, by_job.get(name, []), now, job)
    return state.with_jobs(jobs)


def observed_job(
    name: str, base: JobState, live: Sequence[LiveBatch], now: str, desired: DesiredJob | None = None
) -> JobState:
    # A duplicate of a unit is never recorded, so it is never counted: the oldest speaks for it.
    mine, _ = split_duplicates(
        b
        for b in live
        if b.batch.job == name and b.generation == base.generation and b.provider == base.provider
    )
    mine.sort(key=lambda b: (b.batch.part, b.batch.retry, b.batch.created_at or 0, b.id))
    attempts = {b.batch.attempt for b in mine}
    # An intent is resolved once its batch is live.
    pending = tuple(p for p in base.pending if p.generation == base.generation and p.attempt not in attempts)
    batches = tuple(BatchRecord.from_batch(b.batch) for b in mine)
    results = base.results if base.results and set(base.results.batches) == _ids(batches) else None
    results_due = bool(desired and desired.results_path) and results is None
    return base.model_copy(
        update={
            "status": job_status(batches, pending, results_due=results_due),
            "request_counts": request_counts(batches),
            "batches": batches,
            "pending": pending,
            "results": results,
            "observed_at": now,
        }
    )


def with_pending(
    state: State,
    desired: Mapping[str, DesiredJob],
    intents: Mapping[str, tuple[PendingCreate, ...]],
    now: str,
) -> State:
    """The state with create intents recorded, before any create is sent."""
    jobs = dict(state.jobs)
    for name, pending in intents.items():
        base = _as_desired(desired[name], jobs.get(name))
        keep = tuple(p for p in base.pending if (p.part, p.retry) not in {(i.part, i.retry) for i in pending})
        all_pending = keep + pending
        status = job_status(base.batches, all_pending)
        jobs[name] = base.model_copy(update={"pending": all_pending, "status": status, "observed_at": now})
    return state.with_jobs(jobs)


def _as_desired(job: DesiredJob, previous: JobState | None) -> JobState:
    """The recorded job carried over to the desired generation, provider and policy."""
    policy = "orphan" if job.deletion_policy == "orphan" else "cancel"
    if previous and previous.generation == job.generation and previous.provider == job.provider:
        return previous.model_copy(update={"deletion_policy": policy})
    return JobState(generation=job.generation, provider=job.provider, status="none", deletion_policy=policy)


def _ids(batches: tuple[BatchRecord, ...]) -> set[str]:
    return {b.batch_id for b in batches}
