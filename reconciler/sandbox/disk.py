"""What the sandbox keeps on disk, and the primitives the stores share to keep it: atomic writes,
cross-process locks, sortable ids.

Files' metadata and batches' records.  A batch record stores only what cannot be derived: when
it was created, the timeline knobs it was created under, the outcome of validating its input,
a cancel request, and the files written when it ended. Its status at any moment is computed
from these (see lifecycle.py).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import secrets
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict


class Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class FileRecord(Frozen):
    """The File object; `expires_at` (unix seconds) is when the file is deleted, None: never."""

    id: str
    object: Literal["file"] = "file"
    bytes: int
    created_at: int
    filename: str
    purpose: str
    status: str = "processed"
    expires_at: int | None = None
    status_details: str | None = None


class BatchErrorItem(Frozen):
    code: str
    message: str
    param: str | None = None
    line: int | None = None


class Timeline(Frozen):
    validation_seconds: float
    requests_per_second: float
    finalizing_seconds: float
    expiry_seconds: float
    start_failure: str | None = None  # a Portkey terminal status the batch ends in, unrun
    file_lifetime_scale: float = 1.0  # of its output and error files' lifetime


class Usage(Frozen):
    input_tokens: int = 0
    output_tokens: int = 0

    def plus(self, other: Usage) -> Usage:
        return Usage(
            input_tokens=self.input_tokens + other.input_tokens,
            output_tokens=self.output_tokens + other.output_tokens,
        )

    def public(self) -> dict[str, Any]:
        return {
            "input_tokens": self.input_tokens,
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": self.output_tokens,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": self.input_tokens + self.output_tokens,
        }


class Validation(Frozen):
    """The input as found when validation ran; `errors` non-empty means the batch failed."""

    total: int = 0
    model: str | None = None
    failing: tuple[int, ...] = ()  # 0-based request indices the model answers with an HTTP error
    errors: tuple[BatchErrorItem, ...] = ()


class CancelRequest(Frozen):
    at: float
    seconds: float


class Outcome(Frozen):
    output_file_id: str | None = None
    error_file_id: str | None = None
    usage: Usage = Usage()


class QueueEntry(Frozen):
    """What a batch holds of its model's queue while unfinished (config.QueueLimit)."""

    model: str
    tokens: int
    requests: int


class BatchRecord(Frozen):
    id: str
    endpoint: str
    input_file_id: str
    completion_window: str
    metadata: dict[str, str] | None = None
    output_expires_seconds: int | None = None
    created: float  # unix seconds, unrounded: the timeline is computed from it
    timeline: Timeline
    validation: Validation | None = None
    cancel: CancelRequest | None = None
    outcome: Outcome | None = None
    queue: QueueEntry | None = None  # counted against the queue limits (only when limits are set)
    refused: BatchErrorItem | None = None  # passed a queue limit: fails when validation ends


T = TypeVar("T")

_id_lock = threading.Lock()
_last_ns = 0


def unique_ns() -> int:
    """time.time_ns(), strictly increasing within this process (ids made from it never collide)."""
    global _last_ns
    with _id_lock:
        _last_ns = max(time.time_ns(), _last_ns + 1)
        return _last_ns


def sortable_id(prefix: str, at_ns: int, tail: str | None = None) -> str:
    """Ids that sort by creation time as plain strings, so listing newest-first is a name sort."""
    return f"{prefix}{at_ns:016x}{tail if tail is not None else secrets.token_hex(8)}"


def write_atomically(path: Path, data: bytes) -> None:
    """Readers in any process see the old file or the new one, never half of one."""
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)
        raise


def write_json(path: Path, value: Any) -> None:
    write_atomically(path, json.dumps(value, separators=(",", ":"), sort_keys=True).encode())


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """An exclusive flock: excludes other processes and, being per open file, other threads too."""
    with open(path, "a+b") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


class StatCache(Generic[T]):
    """Parsed files, re-read only when the file on disk changed (new inode, mtime or size).

    Atomic replacement always gives a new inode, so another process's write is not missed.
    """

    def __init__(self, parse: Callable[[bytes], T]) -> None:
        self._parse = parse
        self._lock = threading.Lock()
        self._entries: dict[str, tuple[tuple[int, int, int], T]] = {}

    def read(self, path: str) -> T | None:
        try:
            info = os.stat(path)
            key = (info.st_ino, info.st_mtime_ns, info.st_size)
            with self._lock:
                cached = self._entries.get(path)
            if cached is not None and cached[0] == key:
                return cached[1]
            with open(path, "rb") as handle:
                info = os.fstat(handle.fileno())  # the file we parse, even if replaced since stat
                key = (info.st_ino, info.st_mtime_ns, info.st_size)
                value = self._parse(handle.read())
        except FileNotFoundError:
            return None
        with self._lock:
            self._entries[path] = (key, value)
        return value

    def forget(self, path: str) -> None:
        with self._lock:
            self._entries.pop(path, None)


class Listing:
    """The sorted ids of a folder's `<id>.json` files, rescanned only when the folder changed.

    A folder's mtime moves on every entry added, removed or replaced, but only at the clock's
    tick: a scan is reused only if it began well after the last change, so a change in the
    same tick as the scan can never be hidden behind an unchanged mtime.
    """

    _SETTLE_NS = 50_000_000

    def __init__(self, folder: Path, valid: re.Pattern[str]) -> None:
        self._folder = folder
        self._valid = valid
        self._lock = threading.Lock()
        self._cached: tuple[int, list[str]] | None = None

    def ids(self) -> list[str]:
        changed = os.stat(self._folder).st_mtime_ns
        with self._lock:
            cached = self._cached
        if cached is not None and cached[0] == changed:
            return cached[1]
        started = time.time_ns()
        with os.scandir(self._folder) as entries:
            names = (entry.name[:-5] for entry in entries if entry.name.endswith(".json"))
            found = sorted(name for name in names if self._valid.match(name))
        if started - changed > self._SETTLE_NS:
            with self._lock:
                self._cached = (changed, found)
        return found
