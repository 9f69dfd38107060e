"""Where the state is kept: one interface, two backends (open.py opens the one a command names).

`file` (file.py): the local state file, the default.  `postgresql` (postgres.py): one
database shared by every machine that reconciles an owner, keeping every serial as a version.
Both give a pass the owner's writer lock (one writer per owner, whatever the state file or
machine), reads, and writes that bump the serial and store only the jobs a pass changed;
passes reach the state through nothing else.
Both give the daemon its leadership guard: which replica runs the passes.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
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


class Leadership(Protocol):
    """The daemon's guard, entered for its whole life: which replica runs the passes."""

    @property
    def always_leads(self) -> bool:
        """True where only one daemon can run at all (a state file): there is nothing to elect."""

    def __enter__(self) -> Leadership:
        """Takes what must be held from the start; LockHeldError when another daemon has it."""

    def __exit__(self, *exc: object) -> None:
        """Lets go of everything held."""

    def try_lead(self, command: str) -> bool:
        """Leads if it did or can now; False while another replica leads.  StateError when the
        store cannot be reached."""

    def holder(self) -> str:
        """Who leads instead, for a log line."""


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

    def settle(self, force: bool = False) -> float | None:
        """Brings what the writes of a pass left aside into the state's whole copy (a state file's
        journal) when due, or at once with `force`; else the seconds until it is due; None when
        nothing is owed.  The caller holds the writer lock."""

    def history(self, limit: int) -> list[Version]:
        """The newest `limit` kept versions, newest first."""

    def version(self, serial: int) -> State:
        """The state as written at `serial`; StateError when that serial is not kept."""

    def leadership(self) -> Leadership:
        """The daemon's guard for this state; nothing is held until it is entered."""
