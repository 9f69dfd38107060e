"""One merged results file per job: every request's final answer, in input order.

Each line is shaped like the API's own output lines, `{"custom_id", "response", "error"}`,
plus `batch_id` and `attempt`.  Output order is not guaranteed by the API, so lines are
joined on custom_id through an index of byte offsets, one part at a time: memory grows with
a part's request count, not with the size of the files.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from pathlib import Path
from typing import BinaryIO

from reconciler.api.reader import BatchReader
from reconciler.common import atomic
from reconciler.engine.outcomes import WorkDir, classify, read_lines, unanswered_reason
from reconciler.engine.retries import part_lines
from reconciler.plans.changes import DesiredJob
from reconciler.plans.jobstatus import attempts_by_part, job_status
from reconciler.state.model import BatchRecord, JobState, ResultsRecord

# custom_id → (file, byte offset, batch id, attempt)
Index = dict[str, tuple[Path, int, str, int]]


def collect_results(job: DesiredJob, recorded: JobState, reader: BatchReader, work_root: Path) -> JobState:
    """Downloads every attempt's files once, writes the merged results, and records them."""
    attempts = attempts_by_part(recorded.batches)
    work = WorkDir(work_root, job.name, job.generation)
    for records in attempts.values():
        for attempt in records:
            work.download(reader, attempt)
    assert job.results_path is not None
    results = write_results(job, attempts, work, Path(job.results_path))
    status = job_status(recorded.batches, recorded.pending)
    return recorded.model_copy(update={"results": results, "status": status})


def write_results(
    job: DesiredJob, attempts: dict[int, list[BatchRecord]], work: WorkDir, target: Path
) -> ResultsRecord:
    """Writes the results atomically and returns what the state records of them."""
    digest = hashlib.sha256()
    written = 0
    with atomic.replacing(target, durable=True) as out:
        for part in job.part_specs:
            part_attempts = attempts.get(part.index, [])
            index = _index(part_attempts, work)
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
                    if where and where[0] not in handles:
                        handles[where[0]] = stack.enter_context(where[0].open("rb"))
                    line = _result_line(custom_id, where, handles, missing)
                    digest.update(line)
                    out.write(line)
                    written += 1
    batch_ids = tuple(sorted(a.batch_id for records in attempts.values() for a in records))
    return ResultsRecord(path=str(target), sha256=digest.hexdigest(), requests=written, batches=batch_ids)


def _index(attempts: list[BatchRecord], work: WorkDir) -> Index:
    """Later attempts override earlier ones, but a success is never overridden."""
    index: Index = {}
    succeeded: set[str] = set()
    for attempt in attempts:
        for path in work.result_files(attempt):
            for offset, line in read_lines(path):
                custom_id = line.get("custom_id")
                if not isinstance(custom_id, str) or custom_id in succeeded:
                    continue
                index[custom_id] = (path, offset, attempt.batch_id, attempt.retry)
                if classify(line) is None:
                    succeeded.add(custom_id)
    return index


def _result_line(
    custom_id: str,
    where: tuple[Path, int, str, int] | None,
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
        path, offset, batch_id, attempt = where
        stream = handles[path]
        stream.seek(offset)
        found = json.loads(stream.readline())
        line = {
            "custom_id": custom_id,
            "response": found.get("response"),
            "error": found.get("error"),
            "batch_id": batch_id,
            "attempt": attempt,
        }
    return (json.dumps(line, separators=(",", ":")) + "\n").encode()
