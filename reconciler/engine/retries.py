"""After batches finish: which requests to send again, and the retry input files holding them.

Only requests that did not succeed and whose reason `retry.on` names go into a retry, never
a finished one; each retry is a new batch of the same part, one attempt number higher.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

from reconciler.api.batch import LiveBatch, is_terminal
from reconciler.api.client import BatchClient
from reconciler.engine.outcomes import WorkDir, part_outcomes, unanswered_reason
from reconciler.plans.changes import DesiredJob, PartSpec
from reconciler.state.model import BatchRecord


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


def attempts_by_part(job: DesiredJob, live: Sequence[LiveBatch]) -> dict[int, list[BatchRecord]]:
    parts: dict[int, list[BatchRecord]] = {}
    for batch in live:
        if batch.batch.job == job.name and batch.generation == job.generation:
            parts.setdefault(batch.batch.part, []).append(BatchRecord.from_batch(batch.batch))
    return {p: sorted(records, key=lambda r: r.retry) for p, records in parts.items()}


def prepare_retries(
    job: DesiredJob, live: Sequence[LiveBatch], client: BatchClient, work_root: Path, retry_on: Sequence[str]
) -> dict[tuple[str, int], int]:
    """For each finished part with attempts left: writes its retry input, returns its size."""
    work = WorkDir(work_root, job.name, job.generation)
    counts: dict[tuple[str, int], int] = {}
    parts = {p.index: p for p in job.part_specs}
    for index, attempts in attempts_by_part(job, live).items():
        latest = attempts[-1]
        if not is_terminal(latest.status) or latest.retry >= job.max_attempts or index not in parts:
            continue
        outcomes = part_outcomes([(a, work.download(client, a)) for a in attempts])
        target = work.retry_input(index, latest.retry + 1)
        count = _write_retry_input(Path(job.input_path), parts[index], outcomes, latest, retry_on, target)
        if count:
            counts[(job.name, index)] = count
    return counts


def _write_retry_input(
    input_path: Path,
    part: PartSpec,
    outcomes: Mapping[str, str | None],
    latest: BatchRecord,
    retry_on: Sequence[str],
    target: Path,
) -> int:
    missing = unanswered_reason(latest)
    count = 0
    temp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    with temp.open("wb") as out:
        for custom_id, raw in part_lines(input_path, part):
            reason = outcomes.get(custom_id, missing)
            if reason is not None and reason in retry_on:
                out.write(raw)
                count += 1
    os.replace(temp, target)
    return count


def download_all(
    job: DesiredJob, attempts: Mapping[int, list[BatchRecord]], client: BatchClient, work_root: Path
) -> WorkDir:
    work = WorkDir(work_root, job.name, job.generation)
    for records in attempts.values():
        for attempt in records:
            work.download(client, attempt)
    return work
