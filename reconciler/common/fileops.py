"""File primitives every writer shares: a file replaced whole, and a lock file that names its holder.

Every file the reconciler writes (state, caches, results, downloads, retry inputs, saved
plans) goes through `replacing`, so readers see the old content or the new, never half of it:
a temp file beside the target, named after the writer's pid so a writer killed mid-write can
be told from a live one, renamed over the target only when the block succeeds, and removed
when it fails.

An exclusive lock (`holding`) is held with flock, so whoever is refused learns who to wait
for: the kernel drops it when the holder's process dies, however it dies.  The file's content
(pid, host, command, since) is only information for the refused (`holder`).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

from reconciler.common.errors import WriteError


def temp_name(path: Path) -> Path:
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


@contextlib.contextmanager
def replacing(
    path: Path, *, durable: bool = False, before_replace: Callable[[], None] | None = None
) -> Iterator[BinaryIO]:
    """Yields a binary stream; on success it replaces `path`.  `durable` fsyncs the data and
    the folder, for files whose loss would lose work (the state, results).  A write that
    fails (disk full, read-only folder) is a WriteError naming `path`, the old content intact."""
    temp = temp_name(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with temp.open("wb") as out:
            yield out
            if durable:
                out.flush()
                os.fsync(out.fileno())
        if before_replace is not None:
            before_replace()
        os.replace(temp, path)
    except BaseException as error:
        with contextlib.suppress(OSError):
            temp.unlink()
        if isinstance(error, OSError) and _writing(error, path):
            raise WriteError.of(path, error) from None
        raise
    if durable:
        fsync_dir(path.parent)


def _writing(error: OSError, path: Path) -> bool:
    """The error came from writing here (the folder, the temp file, the backup beside it), not
    from reading some other file inside the block."""
    if error.filename is None:
        return True
    failed = Path(os.fsdecode(error.filename))
    return path.is_relative_to(failed) or failed.parent == path.parent


def write_bytes(path: Path, data: bytes, *, durable: bool = False) -> None:
    with replacing(path, durable=durable) as out:
        out.write(data)


def fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


POLL_SECONDS = 0.05


@contextlib.contextmanager
def holding(path: Path, command: str, timeout: float) -> Iterator[bool]:
    """Holds the lock for the block, waiting up to `timeout` seconds; yields False (holding
    nothing) when it stayed taken.  Callers turn that into their own error with `holder(path)`."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as error:
        raise WriteError.of(path, error) from None
    try:
        if not _acquire(fd, timeout):
            yield False
            return
        record = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "command": command,
            "since": datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
        }
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(record).encode(), 0)
        yield True
    finally:
        os.close(fd)  # closing releases the flock


def _acquire(fd: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if time.monotonic() >= deadline:
                return False
            time.sleep(POLL_SECONDS)


def holder(path: Path, settle: float = 0.5) -> str:
    """`pid 12 on host (reconciler apply, since …)`, or a pointer to the file when unreadable.

    A holder writes its record just after taking the lock: an empty file is given up to
    `settle` seconds to be filled before the refused is told only where the file is."""
    deadline = time.monotonic() + settle
    while True:
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
            return f"pid {record['pid']} on {record['host']} ({record['command']}, since {record['since']})"
        except (OSError, ValueError, KeyError, TypeError):
            if time.monotonic() >= deadline:
                return f"another process (lock file {path})"
            time.sleep(POLL_SECONDS)
