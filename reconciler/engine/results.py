"""One merged results file per job: every request's final answer, in input order; where the state
says it is, whether it is still there as recorded, and `output --download`'s copy of it.

Each line is shaped like the API's own output lines, `{"custom_id", "response", "error"}`,
plus `batch_id` and `attempt`.  Output order is not guaranteed by the API, so lines are
joined on custom_id through an index of byte offsets, one part at a time, holding only the
part's own requests: memory grows with a part's request count, not with the size of the
files nor with what else the server put in them (outcomes.py bounds each line).

The state holds the file's path relative to the repo root, so a state committed from CI names
no runner's directories; states written before that hold an absolute path, still read.

`output JOB --download DIR` writes the same format anywhere, from the provider's files; the
state is not read for writing, nor changed.  The files are fetched into a temporary folder,
never into the state's work folder.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import tempfile
from collections.abc import Callable, Container, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from reconciler.api.batch import is_terminal
from reconciler.api.reader import BatchReader
from reconciler.common import fileops
from reconciler.common.errors import ApiStatusError, ResultsGoneError, UserError
from reconciler.common.ownership import DEFAULT_RUN
from reconciler.engine.outcomes import (
    WorkDir,
    classify,
    custom_id_in,
    read_line_at,
    result_lines,
    unanswered_reason,
)
from reconciler.engine.retries import part_lines
from reconciler.plans.changes import DesiredJob
from reconciler.plans.jobstatus import attempts_by_part, job_status, latest_per_part
from reconciler.plans.runs import file_part
from reconciler.specs.inputs.digest import line_identity
from reconciler.specs.slices import PartSpec
from reconciler.state.model import BatchRecord, JobState, ResultsRecord, State

CHUNK = 1 << 20


def stored_path(target: Path, repo_root: Path) -> str:
    """How the state records a results path: relative to the repo when inside it."""
    return target.relative_to(repo_root).as_posix() if target.is_relative_to(repo_root) else str(target)


def recorded_location(results: ResultsRecord, repo_root: Path) -> Path:
    path = Path(results.path)
    return path if path.is_absolute() else repo_root / path


def results_file(job: DesiredJob, run: str | None) -> Path:
    """`results:` with {job} and {run} filled in (a run id made fit for a file name)."""
    assert job.results_path is not None
    filled = job.results_path.replace("{job}", job.name).replace("{run}", file_part(run or DEFAULT_RUN))
    return Path(filled)


def results_problem(job: DesiredJob, recorded: JobState, repo_root: Path) -> str | None:
    """None when the recorded results are where the spec wants them, with the recorded sha256."""
    results = recorded.results
    if not job.results_path or results is None:
        return None
    target = results_file(job, recorded.run)
    if recorded_location(results, repo_root) != target:
        return "is not written yet at the path the spec now names"
    if not target.is_file():
        return "is missing"
    if file_sha256(target) != results.sha256:
        return "has changed since it was written (sha256 differs)"
    return None


def results_notes(desired: Mapping[str, DesiredJob], state: State, repo_root: Path) -> tuple[str, ...]:
    """What a plan says about results files: to be written again, or lost for good."""
    notes = []
    for name, job in sorted(desired.items()):
        recorded = state.jobs.get(name)
        if recorded is None or recorded.results is None or not is_terminal(recorded.status):
            continue
        if recorded.generation != job.generation:  # a new run writes them anew
            continue
        problem = results_problem(job, recorded, repo_root)
        if problem is None or job.results_path is None:
            continue
        shown = stored_path(results_file(job, recorded.run), repo_root)
        if recorded.results.lost:
            notes.append(f"{name}: {shown} {problem}, and cannot be written again: {recorded.results.lost}")
        else:
            notes.append(f"{name}: {shown} {problem}; reconcile writes it again from the provider's files")
    return tuple(notes)


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        while chunk := stream.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


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
    job: DesiredJob,
    recorded: JobState,
    reader: BatchReader,
    work_root: Path,
    repo_root: Path,
    reused: ReusedLines | None = None,
) -> JobState:
    """Downloads every attempt's files once, writes the merged results, and records them."""
    attempts = attempts_by_part(recorded.batches)
    work = WorkDir(work_root, job.name, job.generation, recorded.run)
    fetch_all(work, reader, recorded.batches, recorded.deleted_files)
    results = write_results(job, attempts, work, results_file(job, recorded.run), repo_root, reused)
    status = job_status(recorded.batches, recorded.pending)
    if status == "none" and recorded.all_reused:  # answered by earlier runs alone, now written
        status = "completed"
    return recorded.model_copy(update={"results": results, "status": status})


