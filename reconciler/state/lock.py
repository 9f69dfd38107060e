"""The state lock: one writer at a time for a state file, and a refusal that names the holder."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from reconciler.common import fileops
from reconciler.common.errors import LockHeldError, StateError
from reconciler.common.limits import parse_seconds
from reconciler.state.file import remove_stale_temps

LOCK_TIMEOUT_ENV = "RECONCILER_LOCK_TIMEOUT"
DEFAULT_LOCK_TIMEOUT = 5.0


@contextlib.contextmanager
def state_lock(path: Path, command: str, timeout: float | None = None) -> Iterator[None]:
    """Holds the state lock for the block; waits up to `timeout` seconds (default
    lock_timeout()), then fails naming the holder."""
    lock_path = path.with_name(path.name + ".lock")
    wait = lock_timeout() if timeout is None else timeout
    with fileops.holding(lock_path, command, wait) as held:
        if not held:
            holder = fileops.holder(lock_path)
            raise LockHeldError(f"state is locked by {holder}; wait for it to finish or stop it")
        remove_stale_temps(path)
        yield


def lock_timeout() -> float:
    """$RECONCILER_LOCK_TIMEOUT seconds, else 5."""
    raw = os.environ.get(LOCK_TIMEOUT_ENV)
    try:
        return parse_seconds(raw) if raw else DEFAULT_LOCK_TIMEOUT
    except ValueError as error:
        raise StateError(f"${LOCK_TIMEOUT_ENV}={raw!r} {error}") from None
