"""A job's attempts and what they add up to: its status and request counts, which attempts count,
when a failed start is restarted, its runs' history, and how far it has got.

Only the latest attempt of each part speaks for that part; earlier attempts are history.

| the latest batches of the job's parts     | job status                                   |
|-------------------------------------------|----------------------------------------------|
| none yet, a create pending                | `pending`                                    |
| any still running                         | the busiest: `in_progress`, `finalizing`,    |
|                                           | `validating`, `cancelling`, else as it came  |
| some parts still to create (pending), or  | `pending`                                    |
| a failed start to restart                 |                                              |
| parts refused by the queue, or held back  | `queued`                                     |
| by admission (plans/record.py)            |                                              |
| all finished, results still to write      | `collecting`                                 |
| all `completed`                           | `completed`                                  |
| otherwise                                 | the first of `failed`, `expired`,            |
|                                           | `cancelled`, else the provider's own status  |

Restarts.  A batch Portkey could not start is submitted again: twice at most, 1 and then 5
minutes on.  `file_upload_failed` (the gateway could not upload the input to the provider) and
`batch_start_failed` (the provider would not start the batch) end a batch before anything ran:
nothing was answered and nothing billed.  So the part's next batch sends again what the failed
one was to send, decided from the attempts before it as it was then: a *restart*.  Like a
resume after a cancel, a restart is not a retry and spends none of `retry.max_attempts`.  It
waits first, since what stopped the start (an outage, a rate limit at the provider) passes in
minutes if at all: the first restart goes 60 s after the failed batch ended (its `failed_at`,
else its `created_at`: the server's clock), the second 300 s after the next one failed.  A
part whose batch fails to start three times in a row stays failed; `retry.on: [batch_failed]`
may still send it again then, as an ordinary retry that counts.  While a restart is owed, the
job's status is `pending`.

Queue refusals.  A batch the provider's queue turned away (`token_limit_exceeded`: accepted,
then failed before anything ran) is queue feedback, not a failure: the part goes back to the
queue (`queued`), and its next batch, sent when admission finds room (plans/admission.py),
sends again what the refused one was to send.  Like a restart it spends no attempt; unlike one
it waits for room in the queue, not for a delay, and is never given up.

A job's runs are kept newest first and bounded: what `status JOB` shows and a lost state
regains (`updated_history`).  Whether a job is in sync with its spec (`job_sync`) is one
answer for `status` and the dashboard.  Progress figures (`job_progress`: how far, how fast, when done)
come from what the state recorded (request counts as of `observed_at`, each batch's
`in_progress_at`), never from a clock of our own, so they can be read as data.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from reconciler.api.batch import START_FAILURES, is_terminal, queue_refusal
from reconciler.plans.changes import DesiredJob, LiveBatch
from reconciler.plans.reasons import Restart, RestartWaits
from reconciler.state.model import BatchRecord, JobState, PendingCreate, RunRecord

RESTART_DELAYS = (60.0, 300.0)  # seconds after the Nth failed start before restart N


def failed_starts(attempts: Sequence[BatchRecord]) -> int:
    """How many of a part's attempts (oldest first) a start failure ended, in a row, at the end."""
    count = 0
    for record in reversed(attempts):
        if record.status not in START_FAILURES:
            break
        count += 1
    return count


def refused(record: BatchRecord) -> bool:
    """The provider's queue turned this batch away (nothing ran)."""
    return record.status == "failed" and queue_refusal(record.errors) is not None


def requeue_owed(attempts: Sequence[BatchRecord]) -> bool:
    """A part's latest attempt was refused by the queue: the part waits for room, then goes again."""
    return bool(attempts) and refused(attempts[-1])


def before_refusals(attempts: Sequence[BatchRecord]) -> list[BatchRecord]:
    """The attempts before the refused and unstarted ones at the end: what a requeue follows."""
    ran = list(attempts)
    while ran and (refused(ran[-1]) or ran[-1].status in START_FAILURES):
        ran.pop()
    return ran


def restart_owed(attempts: Sequence[BatchRecord]) -> bool:
    return 0 < failed_starts(attempts) <= len(RESTART_DELAYS)


def restart_at(attempts: Sequence[BatchRecord]) -> float:
    """Unix seconds from which the owed restart may go (only when `restart_owed`)."""
    latest = attempts[-1]
    ended = latest.failed_at or latest.created_at or 0
    return ended + RESTART_DELAYS[failed_starts(attempts) - 1]


def before_failed_starts(attempts: Sequence[BatchRecord]) -> list[BatchRecord]:
    """The attempts that ran (or were cancelled) before the failed starts at the end."""
    return list(attempts[: len(attempts) - failed_starts(attempts)])


def is_restart(ordered: Sequence[BatchRecord], index: int) -> bool:
    """Attempt `index` (of a part's attempts, oldest first) restarted a failed start."""
    return restart_owed(ordered[:index])


def restart_waits(by_part: dict[int, list[BatchRecord]]) -> RestartWaits | None:
    """The first part whose failed start is restarted once its wait is over."""
    for part, attempts in sorted(by_part.items()):
        if restart_owed(attempts):
            status, restart = attempts[-1].status, failed_starts(attempts)
            return RestartWaits(part, status, restart_at(attempts), restart, len(RESTART_DELAYS))
    return None


