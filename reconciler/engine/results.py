"""One merged results file per job: every request's final answer, in input order.

Each line is shaped like the API's own output lines, `{"custom_id", "response", "error"}`,
plus `batch_id` and `attempt`.  Output order is not guaranteed by the API, so lines are
joined on custom_id through an index of byte offsets, one part at a time, holding only the
part's own requests: memory grows with a part's request count, not with the size of the
files nor with what else the server put in them (lines.py bounds each line).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Container, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from reconciler.api.reader import BatchReader
from reconciler.common import fileops
from reconciler.common.errors import ApiStatusError, ResultsGoneError
from reconciler.engine.lines import read_line_at, result_lines
from reconciler.engine.outcomes import WorkDir, classify, unanswered_reason
from reconciler.engine.results_check import results_file, stored_path
from reconciler.engine.retries import part_lines
from reconciler.plans.changes import DesiredJob
from reconciler.plans.status import attempts_by_part, job_status
from reconciler.state.model import BatchRecord, JobState, ResultsRecord


@dataclass(frozen=True)
class Found:
    """Where a request's answer is: a line of a result file, or (`line`) what stands for it."""

    path: Path
    offset: int | None
    batch_id: str
    attempt: int
    line: dict[str, object] | None = None  # an answer too long to keep: the error instead


Index = dict[str, Found]  # custom_id → its answer


def collect_results(
    job: DesiredJob, recorded: JobState, reader: BatchReader, work_root: Path, repo_root: Path
) -> JobState:
    """Downloads every attempt's files once, writes the merged results, and records them."""
    attempts = attempts_by_part(recorded.batches)
    work = WorkDir(work_root, job.name, job.generation, recorded.run)
    fetch_all(work, reader, recorded.batches, recorded.deleted_files)
    results = write_results(job, attempts, work, results_file(job, recorded.run), repo_root)
    status = job_status(recorded.batches, recorded.pending)
    return recorded.model_copy(update={"results": results, "status": status})


def rewrite_results(
    job: DesiredJob, recorded: JobState, reader: BatchReader, work_root: Path, repo_root: Path
) -> JobState:
    """Writes a missing or altered results file again; records, once, when it no longer can."""
    assert recorded.results is not None
    try:
        return collect_results(job, recorded, reader, work_root, repo_root)
    except ResultsGoneError as gone:
        lost = recorded.results.model_copy(update={"lost": str(gone)})
        return recorded.model_copy(update={"results": lost})


def fetch_all(
    work: WorkDir, reader: BatchReader, batches: Iterable[BatchRecord], deleted: Iterable[str] = ()
) -> None:
    """Every output and error file into the work folder, unless it is there already."""
    gone = set(deleted)
    for batch in batches:
        for file_id, target in work.targets(batch):
            if target.exists():
                continue
            if file_id in gone:
                raise ResultsGoneError(f"{file_id} of {batch.batch_id} was deleted by cleanup")
            try:
                work.download_one(reader, file_id, target)
            except ApiStatusError as error:
                if error.status != 404:
                    raise
                raise ResultsGoneError(
                    f"the provider no longer has {file_id} of {batch.batch_id} (expired or deleted)"
                ) from None


def write_results(
    job: DesiredJob, attempts: dict[int, list[BatchRecord]], work: WorkDir, target: Path, repo_root: Path
) -> ResultsRecord:
    """Writes the results atomically and returns what the state records of them."""
    digest = hashlib.sha256()
    written = 0
    with fileops.replacing(target, durable=True) as out:
        for part in job.part_specs:
            part_attempts = attempts.get(part.index, [])
            sent = {custom_id for custom_id, _ in part_lines(Path(job.input_path), part)}
            index = _index(part_attempts, work, sent)
            last = part_attempts[-1] if part_attempts else None
            missing = (
                (unanswered_reason(last), last.batch_id, last.retry)
                if last
                else ("not_submitted", None, None)
            )
            with contextlib.ExitStack() as stack:
                handles: dict[Path, BinaryIO] = {}
                for custom_id, _ in part_lines(Path(job.input_path), part):
                    where = index.get(custom_id)
                    if where and where.line is None and where.path not in handles:
                        handles[where.path] = stack.enter_context(where.path.open("rb"))
                    line = _result_line(custom_id, where, handles, missing)
                    digest.update(line)
                    out.write(line)
                    written += 1
    batch_ids = tuple(sorted(a.batch_id for records in attempts.values() for a in records))
    return ResultsRecord(
        path=stored_path(target, repo_root),
        sha256=digest.hexdigest(),
        requests=written,
        batches=batch_ids,
    )


def _index(attempts: list[BatchRecord], work: WorkDir, sent: Container[str]) -> Index:
    """Later attempts override earlier ones, but a success is never overridden."""
    index: Index = {}
    succeeded: set[str] = set()
    for attempt in attempts:
        for path in work.result_files(attempt):
            for offset, line in result_lines(path, sent):
                custom_id = str(line["custom_id"])
                if custom_id in succeeded:
                    continue
                kept = line if offset is None else None
                index[custom_id] = Found(path, offset, attempt.batch_id, attempt.retry, kept)
                if classify(line) is None:
                    succeeded.add(custom_id)
    return index


def _result_line(
    custom_id: str,
    where: Found | None,
    handles: dict[Path, BinaryIO],
    missing: tuple[str, str | None, int | None],
) -> bytes:
    """An unanswered request names the last batch it was sent in too (None if never sent)."""
    if where is None:
        reason, batch_id, attempt = missing
        line: dict[str, object] = {
            "custom_id": custom_id,
            "response": None,
            "error": {"code": reason, "message": "no batch answered this request"},
            "batch_id": batch_id,
            "attempt": attempt,
        }
    else:
        found = where.line
        if found is None:
            assert where.offset is not None
            found = json.loads(read_line_at(handles[where.path], where.offset))
        line = {
            "custom_id": custom_id,
            "response": found.get("response"),
            "error": found.get("error"),
            "batch_id": where.batch_id,
            "attempt": where.attempt,
        }
    return (json.dumps(line, separators=(",", ":")) + "\n").encode()
