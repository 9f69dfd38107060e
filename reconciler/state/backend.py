"""Where the state is kept: one interface, two backends.

`file` (file_backend.py): the local state file, the default.  `postgresql` (postgres.py): one
database shared by every machine that reconciles an owner, keeping every serial as a version.
Both give a pass the owner's writer lock (one writer per owner, whatever the state file or
machine), reads, and writes that bump the serial; passes reach the state through nothing else.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from reconciler.state.model import State


@dataclass(frozen=True)
class Version:
    """One kept serial of the state: what `reconciler state history` lists."""

    serial: int
    lineage: str
    written_at: str | None  # ISO 8601, UTC
    written_by: str | None  # `reconciler apply (pid 12 on host)`
    jobs: int


class StateBackend(Protocol):
    @property
    def where(self) -> str:
        """The state's location for messages: a path, or the URL without its password."""

    def read(self) -> State:
        """The current state; none yet is an empty state, a damaged one a StateError."""

    def write(self, state: State) -> State:
        """Writes `state` with the serial bumped; refuses (StateError) a lost update."""

    def fresh(self) -> State:
        """An empty state to rebuild into, the current one set aside (kept, never deleted)."""

    def writer_lock(
        self, command: str, timeout: float | None = None
    ) -> contextlib.AbstractContextManager[None]:
        """The owner's writer lock for a whole pass; LockHeldError naming the holder when it
        stays taken past `timeout` (default $RECONCILER_LOCK_TIMEOUT, else 5 s)."""

    def history(self, limit: int) -> list[Version]:
        """The newest `limit` kept versions, newest first."""

    def version(self, serial: int) -> State:
        """The state as written at `serial`; StateError when that serial is not kept."""


@contextlib.contextmanager
def open_backend(path: Path, url: str | None, owner_tag: str | None) -> Iterator[StateBackend]:
    """The backend for a state file `path`, or for the database at `url` (owner_tag keys it)."""
    if url is None:
        from reconciler.state.file_backend import FileBackend

        yield FileBackend(path, owner_tag)
        return
    from reconciler.state.postgres import PostgresBackend  # only its users pay for psycopg

    if owner_tag is None:
        raise AssertionError("a PostgreSQL state is keyed by its owner")
    backend = PostgresBackend.connect(url, owner_tag)
    try:
        yield backend
    finally:
        backend.close()
