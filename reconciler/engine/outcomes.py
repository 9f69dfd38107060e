"""What became of each request: output and error files, downloaded once, read per part, each line
bounded whatever the server sends.

A request's outcome is `None` when it succeeded, else a reason.  The reasons `retry.on`
may name (documented in the README):

| reason           | when                                                              |
|------------------|-------------------------------------------------------------------|
| `batch_expired`  | the 24 h window ran out first (error file, `error.code`)          |
| `server_error`   | the provider answered it with a 5xx status                        |
| `rate_limited`   | the provider answered it with 429                                 |
| `batch_failed`   | the whole batch failed (e.g. `token_limit_exceeded`), so no answer; |
|                  | also Portkey's `file_upload_failed` and `batch_start_failed`      |

Other outcomes (`client_error` for a 4xx, or for an answer longer than the bound of one
result line; `batch_cancelled`) are final: sending them again would fail the same way, or
undo what the user asked for.

A result line is read whole only when it is at most `MAX_LINE_BYTES` long. That bound is above
the largest legitimate output line (an embeddings answer of 2,048 inputs of 3,072 dimensions,
written as JSON floats, is about 90 MiB); a longer line is measured in chunks, never held,
and stands as an error for its request (`line_too_long`), named from the line's first bytes.
Lines for requests the job never sent (a custom_id not in its input) are skipped and counted.
Both are reported as one warning per file and process, never as a crash.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import threading
from collections import OrderedDict
from collections.abc import Container, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO
from urllib.parse import quote

from reconciler.api.reader import BatchReader
from reconciler.common import fileops
from reconciler.common.ownership import DEFAULT_RUN
from reconciler.plans.runs import file_part
from reconciler.state.model import BatchRecord

log = logging.getLogger("reconciler")

MIB = 1 << 20
MAX_LINE_BYTES = 128 * MIB
TOO_LONG = "line_too_long"
_CHUNK = MIB
_HEAD = 4096  # of a line, the bytes searched for its custom_id
_CUSTOM_ID = re.compile(rb'"custom_id"\s*:\s*("(?:[^"\\]|\\.){1,512}")')
_REPORTED_MAX = 1024


@dataclass(frozen=True, slots=True)
class RawLine:
    offset: int
    number: int  # 1-based
    size: int
    data: bytes | None  # None: longer than the bound, not read
    first: bytes  # the line's first chunk: all of it, or the start of a longer one


def raw_lines(stream: BinaryIO, limit: int = MAX_LINE_BYTES) -> Iterator[RawLine]:
    """Every line of a seekable stream; one longer than `limit` without its bytes."""
    offset = number = 0
    while first := stream.readline(_CHUNK):
        number += 1
        size = len(first)
        if first.endswith(b"\n") or size < _CHUNK:  # whole (a short last line has no newline)
            yield RawLine(offset, number, size, first if size <= limit else None, first)
            offset += size
            continue
        while (more := stream.readline(_CHUNK)) and not more.endswith(b"\n"):
            size += len(more)
        size += len(more)
        data = None
        if size <= limit:
            stream.seek(offset)
            data = stream.read(size)
        yield RawLine(offset, number, size, data, first)
        offset += size


def read_line_at(stream: BinaryIO, offset: int) -> bytes:
    """The line at `offset`, bounded like every other (an over-long one comes back cut)."""
    stream.seek(offset)
    return stream.readline(MAX_LINE_BYTES + 1)


def custom_id_in(line: bytes) -> str | None:
    """The custom_id named in a line's first bytes, found without parsing the line (the first
    `"custom_id"` key: a bare one cannot occur inside a JSON string)."""
    found = _CUSTOM_ID.search(line, 0, _HEAD)
    if found is None:
        return None
    quoted = found.group(1)
    if b"\\" not in quoted:
        try:
            return quoted[1:-1].decode()
        except UnicodeDecodeError:
            return None
    try:
        value = json.loads(quoted)
    except ValueError:
        return None
    return value if isinstance(value, str) else None


def too_long_line(custom_id: str | None, size: int) -> dict[str, object]:
    """What stands for an over-long line: an error for its request, shaped like an output line."""
    message = f"the provider's answer is {size:,} bytes, over the {MAX_LINE_BYTES:,}-byte bound of one line"
    return {"custom_id": custom_id, "response": None, "error": {"code": TOO_LONG, "message": message}}


Located = tuple[int | None, dict[str, object]]  # (byte offset, line); None: not to be read again


def result_lines(path: Path, sent: Container[str] | None = None) -> Iterator[Located]:
    """(byte offset, parsed line) for each JSON object line of a result file; for an over-long
    line (offset None) the error that stands for it. With `sent`, only the lines of those
    custom_ids. What was skipped is reported once per file, when the file has been read."""
    tally = _Tally()
    with path.open("rb") as stream:
        for raw in raw_lines(stream):
            if sent is not None and raw.data is not None:
                named = custom_id_in(raw.data)  # cheaper than parsing a line only to skip it
                if named is not None and named not in sent:
                    tally.unsent += 1
                    continue
            line = _parsed(raw, tally)
            custom_id = line.get("custom_id") if line is not None else None
            if line is None or not isinstance(custom_id, str):
                continue
            if sent is not None and custom_id not in sent:
                tally.unsent += 1
                continue
            yield (raw.offset if raw.data is not None else None), line
    tally.report(path)


class LineSplitter:
    """Lines of a stream pushed in chunks (a download being read as it arrives), each bounded:
    a line past `limit` is dropped as it grows and comes out as None."""

    def __init__(self, limit: int = MAX_LINE_BYTES) -> None:
        self.limit = limit
        self._pending = bytearray()
        self._skipping = False

    def reset(self) -> None:
        self._pending.clear()
        self._skipping = False

    def feed(self, chunk: bytes) -> Iterator[bytes | None]:
        start = 0
        while (end := chunk.find(b"\n", start)) != -1:
            yield from self._ended(chunk[start:end])
            start = end + 1
        self._grow(chunk[start:])

    def finish(self) -> Iterator[bytes | None]:
        if self._pending or self._skipping:
            yield from self._ended(b"")

    def _grow(self, part: bytes) -> None:
        if self._skipping:
            return
        self._pending += part
        if len(self._pending) > self.limit:
            self._pending.clear()
            self._skipping = True

    def _ended(self, tail: bytes) -> Iterator[bytes | None]:
        self._grow(tail)
        line = None if self._skipping else bytes(self._pending)
        self.reset()
        yield line


@dataclass
class _Tally:
    unsent: int = 0
    too_long: int = 0
    first_too_long: int = 0  # its line number

    def report(self, path: Path) -> None:
        if not (self.unsent or self.too_long) or not _first_report(path):
            return
        problems = []
        if self.too_long:
            problems.append(
                f"{self.too_long} line(s) over the {MAX_LINE_BYTES // MIB} MiB bound of one result line "
                f"(the first is line {self.first_too_long}), each recorded as a {TOO_LONG} error"
            )
        if self.unsent:
            problems.append(f"{self.unsent:,} line(s) for requests this job never sent, ignored")
        log.warning("result file %s: %s", path.stem, "; ".join(problems))


def _parsed(raw: RawLine, tally: _Tally) -> dict[str, object] | None:
    if raw.data is None:
        tally.too_long += 1
        tally.first_too_long = tally.first_too_long or raw.number
        return too_long_line(custom_id_in(raw.first), raw.size)
    if not raw.data.strip():
        return None
    try:
        line = json.loads(raw.data)
    except ValueError:
        return None
    return line if isinstance(line, dict) else None


_reported: OrderedDict[tuple[str, int, int], None] = OrderedDict()
_reported_lock = threading.Lock()  # passes of several jobs may read files at once


def _first_report(path: Path) -> bool:
    """Whether this version of the file has not been reported by this process yet: the daemon
    reads a finished part's files again on later passes, and says it once."""
    try:
        info = path.stat()
    except OSError:
        return True
    key = (str(path), info.st_size, info.st_mtime_ns)
    with _reported_lock:
        if key in _reported:
            return False
        _reported[key] = None
        while len(_reported) > _REPORTED_MAX:
            _reported.popitem(last=False)
    return True


