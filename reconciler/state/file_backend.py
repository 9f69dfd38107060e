"""The state file as a backend: the default, for one machine.

A pass holds the owner's lock (owner_lock.py: every state file of the owner on this machine)
and then the state file's own lock (lock.py), always in that order, so no two can wait on
each other.  The file keeps its latest serial and one backup, not every version.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

from reconciler.common import fileops
from reconciler.common.errors import LockHeldError, StateError
from reconciler.state.backend import Version
from reconciler.state.file import new_state, read_state, set_aside_damaged, write_state
from reconciler.state.lock import lock_timeout, state_lock
from reconciler.state.model import State
from reconciler.state.owner_lock import owner_lock_path


class FileBackend:
    def __init__(self, path: Path, owner_tag: str | None) -> None:
        self.path, self.owner_tag = path, owner_tag

    @property
    def where(self) -> str:
        return str(self.path)

    def read(self) -> State:
        return read_state(self.path)

    def write(self, state: State) -> State:
        return write_state(self.path, state)

    def fresh(self) -> State:
        set_aside_damaged(self.path)
        return new_state(self.owner_tag)

    @contextlib.contextmanager
    def writer_lock(self, command: str, timeout: float | None = None) -> Iterator[None]:
        wait = lock_timeout() if timeout is None else timeout
        with contextlib.ExitStack() as stack:
            if self.owner_tag is not None:
                stack.enter_context(_owner_lock(self.owner_tag, command, wait))
            stack.enter_context(state_lock(self.path, command, wait))
            yield

    def history(self, limit: int) -> list[Version]:
        """The file keeps two versions at most: itself and its backup."""
        kept = []
        for candidate in (self.path, self.path.with_name(self.path.name + ".backup")):
            if candidate.exists():
                state = read_state(candidate)
                stamp = datetime.fromtimestamp(candidate.stat().st_mtime, UTC)
                written = stamp.isoformat(timespec="seconds").replace("+00:00", "Z")
                kept.append(Version(state.serial, state.lineage, written, None, len(state.jobs)))
        return kept[:limit]

    def version(self, serial: int) -> State:
        for candidate in (self.path, self.path.with_name(self.path.name + ".backup")):
            if candidate.exists() and _serial_of(candidate) == serial:
                return read_state(candidate)
        raise StateError(
            f"{self.path}: serial {serial} is not kept; a state file keeps only its latest serial "
            "and one backup (a PostgreSQL state keeps every serial)"
        )


def _serial_of(path: Path) -> int | None:
    try:
        serial = json.loads(path.read_bytes()).get("serial")
    except (OSError, ValueError, AttributeError, RecursionError):
        return None
    return serial if isinstance(serial, int) else None


@contextlib.contextmanager
def _owner_lock(owner_tag: str, command: str, timeout: float) -> Iterator[None]:
    path = owner_lock_path(owner_tag)
    with fileops.holding(path, command, timeout) as held:
        if not held:
            raise LockHeldError(
                f"state is locked by {fileops.holder(path)} (owner {owner_tag}, in any checkout "
                "or state file on this machine); wait for it to finish or stop it"
            )
        yield