def restart_reason(attempts: Sequence[BatchRecord], part: int, requests: int) -> Restart:
    return Restart(requests, part, attempts[-1].status, failed_starts(attempts), len(RESTART_DELAYS))


RUNNING_ORDER = ("in_progress", "finalizing", "validating", "cancelling")
QUEUED = "queued"  # a job whose parts wait for room in their model's queue (plans/admission.py)
FINISHED_ORDER = ("failed", "expired", "cancelled")


def latest_per_part(batches: tuple[BatchRecord, ...]) -> list[BatchRecord]:
    latest: dict[int, BatchRecord] = {}
    for record in batches:
        if record.part not in latest or record.retry >= latest[record.part].retry:
            latest[record.part] = record
    return [latest[p] for p in sorted(latest)]


def attempts_by_part(batches: Iterable[BatchRecord]) -> dict[int, list[BatchRecord]]:
    """Each part's attempts, first attempt first."""
    parts: dict[int, list[BatchRecord]] = {}
    for batch in sorted(batches, key=lambda b: b.retry):
        parts.setdefault(batch.part, []).append(batch)
    return parts


def attempts_used(attempts: Iterable[BatchRecord]) -> int:
    """A part's attempts that count toward `retry.max_attempts`: a resume (the attempt after a
    cancelled one) sends again what the cancel cut short, a restart what a failed start never
    ran, and a requeue what the queue refused; none is a retry."""
    ordered = sorted(attempts, key=lambda b: b.retry)
    return sum(
        1
        for i, b in enumerate(ordered)
        if i == 0
        or not (ordered[i - 1].status == "cancelled" or is_restart(ordered, i) or refused(ordered[i - 1]))
    )


def job_status(
    batches: tuple[BatchRecord, ...],
    pending: tuple[PendingCreate, ...],
    *,
    results_due: bool = False,
    restarts: bool = False,
) -> str:
    """`restarts`: the job is desired and not suspended, so a failed start will be restarted."""
    latest = [b.status for b in latest_per_part(batches)]
    running = [s for s in latest if not is_terminal(s)]
    if running:
        return next((s for s in RUNNING_ORDER if s in running), running[0])
    if pending or not latest:
        return "pending" if pending else "none"
    if restarts and any(restart_owed(a) for a in attempts_by_part(batches).values()):
        return "pending"
    if restarts and any(requeue_owed(a) for a in attempts_by_part(batches).values()):
        return QUEUED
    if results_due:
        return "collecting"
    if all(s == "completed" for s in latest):
        return "completed"
    return next((s for s in FINISHED_ORDER if s in latest), next(s for s in latest if s != "completed"))


def request_counts(batches: tuple[BatchRecord, ...]) -> dict[str, int]:
    """Per request, not per batch: a retry resubmits only what did not succeed, so completed
    counts add up across attempts, while total and failed come from each part's first and
    latest attempt."""
    counts = {"total": 0, "completed": 0, "failed": 0}
    units: set[tuple[int, int]] = set()
    for record in batches:
        if (record.part, record.retry) in units:  # a duplicate batch: its requests are counted once
            continue
        units.add((record.part, record.retry))
        got = record.request_counts or {}
        counts["completed"] += got.get("completed", 0)
    for attempts in attempts_by_part(batches).values():
        # the part's first attempt that ran holds all of it: one the queue refused or that failed
        # to start never did, and the attempt after it sent the whole part again
        ran = next((a for a in attempts if not (refused(a) or a.status in START_FAILURES)), attempts[0])
        counts["total"] += (ran.request_counts or {}).get("total", 0)
    for record in latest_per_part(batches):
        counts["failed"] += (record.request_counts or {}).get("failed", 0)
    return counts


ENDED_FIELDS = ("completed_at", "failed_at", "expired_at", "cancelled_at")


def updated_history(job: JobState, live: Sequence[LiveBatch], limit: int) -> tuple[RunRecord, ...]:
    """The recorded runs with those seen live brought up to date; the current run as the job
    itself says it (results and pending creates included)."""
    groups: dict[tuple[str, str], list[BatchRecord]] = {}
    for batch in live:
        key = (batch.run, batch.generation or "")
        groups.setdefault(key, []).append(batch.record)
    runs = {(r.run, r.generation): r for r in job.history}
    for (run, generation), records in groups.items():
        runs[(run, generation)] = _run_record(run, generation, tuple(records), runs.get((run, generation)))
    if job.run is not None and (job.batches or job.pending or job.all_reused):
        key = (job.run, job.generation)
        runs[key] = _current_record(job, runs.get(key))
    ordered = sorted(
        runs.values(), key=lambda r: (r.started_at is None, r.started_at or 0, r.run), reverse=True
    )
    return tuple(_overwritten(ordered[:limit], job))


