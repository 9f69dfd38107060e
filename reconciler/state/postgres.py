"""The state in PostgreSQL: one database for every machine and replica reconciling an owner.

The same document as the state file (format version, serial, lineage, owner), one row per
serial, so every version is kept (`reconciler state history`, `state show SERIAL`).  A write
is a transaction that moves the owner's head from the serial it read to the next one and adds
that version: a writer whose read went stale is refused instead of losing an update.

The URL never holds a password unless it came from the environment; whatever is shown of it
(messages, logs, `where`) has the password removed.
"""

from __future__ import annotations

import contextlib
import functools
import os
import socket
from collections.abc import Callable, Iterator
from typing import Any, ParamSpec, TypeVar

from reconciler.common.errors import LockHeldError, StateError
from reconciler.state.backend import Version
from reconciler.state.document import REBUILD_HINT, parse_state
from reconciler.state.file import new_state
from reconciler.state.lock import lock_timeout
from reconciler.state.model import FORMAT_VERSION, State
from reconciler.state.pg_connect import SESSION, connect, display_url, scrubbed
from reconciler.state.postgres_locks import WRITER, AdvisoryLock

P = ParamSpec("P")
R = TypeVar("R")


def _database_errors(method: Callable[P, R]) -> Callable[P, R]:
    """A failing database is one line naming it, never a psycopg traceback."""

    @functools.wraps(method)
    def guarded(*args: P.args, **kwargs: P.kwargs) -> R:
        import psycopg

        try:
            return method(*args, **kwargs)
        except psycopg.Error as error:
            backend = args[0]
            assert isinstance(backend, PostgresBackend)
            said = scrubbed(error, backend.url)
            if error.sqlstate == LOCK_NOT_AVAILABLE:
                said += f" (another session held a state row past {SESSION['lock_timeout']}); run again"
            raise StateError(f"{backend.where}: {said}") from None

    return guarded


LOCK_NOT_AVAILABLE = "55P03"  # lock_timeout ran out


class PostgresBackend:
    def __init__(self, url: str, owner_tag: str, conn: Any) -> None:
        self.url, self.owner_tag, self.conn = url, owner_tag, conn
        self.writer = f"(pid {os.getpid()} on {socket.gethostname()})"

    @classmethod
    def connect(cls, url: str, owner_tag: str) -> PostgresBackend:
        return cls(url, owner_tag, connect(url))

    @property
    def where(self) -> str:
        return display_url(self.url)

    def close(self) -> None:
        self.conn.close()

    @_database_errors
    def read(self) -> State:
        row = self._document_row(
            "SELECT v.serial, v.document FROM reconciler_state_heads h JOIN reconciler_state_versions v "
            "ON v.owner = h.owner AND v.serial = h.serial WHERE h.owner = %s",
            (self.owner_tag,),
        )
        return self._parsed(row[1], row[0]) if row else new_state(self.owner_tag)

    @_database_errors
    def write(self, state: State) -> State:
        from psycopg.types.json import Jsonb

        update = {"serial": state.serial + 1, "owner": self.owner_tag, "format_version": FORMAT_VERSION}
        written = state.model_copy(update=update)
        with self.conn.transaction():
            if state.serial == 0:
                moved = self.conn.execute(
                    "INSERT INTO reconciler_state_heads (owner, serial, lineage) VALUES (%s, %s, %s) "
                    "ON CONFLICT (owner) DO NOTHING",
                    (self.owner_tag, written.serial, written.lineage),
                )
            else:
                moved = self.conn.execute(
                    "UPDATE reconciler_state_heads SET serial = %s, lineage = %s "
                    "WHERE owner = %s AND serial = %s",
                    (written.serial, written.lineage, self.owner_tag, state.serial),
                )
            if moved.rowcount != 1:
                raise StateError(
                    f"{self.where}: the state moved on to serial {self._head()} while this pass "
                    f"worked from serial {state.serial} (a writer without the lock?); nothing "
                    "written; run again"
                )
            self.conn.execute(
                "INSERT INTO reconciler_state_versions (owner, serial, lineage, document, written_by) "
                "VALUES (%s, %s, %s, %s, %s)",
                (
                    self.owner_tag,
                    written.serial,
                    written.lineage,
                    Jsonb(written.model_dump(mode="json")),
                    self.writer,
                ),
            )
        return written

    @_database_errors
    def fresh(self) -> State:
        """The old versions stay kept; the new lineage continues from the current serial."""
        return new_state(self.owner_tag).model_copy(update={"serial": self._head()})

    @contextlib.contextmanager
    def writer_lock(self, command: str, timeout: float | None = None) -> Iterator[None]:
        lock = AdvisoryLock(self.conn, self.owner_tag, WRITER)
        if not self._acquire(lock, command, lock_timeout() if timeout is None else timeout):
            holder = _guarded(self, lock.holder)
            raise LockHeldError(
                f"state is locked by {holder} (owner {self.owner_tag}, in {self.where}); "
                "wait for it to finish or stop it"
            )
        self.writer = f"{command} (pid {os.getpid()} on {socket.gethostname()})"
        try:
            yield
        finally:
            with contextlib.suppress(Exception):  # a lost connection released it already
                lock.release()

    @_database_errors
    def _acquire(self, lock: AdvisoryLock, command: str, timeout: float) -> bool:
        return lock.acquire(command, timeout)

    @_database_errors
    def history(self, limit: int) -> list[Version]:
        rows = self.conn.execute(
            "SELECT serial, lineage, to_char(written_at AT TIME ZONE 'UTC', "
            '\'YYYY-MM-DD"T"HH24:MI:SS"Z"\'), written_by, '
            "(SELECT count(*) FROM jsonb_object_keys(document -> 'jobs')) "
            "FROM reconciler_state_versions WHERE owner = %s ORDER BY serial DESC LIMIT %s",
            (self.owner_tag, limit),
        ).fetchall()
        return [Version(int(r[0]), str(r[1]), r[2], r[3], int(r[4])) for r in rows]

    @_database_errors
    def version(self, serial: int) -> State:
        row = self._document_row(
            "SELECT document FROM reconciler_state_versions WHERE owner = %s AND serial = %s",
            (self.owner_tag, serial),
        )
        if row is None:
            raise StateError(
                f"{self.where}: no serial {serial} for owner {self.owner_tag}; see `state history`"
            )
        return self._parsed(row[0], serial)

    def _head(self) -> int:
        row = self.conn.execute(
            "SELECT serial FROM reconciler_state_heads WHERE owner = %s", (self.owner_tag,)
        ).fetchone()
        return int(row[0]) if row else 0

    def _document_row(self, sql: str, params: tuple[object, ...]) -> Any:
        """The row holding a document; jsonb nested deeper than JSON decoding follows (the
        server stores a few thousand levels) is damage, not a crash."""
        try:
            return self.conn.execute(sql, params).fetchone()
        except RecursionError:
            raise StateError(
                f"{self.where}: state is damaged (nested too deeply); kept as is; {REBUILD_HINT}"
            ) from None

    def _parsed(self, document: Any, serial: int) -> State:
        return parse_state(document, self.where, f"state serial {serial}")


def _guarded(backend: PostgresBackend, read: Callable[[], str]) -> str:
    try:
        return read()
    except Exception:  # naming the holder is a courtesy: never let it hide the refusal
        return "another session"
