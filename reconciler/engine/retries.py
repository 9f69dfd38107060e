"""What a finished part sends again: found while observing, written when its batch is created.

Only requests that did not succeed and whose reason `retry.on` names go into a retry, never
a finished one; each retry is a new batch of the same part, one attempt number higher.  A
resume (after a cancel) and a restart (after a failed start, plans/jobstatus.py) send what the
cut-short batch was to send, and count no attempt.
Observing downloads the part's output and error files (reading only) and counts; the retry
input file itself is written by the create that uploads it (sources.py).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Container, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from reconciler.api.batch import is_terminal
from reconciler.api.reader import BatchReader
from reconciler.engine.outcomes import WorkDir, part_outcomes, unanswered_reason
from reconciler.plans.changes import DesiredJob, LiveBatch
from reconciler.plans.decide import live_by_job, split_duplicates
from reconciler.plans.jobstatus import (
    attempts_by_part,
    attempts_used,
    before_failed_starts,
    before_refusals,
    requeue_owed,
    restart_at,
    restart_owed,
)
from reconciler.specs.slices import PartSpec
from reconciler.state.model import BatchRecord

NOT_STARTED = "batch_not_started"  # a restart's own reason: every request of a part never run


@dataclass(frozen=True)
class PartRetry:
    """The next attempt of one part: which requests it sends, and how many."""

    part: PartSpec
    attempt: int
    outcomes: Mapping[str, str | None]  # custom_id → None (succeeded) or the reason it did not
    unanswered: str  # the reason of a request no attempt answered
    retry_on: tuple[str, ...]
    count: int = 0

    def wanted(self, custom_id: str) -> bool:
        reason = self.outcomes.get(custom_id, self.unanswered)
        return reason is not None and reason in self.retry_on


def part_lines(input_path: Path, part: PartSpec) -> Iterator[tuple[str, bytes]]:
    """(custom_id, raw line) for each request of one part, in input order."""
    with input_path.open("rb") as stream:
        stream.seek(part.start)
        remaining = (part.end - part.start) if part.end else None
        for raw in stream:
            if remaining is not None:
                if remaining <= 0:
                    return
                remaining -= len(raw)
            if raw.strip():
                custom_id = json.loads(raw).get("custom_id")
                yield str(custom_id), raw if raw.endswith(b"\n") else raw + b"\n"


def live_attempts(job: DesiredJob, live: Sequence[LiveBatch], run: str) -> dict[int, list[BatchRecord]]:
    """Each part's attempts in `run`; a duplicate the guard cancels is no attempt (never resumed)."""
    kept, _ = split_duplicates(
        b for b in live if b.job == job.name and b.generation == job.generation and b.run == run
    )
    return attempts_by_part(b.record for b in kept)


def find_retries(
    desired: Mapping[str, DesiredJob],
    live: Sequence[LiveBatch],
    readers: Mapping[str, BatchReader],
    work: Path,
    runs: Mapping[str, str | None],
    now: float,
) -> dict[tuple[str, int], PartRetry]:
    """(job, part) → its next attempt, for every finished part of the job's current run (`runs`)
    with attempts and requests left, cut short by a cancel (a resume), or whose batch failed to
    start and whose restart is due at `now` (unix seconds; plans/jobstatus.py)."""
    found: dict[tuple[str, int], PartRetry] = {}
    by_job = live_by_job(live)
    for job in desired.values():
        run = runs.get(job.name)
        if run is not None and not job.suspend:
            mine = by_job.get(job.name, [])
            for index, retry in _job_retries(job, run, mine, readers[job.provider], work, now).items():
                found[(job.name, index)] = retry
    return found


def _job_retries(
    job: DesiredJob, run: str, live: Sequence[LiveBatch], reader: BatchReader, work_root: Path, now: float
) -> dict[int, PartRetry]:
    parts = {p.index: p for p in job.part_specs}
    found: dict[int, PartRetry] = {}
    for index, attempts in live_attempts(job, live, run).items():
        if not is_terminal(attempts[-1].status) or index not in parts:
            continue
        fetch = Fetch(WorkDir(work_root, job.name, job.generation, run), reader)  # a finished part's files
        retry = _next_attempt(job, parts[index], attempts, fetch, now)
        if retry is None:
            continue
        lines = part_lines(Path(job.input_path), retry.part)
        count = sum(1 for custom_id, _ in lines if retry.wanted(custom_id))
        if count:
            found[index] = dataclasses.replace(retry, count=count)
    return found


@dataclass(frozen=True)
class Fetch:
    """Where a part's result files come from, and where they are kept."""

    work: WorkDir
    reader: BatchReader

    def outcomes(self, attempts: Sequence[BatchRecord], sent: Container[str]) -> dict[str, str | None]:
        return part_outcomes([(a, self.work.download(self.reader, a)) for a in attempts], sent)


def _next_attempt(
    job: DesiredJob, part: PartSpec, attempts: list[BatchRecord], fetch: Fetch, now: float
) -> PartRetry | None:
    number = attempts[-1].retry + 1
    if requeue_owed(attempts):  # refused by the queue: what it was to send goes again
        ran = before_refusals(attempts)
        if not ran:
            return PartRetry(part, number, {}, NOT_STARTED, (NOT_STARTED,))
        return _after(job, part, ran, fetch, number)
    if not restart_owed(attempts):
        return _after(job, part, attempts, fetch, number)
    if now < restart_at(attempts):
        return None  # the restart waits
    ran = before_failed_starts(attempts)
    if not ran:  # the part's first batch never started: all of it again
        return PartRetry(part, number, {}, NOT_STARTED, (NOT_STARTED,))
    return _after(job, part, ran, fetch, number)


def _after(
    job: DesiredJob, part: PartSpec, attempts: Sequence[BatchRecord], fetch: Fetch, number: int
) -> PartRetry | None:
    """What follows these attempts: what a cancel cut short (a resume), and while retries are
    left what did not succeed for a reason `retry.on` names."""
    latest = attempts[-1]
    retry_left = attempts_used(attempts) < job.max_attempts
    resume = latest.status == "cancelled"
    if not (retry_left or resume):
        return None
    reasons = (("batch_cancelled",) if resume else ()) + (job.retry_on if retry_left else ())
    sent = {custom_id for custom_id, _ in part_lines(Path(job.input_path), part)}
    return PartRetry(part, number, fetch.outcomes(attempts, sent), unanswered_reason(latest), reasons)


def write_retry_input(input_path: Path, retry: PartRetry, out: BinaryIO) -> int:
    """Writes the part's lines this retry sends, in input order; returns how many."""
    count = 0
    for custom_id, raw in part_lines(input_path, retry.part):
        if retry.wanted(custom_id):
            out.write(raw)
            count += 1
    return count