def _overwritten(runs: list[RunRecord], job: JobState) -> list[RunRecord]:
    """Runs whose results file the current run has written since (a `results:` path without
    {run}): the file holds the current run's results now, so their records no longer claim it."""
    if job.run is None or job.results is None:
        return runs
    mine, path = (job.run, job.generation), job.results.path
    update = {"results": None, "results_overwritten_by": job.run}
    return [
        r.model_copy(update=update) if r.results == path and (r.run, r.generation) != mine else r
        for r in runs
    ]


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
        results_overwritten_by=before.results_overwritten_by if before else None,
        usage=before.usage if before else None,
        cost_usd=before.cost_usd if before else None,
        reused=before.reused if before else 0,
    )


def _current_record(job: JobState, before: RunRecord | None) -> RunRecord:
    assert job.run is not None
    started = _started(job.batches) or (before.started_at if before else None)
    ended = _ended(job.batches) if is_terminal(job.status) else None
    if job.all_reused:  # no batch to date it: it started when first recorded, ended when seen ended
        seen = _whole(parse_time(job.observed_at))
        started = started or seen
        if is_terminal(job.status):
            ended = (before.ended_at if before else None) or seen
    return RunRecord(
        run=job.run,
        generation=job.generation,
        status=job.status,
        request_counts=job.request_counts,
        batches=tuple(sorted(b.batch_id for b in job.batches)),
        started_at=started,
        ended_at=ended,
        results=job.results.path if job.results else (before.results if before else None),
        results_overwritten_by=None if job.results or not before else before.results_overwritten_by,
        usage=job.total_usage if job.usage else (before.usage if before else None),
        cost_usd=job.cost_usd if job.usage else (before.cost_usd if before else None),
        reused=job.reused,
    )


def _whole(seconds: float | None) -> int | None:
    return None if seconds is None else int(seconds)


def _started(records: Sequence[BatchRecord]) -> int | None:
    created = [r.created_at for r in records if r.created_at]
    return min(created) if created else None


def _ended(records: Sequence[BatchRecord]) -> int | None:
    ends = [getattr(r, name) for r in records for name in ENDED_FIELDS if getattr(r, name)]
    return max(ends) if ends else None


@dataclass(frozen=True)
class Progress:
    done: int  # requests answered, succeeded or failed
    failed: int
    total: int
    per_minute: float | None = None  # requests the running batches answered per minute
    eta_seconds: float | None = None  # until the running batches have answered everything, from `now`


def job_progress(job: JobState, now: float) -> Progress:
    counts = job.request_counts
    completed, failed = counts.get("completed", 0), counts.get("failed", 0)
    figures = Progress(completed + failed, failed, counts.get("total", 0))
    observed = parse_time(job.observed_at)
    running = [b for b in latest_per_part(job.batches) if not is_terminal(b.status)]
    starts = [b.in_progress_at for b in running if b.in_progress_at]
    if observed is None or not starts or len(starts) < len(running):
        return figures
    answered = remaining = 0
    for batch in running:
        got = batch.request_counts or {}
        done = got.get("completed", 0) + got.get("failed", 0)
        answered += done
        remaining += max(got.get("total", 0) - done, 0)
    elapsed = observed - min(starts)
    if elapsed <= 0 or answered == 0:
        return figures
    rate = answered / elapsed
    eta = max(remaining / rate - max(now - observed, 0.0), 0.0)
    return Progress(figures.done, failed, figures.total, rate * 60, eta)


def reused_note(reused: int) -> str:
    """` +1,234 reused` after a run's request counts (status, output, the dashboard); empty when the
    run reused nothing."""
    return f" +{reused:,} reused" if reused else ""


def parse_time(stamp: str | None) -> float | None:
    """`2026-11-22T03:00:00Z` → unix seconds; None when absent or unreadable."""
    if not stamp:
        return None
    try:
        return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def duration(seconds: float) -> str:
    """`45s`, `12m`, `3h`, `2d`: the largest unit that fits."""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{int(seconds // size)}{unit}"
    return f"{max(int(seconds), 0)}s"


class Sync(StrEnum):
    """A job's recorded generation against its spec's; the value is what `status` and the
    dashboard show in their SYNC column."""

    IN_SYNC = "in sync"
    NOT_CREATED = "out of sync: not created"
    SPEC_CHANGED = "out of sync: spec changed"
    SPEC_REMOVED = "out of sync: spec removed"
    SPEC_INVALID = "unknown: spec invalid"
    UNKNOWN = "unknown"  # no specs to compare with


def job_sync(
    name: str, job: JobState | None, desired: Mapping[str, DesiredJob] | None, specs_invalid: bool
) -> Sync:
    """`desired`: the jobs whose specs validate (None: no specs read); `specs_invalid`: some
    do not, so a job missing from `desired` may be one of them."""
    if desired is None:
        return Sync.UNKNOWN
    wanted = desired.get(name)
    if wanted is None:
        return Sync.SPEC_INVALID if specs_invalid else Sync.SPEC_REMOVED
    if job is None or job.status == "none":
        return Sync.IN_SYNC if wanted.suspend else Sync.NOT_CREATED  # suspended: none is wanted
    if job.generation != wanted.generation or job.provider != wanted.provider:
        return Sync.SPEC_CHANGED
    return Sync.IN_SYNC
