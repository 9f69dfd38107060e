"""One daemon per state file, for the daemon's whole life.

A lock file beside the state (`<state>.daemon.lock`), held with flock and naming its
holder. It is separate from the state lock, which every pass takes only briefly, so
`status`, `plan` and a manual `apply` keep working between the daemon's passes.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

from reconciler.common.errors import LockHeldError


def daemon_lock_path(state: Path) -> Path:
    return state.with_name(state.name + ".daemon.lock")


@contextlib.contextmanager
def hold_daemon_lock(state: Path) -> Iterator[Path]:
    """Held until the block ends (or the process dies: the kernel drops a flock with its owner)."""
    path = daemon_lock_path(state)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise LockHeldError(
                f"{state}: another daemon already reconciles this state file: {describe_holder(path)}; "
                "stop it first, or give this one another --state"
            ) from None
        holder = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "since": datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
        }
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(holder).encode(), 0)
        yield path
    finally:
        os.close(fd)


def describe_holder(path: Path) -> str:
    try:
        holder = json.loads(path.read_text(encoding="utf-8"))
        return f"pid {holder['pid']} on {holder['host']}, running since {holder['since']}"
    except (OSError, ValueError, KeyError, TypeError):
        return f"see {path}"
