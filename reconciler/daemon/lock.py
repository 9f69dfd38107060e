"""One daemon per state file, for the daemon's whole life.

A lock file beside the state (`<state>.daemon.lock`) that names its holder.  It is separate
from the state lock, which every pass takes only briefly, so `status`, `plan` and a manual
`apply` keep working between the daemon's passes.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from reconciler.common import fileops
from reconciler.common.errors import LockHeldError

COMMAND = "reconciler reconcile --watch"


def daemon_lock_path(state: Path) -> Path:
    return state.with_name(state.name + ".daemon.lock")


@contextlib.contextmanager
def hold_daemon_lock(state: Path) -> Iterator[Path]:
    """Held until the block ends (or the process dies: the kernel drops a flock with its owner)."""
    path = daemon_lock_path(state)
    with fileops.holding(path, COMMAND, timeout=0) as held:
        if not held:
            raise LockHeldError(
                f"{state}: another daemon already reconciles this state file: {fileops.holder(path)}; "
                "stop it first, or give this one another --state"
            )
        yield path