def classify(line: dict[str, object]) -> str | None:
    error = line.get("error")
    if isinstance(error, dict) and error:
        code = error.get("code")
        return code if code in ("batch_expired", "batch_cancelled") else "client_error"
    response = line.get("response")
    status = response.get("status_code") if isinstance(response, dict) else None
    if not isinstance(status, int):
        return "client_error"
    if status < 300:
        return None
    if status == 429:
        return "rate_limited"
    return "server_error" if status >= 500 else "client_error"


# Portkey's own terminal statuses: its upload to the provider, or the provider's batch start,
# failed.  Nothing ran, so the requests are as retryable as those of a failed batch.
UNANSWERED = {
    "failed": "batch_failed",
    "file_upload_failed": "batch_failed",
    "batch_start_failed": "batch_failed",
    "expired": "batch_expired",
}


def unanswered_reason(batch: BatchRecord) -> str:
    return UNANSWERED.get(batch.status, "batch_cancelled")


class WorkDir:
    """Downloaded result files under `<state dir>/work/<job>/<generation>[/<run>]/`."""

    def __init__(self, root: Path, job: str, generation: str, run: str | None = None) -> None:
        self.path = root / job / generation
        if run and run != DEFAULT_RUN:
            self.path = self.path / file_part(run)

    def result_files(self, batch: BatchRecord) -> list[Path]:
        return [target for _, target in self._targets(batch)]

    def download(self, reader: BatchReader, batch: BatchRecord) -> list[Path]:
        """Fetches a finished batch's output and error files, once; returns their paths."""
        self.path.mkdir(parents=True, exist_ok=True)
        for file_id, target in self._targets(batch):
            if not target.exists():
                with fileops.replacing(target) as out:
                    reader.download_file(file_id, out)
        return self.result_files(batch)

    def output_file(self, file_id: str) -> Path:
        """Where `download` keeps a result file (it may not be there)."""
        return self.path / f"{_file_name(file_id)}.jsonl"

    def download_one(self, reader: BatchReader, file_id: str, target: Path) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        with fileops.replacing(target) as out:
            reader.download_file(file_id, out)

    def targets(self, batch: BatchRecord) -> list[tuple[str, Path]]:
        """(file id, where it is kept) for a batch's output and error files."""
        return self._targets(batch)

    def _targets(self, batch: BatchRecord) -> list[tuple[str, Path]]:
        ids = [batch.output_file_id, batch.error_file_id]
        return [(file_id, self.path / f"{_file_name(file_id)}.jsonl") for file_id in ids if file_id]

    def retry_input(self, part: int, retry: int) -> Path:
        """The one place a retry input's path is decided: written by engine/sources.py."""
        return self.path / f"part-{part}-retry-{retry}.jsonl"


def _file_name(file_id: str) -> str:
    """A file id is the server's word: quoted, it is one file name, never a path out of here."""
    name = quote(file_id, safe="")
    return name if len(name) <= 200 else hashlib.sha256(file_id.encode()).hexdigest()


def part_outcomes(
    attempts: list[tuple[BatchRecord, list[Path]]], sent: Container[str]
) -> dict[str, str | None]:
    """custom_id → final outcome over a part's attempts, oldest first; success is final. Only
    the part's own requests (`sent`): a line for any other is the server's mistake."""
    outcomes: dict[str, str | None] = {}
    for _, files in attempts:
        for path in files:
            for _, line in result_lines(path, sent):
                custom_id = str(line["custom_id"])
                if outcomes.get(custom_id, "") is not None:
                    outcomes[custom_id] = classify(line)
    return outcomes