def rewrite_results(
    job: DesiredJob,
    recorded: JobState,
    reader: BatchReader,
    work_root: Path,
    repo_root: Path,
    reused: ReusedLines | None = None,
) -> JobState:
    """Writes a missing or altered results file again; records, once, when it no longer can."""
    assert recorded.results is not None
    try:
        return collect_results(job, recorded, reader, work_root, repo_root, reused)
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


# identities → the stored results line answering each (engine/reuse.py), for a run that reuses
ReusedLines = Callable[[Sequence[str]], Mapping[str, bytes]]
SPLICE_CHUNK = 1000  # requests whose reused answers are looked up at once


def write_results(
    job: DesiredJob,
    attempts: dict[int, list[BatchRecord]],
    work: WorkDir,
    target: Path,
    repo_root: Path,
    reused: ReusedLines | None = None,
) -> ResultsRecord:
    """Writes the results atomically and returns what the state records of them.  A run that
    reuses answers (`job.reuse`) gets every request of the full input, in its order: a sent one
    answered by its batches, a reused one by its earlier line (`reused`)."""
    digest = hashlib.sha256()
    written = 0
    lines = _merged_lines(job, attempts, work)
    if job.reuse is not None:
        if reused is None:
            raise AssertionError(f"{job.name}: results of a run that reuses answers need the answer store")
        lines = _spliced(job, lines, reused)
    with fileops.replacing(target, durable=True) as out:
        for line in lines:
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


def _merged_lines(job: DesiredJob, attempts: dict[int, list[BatchRecord]], work: WorkDir) -> Iterator[bytes]:
    """Each sent request's final line, in the order of what was sent."""
    for part in job.part_specs:
        part_attempts = attempts.get(part.index, [])
        sent = {custom_id for custom_id, _ in part_lines(Path(job.input_path), part)}
        index = _index(part_attempts, work, sent)
        last = part_attempts[-1] if part_attempts else None
        missing = (
            (unanswered_reason(last), last.batch_id, last.retry) if last else ("not_submitted", None, None)
        )
        with contextlib.ExitStack() as stack:
            handles: dict[Path, BinaryIO] = {}
            for custom_id, _ in part_lines(Path(job.input_path), part):
                where = index.get(custom_id)
                if where and where.line is None and where.path not in handles:
                    handles[where.path] = stack.enter_context(where.path.open("rb"))
                yield _result_line(custom_id, where, handles, missing)


def _spliced(job: DesiredJob, sent: Iterator[bytes], reused: ReusedLines) -> Iterator[bytes]:
    """The full input's requests in order: what was sent is an ordered subsequence of it (the
    same custom_ids), the rest is answered by the lines it reuses."""
    assert job.reuse is not None
    following = next(sent, None)
    chunk: list[tuple[str, str | None, bytes | None]] = []  # (custom_id, identity to look up, line)
    for custom_id, raw in part_lines(Path(job.reuse.full_input), PartSpec(index=0, requests=job.requests)):
        if following is not None and custom_id_in(following) == custom_id:
            chunk.append((custom_id, None, following))
            following = next(sent, None)
        else:
            chunk.append((custom_id, line_identity(job.endpoint, raw)[1], None))
        if len(chunk) >= SPLICE_CHUNK:
            yield from _filled(chunk, reused)
            chunk = []
    yield from _filled(chunk, reused)


