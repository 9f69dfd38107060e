"""The state in PostgreSQL: one database for every machine and replica reconciling an owner
(the connections, tables and locks are database.py's).

The same document as the state file (format version, serial, lineage, owner), kept as a row per
job and a pass log: a write stores only the jobs it changed (told by identity: a pass hands back
the very JobState objects it did not change), and the log keeps every serial as a version
(`reconciler state history`, `state show SERIAL`: the newest whole document at or before it,
and the changes since).  A write is a transaction that moves the owner's head from the serial it
read to the next one, upserts the changed jobs' rows and logs the change: a writer whose read
went stale is refused instead of losing an update.  The state last read or written is kept in
memory per database and owner; a read whose head has not moved since returns it without reading
a row of jobs.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, ParamSpec, TypeVar

from pydantic import ValidationError

from reconciler.common.errors import LockHeldError, StateError
from reconciler.state.backend import Version
from reconciler.state.database import (
    SESSION,
    WRITER,
    AdvisoryLock,
    LeaderLock,
    connect,
    display_url,
    scrubbed,
)
from reconciler.state.document import (
    REBUILD_HINT,
    JobLines,
    changed_jobs,
    encode_changes,
    encode_state,
    job_record,
    parse_state,
    with_changes,
)
from reconciler.state.file import lock_timeout, new_state
from reconciler.state.model import FORMAT_VERSION, JobState, State

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


# The state last read or written per (database, owner): its serial and lineage say whether the
# head moved since, and its job objects are what the next write is compared with, by identity.
# `rows`: the job rows hold it (not an older schema's whole document).
@dataclass(frozen=True)
class _Known:
    state: State
    rows: bool


_known: dict[tuple[str, str], _Known] = {}
_TOP_EXCLUDED = {"jobs", "serial", "lineage"}


class PostgresBackend:
    def __init__(self, url: str, owner_tag: str, conn: Any) -> None:
        self.url, self.owner_tag, self.conn = url, owner_tag, conn
        self.writer = f"(pid {os.getpid()} on {socket.gethostname()})"
        self.lines = JobLines()

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
        head = self.conn.execute(
            "SELECT serial, lineage, rows_serial FROM reconciler_state_heads WHERE owner = %s",
            (self.owner_tag,),
        ).fetchone()
        if head is None:
            return new_state(self.owner_tag)
        serial, lineage, rows_serial = int(head[0]), str(head[1]), head[2]
        known = _known.get(self._key)
        if known is not None and (known.state.serial, known.state.lineage) == (serial, lineage):
            return known.state
        if rows_serial == serial:
            state, rows = self._from_rows(serial, lineage), True
        else:  # an older schema's whole document: its rows are written by the next write
            row = self._document_row(
                "SELECT document FROM reconciler_state_versions WHERE owner = %s AND serial = %s",
                (self.owner_tag, serial),
            )
            state, rows = self._parsed(row[0] if row else None, serial), False
        _known[self._key] = _Known(state, rows)
        return state

    def _from_rows(self, serial: int, lineage: str) -> State:
        top = self._document_row("SELECT top FROM reconciler_state_heads WHERE owner = %s", (self.owner_tag,))
        fields = {
            **(top[0] if top and isinstance(top[0], dict) else {}),
            "serial": serial,
            "lineage": lineage,
        }
        header = self._parsed({**fields, "jobs": {}}, serial)
        records = self.conn.execute(
            "SELECT name, record::text FROM reconciler_state_jobs WHERE owner = %s ORDER BY name",
            (self.owner_tag,),
        ).fetchall()
        jobs = {}
        for name, record in records:
            try:
                jobs[str(name)] = _job(record)
            except ValidationError as error:
                deep = "recursion limit" in str(error.errors()[0].get("msg", ""))
                what = (
                    "state is damaged (nested too deeply)"
                    if deep
                    else f"state serial {serial} is damaged (at jobs.{name})"
                )
                raise StateError(f"{self.where}: {what}; kept as is; {REBUILD_HINT}") from None
        return header.model_copy(update={"jobs": jobs})

    @_database_errors
    def write(self, state: State) -> State:
        update = {"serial": state.serial + 1, "owner": self.owner_tag, "format_version": FORMAT_VERSION}
        written = state.model_copy(update=update)
        known = _known.pop(self._key, None)
        on_top = (
            known is not None
            and known.rows
            and (known.state.serial, known.state.lineage)
            == (
                state.serial,
                state.lineage,
            )
        )
        with self.conn.transaction():
            self._move_head(state, written)
            if on_top and known is not None:
                changes, count = self._write_changes(known.state, written), len(written.jobs)
                self._log(written, None, changes, count)
            else:
                self._write_rows(written)
                self._log(written, encode_state(written, self.lines), None, len(written.jobs))
        _known[self._key] = _Known(written, True)
        return written

    def _move_head(self, state: State, written: State) -> None:
        from psycopg.types.json import Jsonb

        top = Jsonb(written.model_dump(mode="json", exclude=_TOP_EXCLUDED))
        values = (written.serial, written.lineage, top, written.serial)
        if state.serial == 0:
            moved = self.conn.execute(
                "INSERT INTO reconciler_state_heads (owner, serial, lineage, top, rows_serial) "
                "VALUES (%s, %s, %s, %s, %s) ON CONFLICT (owner) DO NOTHING",
                (self.owner_tag, *values),
            )
        else:
            moved = self.conn.execute(
                "UPDATE reconciler_state_heads SET serial = %s, lineage = %s, top = %s, rows_serial = %s "
                "WHERE owner = %s AND serial = %s",
                (*values, self.owner_tag, state.serial),
            )
        if moved.rowcount != 1:
            raise StateError(
                f"{self.where}: the state moved on to serial {self._head()} while this pass "
                f"worked from serial {state.serial} (a writer without the lock?); nothing "
                "written; run again"
            )

    def _write_changes(self, before: State, after: State) -> bytes:
        """Upserts the rows of the jobs `after` changed (by identity), deletes those it dropped."""
        changed = changed_jobs(before, after)
        kept = [
            (self.owner_tag, name, after.serial, self.lines.of(name, job).decode())
            for name, job in changed.items()
            if job is not None
        ]
        gone = [(self.owner_tag, name) for name, job in changed.items() if job is None]
        with self.conn.cursor() as cursor:
            if kept:
                cursor.executemany(
                    "INSERT INTO reconciler_state_jobs (owner, name, serial, record) "
                    "VALUES (%s, %s, %s, %s) ON CONFLICT (owner, name) "
                    "DO UPDATE SET serial = EXCLUDED.serial, record = EXCLUDED.record",
                    kept,
                )
            if gone:
                cursor.executemany("DELETE FROM reconciler_state_jobs WHERE owner = %s AND name = %s", gone)
        return encode_changes(before, after, self.lines, changed)  # one walk of the jobs, not two

    def _write_rows(self, state: State) -> None:
        """Every job's row, written anew."""
        self.conn.execute("DELETE FROM reconciler_state_jobs WHERE owner = %s", (self.owner_tag,))
        with (
            self.conn.cursor() as cursor,
            cursor.copy("COPY reconciler_state_jobs (owner, name, serial, record) FROM STDIN") as copy,
        ):
            for name, job in state.jobs.items():
                copy.write_row((self.owner_tag, name, state.serial, self.lines.of(name, job).decode()))

    def _log(self, written: State, document: bytes | None, changes: bytes | None, jobs: int) -> None:
        self.conn.execute(
            "INSERT INTO reconciler_state_versions "
            "(owner, serial, lineage, document, changes, jobs, written_by) "
            "VALUES (%s, %s, %s, %s::jsonb, %s::jsonb, %s, %s)",
            (
                self.owner_tag,
                written.serial,
                written.lineage,
                document.decode() if document is not None else None,
                changes.decode() if changes is not None else None,
                jobs,
                self.writer,
            ),
        )

    @property
    def _key(self) -> tuple[str, str]:
        return (self.url, self.owner_tag)

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

    def settle(self, force: bool = False) -> float | None:
        """Nothing to fold: every write is already in its rows."""
        return None

    @_database_errors
    def _acquire(self, lock: AdvisoryLock, command: str, timeout: float) -> bool:
        return lock.acquire(command, timeout)

    def leadership(self) -> LeaderLock:
        return LeaderLock(self.url, self.owner_tag)

    @_database_errors
    def history(self, limit: int) -> list[Version]:
        rows = self.conn.execute(
            "SELECT serial, lineage, to_char(written_at AT TIME ZONE 'UTC', "
            '\'YYYY-MM-DD"T"HH24:MI:SS"Z"\'), written_by, '
            "COALESCE(jobs, (SELECT count(*) FROM jsonb_object_keys(document -> 'jobs'))) "
            "FROM reconciler_state_versions WHERE owner = %s ORDER BY serial DESC LIMIT %s",
            (self.owner_tag, limit),
        ).fetchall()
        return [Version(int(r[0]), str(r[1]), r[2], r[3], int(r[4])) for r in rows]

    @_database_errors
    def version(self, serial: int) -> State:
        """The newest whole document at or before `serial`, and the changes logged since."""
        rows = self._document_rows(
            "SELECT serial, document, changes FROM reconciler_state_versions WHERE owner = %s "
            "AND serial <= %s AND serial >= (SELECT max(serial) FROM reconciler_state_versions "
            "WHERE owner = %s AND serial <= %s AND document IS NOT NULL) ORDER BY serial",
            (self.owner_tag, serial, self.owner_tag, serial),
        )
        if not rows or int(rows[-1][0]) != serial:
            raise StateError(
                f"{self.where}: no serial {serial} for owner {self.owner_tag}; see `state history`"
            )
        base = self._parsed(rows[0][1], int(rows[0][0]))
        if len(rows) == 1:
            return base
        return with_changes(
            base, (row[2] or {} for row in rows[1:]), serial, f"{self.where}: state serial {serial}"
        )

    def _head(self) -> int:
        row = self.conn.execute(
            "SELECT serial FROM reconciler_state_heads WHERE owner = %s", (self.owner_tag,)
        ).fetchone()
        return int(row[0]) if row else 0

    def _document_row(self, sql: str, params: tuple[object, ...]) -> Any:
        """The row holding a document; jsonb nested deeper than JSON decoding follows (the
        server stores a few thousand levels) is damage, not a crash."""
        rows = self._document_rows(sql, params)
        return rows[0] if rows else None

    def _document_rows(self, sql: str, params: tuple[object, ...]) -> list[Any]:
        try:
            return list(self.conn.execute(sql, params).fetchall())
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


def _job(record: str) -> JobState:
    """A job's row; one written before intents had a state (format 3) read as today's."""
    try:
        return JobState.model_validate_json(record)
    except ValidationError as error:
        try:
            data = json.loads(record)
        except (ValueError, RecursionError):
            raise error from None
        if not isinstance(data, dict):
            raise
        return JobState.model_validate(job_record(data))
