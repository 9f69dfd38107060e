"""An exclusive lock file that names its holder, so whoever is refused learns who to wait for.

Held with flock: the kernel drops it when the holder's process dies, however it dies.  The
file's content (pid, host, command, since) is only information for the refused.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

from reconciler.common.errors import WriteError

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