def _filled(chunk: list[tuple[str, str | None, bytes | None]], reused: ReusedLines) -> Iterator[bytes]:
    found = reused([identity for _, identity, line in chunk if line is None and identity is not None])
    for custom_id, identity, line in chunk:
        if line is not None:
            yield line
            continue
        earlier = found.get(identity or "")
        yield _relabelled(earlier, custom_id) if earlier is not None else _gone_line(custom_id)


def _relabelled(line: bytes, custom_id: str) -> bytes:
    """An earlier answer's line as it was written, under this request's custom_id when it differs."""
    parsed = json.loads(line)
    if parsed.get("custom_id") == custom_id:
        return line
    parsed["custom_id"] = custom_id
    return (json.dumps(parsed, separators=(",", ":")) + "\n").encode()


def _gone_line(custom_id: str) -> bytes:
    line = {
        "custom_id": custom_id,
        "response": None,
        "error": {
            "code": "reused_answer_gone",
            "message": "the answer store no longer holds the reused answer",
        },
        "batch_id": None,
        "attempt": None,
    }
    return (json.dumps(line, separators=(",", ":")) + "\n").encode()


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
        error: object = {"code": reason, "message": "no batch answered this request"}
        return answer_line(custom_id, None, error, batch_id, attempt)
    found = where.line
    if found is None:
        assert where.offset is not None
        found = json.loads(read_line_at(handles[where.path], where.offset))
    return answer_line(custom_id, found.get("response"), found.get("error"), where.batch_id, where.attempt)


def answer_line(
    custom_id: str, response: object, error: object, batch_id: str | None, attempt: int | None
) -> bytes:
    """One line of a merged results file, byte for byte as every writer of one writes it."""
    line = {
        "custom_id": custom_id,
        "response": response,
        "error": error,
        "batch_id": batch_id,
        "attempt": attempt,
    }
    return (json.dumps(line, separators=(",", ":")) + "\n").encode()


def download_results(job: DesiredJob, recorded: JobState, reader: BatchReader, target: Path) -> ResultsRecord:
    _check_ready(job, recorded)
    with tempfile.TemporaryDirectory(prefix="reconciler-download-") as scratch:
        work = WorkDir(Path(scratch), job.name, job.generation)
        fetch_all(work, reader, recorded.batches, recorded.deleted_files)
        return write_results(job, attempts_by_part(recorded.batches), work, target, target.parent)


def _reused_refusal(job: DesiredJob, recorded: JobState) -> str:
    """Why `output --download` cannot join a reusing run's results, and where they are instead."""
    why = (
        f"its run reuses {recorded.reused:,} earlier answers (spec.reuse), which the provider's files "
        "do not hold"
    )
    if job.results_path is None:
        return f"{why}; set results: in the spec and reconcile writes every answer there"
    if recorded.results is not None and recorded.results.path:
        return f"{why}; its results file {recorded.results.path} holds every answer: use that file"
    return f"{why}; reconcile writes every answer to the spec's results: file once the run has finished"


def _check_ready(job: DesiredJob, recorded: JobState) -> None:
    if recorded.generation != job.generation:
        raise UserError(
            f"{job.name}: the spec or its input changed since its batches ran "
            f"(generation {recorded.generation} → {job.generation}); results are joined to the input "
            "they were made from, so restore it, or reconcile and download the new run's results"
        )
    if recorded.reused:
        raise UserError(f"{job.name}: {_reused_refusal(job, recorded)}")
    running = [b.batch_id for b in latest_per_part(recorded.batches) if not is_terminal(b.status)]
    if running or recorded.pending or not recorded.batches:
        what = (
            f"{running[0]} is still {_status(recorded, running[0])}" if running else "no batch has finished"
        )
        raise UserError(f"{job.name}: {what}; results can be downloaded once every batch has finished")


def _status(recorded: JobState, batch_id: str) -> str:
    return next(b.status for b in recorded.batches if b.batch_id == batch_id)
