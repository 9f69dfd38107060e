"""The answer store of incremental runs (spec.reuse; engine/reuse.py says what a run reuses).

Content-addressed by request identity: each row is one answer with status 200, kept as the line
the merged results file gave it (engine/results.py writes it back byte for byte, under the new
custom_id when that changed), with the job, run and generation that got it and when
(`answered_at`, the batch's end by the provider's clock).  Beside the answers: which batches were
read (`_answer_batches`) and what each run sent (`_answer_choices`).

    file state      <state dir>/answers.sqlite       (SQLite, beside the state file)
    PostgreSQL      reconciler_answers, _answer_batches, _answer_choices in the state's database,
                    keyed by owner: every checkout, CI runner and daemon replica shares them

Bounded: `prune` drops answers older than a pass asks and, past `$RECONCILER_ANSWERS_MAX_BYTES`
(2 GiB), the oldest first.  `plan` sees the store through `PlannedAnswers`: read as it is, never
created, what the pass would add held in memory.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sqlite3
import threading
from collections.abc import Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from reconciler.common.errors import StateError, UserError

STORE_FILE = "answers.sqlite"
MAX_BYTES_ENV = "RECONCILER_ANSWERS_MAX_BYTES"
DEFAULT_MAX_BYTES = 2 << 30
PRUNE_MARGIN = 7 * 86400  # a run collects what it chose within days: its answers stay that long
CHUNK = 500  # identities per query, lines per insert

_TABLES = {
    "reconciler_answers": "owner TEXT NOT NULL, identity TEXT NOT NULL, job TEXT NOT NULL, "
    "run TEXT NOT NULL, generation TEXT NOT NULL, batch_id TEXT NOT NULL, answered_at BIGINT NOT NULL, "
    "size BIGINT NOT NULL, line {blob} NOT NULL, PRIMARY KEY (owner, identity, job, run)",
    "reconciler_answer_batches": "owner TEXT NOT NULL, batch_id TEXT NOT NULL, read_at BIGINT NOT NULL, "
    "PRIMARY KEY (owner, batch_id)",
    "reconciler_answer_choices": "owner TEXT NOT NULL, sha256 TEXT NOT NULL, custom_ids TEXT NOT NULL, "
    "chosen_at BIGINT NOT NULL, PRIMARY KEY (owner, sha256)",
}
_AGE_INDEX = "CREATE INDEX IF NOT EXISTS reconciler_answers_age ON reconciler_answers (owner, answered_at)"
_made: set[str] = set()
_making = threading.Lock()


def max_store_bytes() -> int:
    raw = os.environ.get(MAX_BYTES_ENV)
    if not raw:
        return DEFAULT_MAX_BYTES
    if not raw.isdigit() or int(raw) < 1:
        raise UserError(f"${MAX_BYTES_ENV}={raw[:40]!r} must be a number of bytes, e.g. 1073741824")
    return int(raw)


@dataclass(frozen=True)
class Source:
    """Who got an answer: a job's run of one generation."""

    job: str
    generation: str
    run: str


@dataclass(frozen=True)
class Stored:
    identity: str
    source: Source
    answered_at: int


class AnswerStore:
    """The answers of one owner, in SQLite (a state file's folder) or PostgreSQL (its database)."""

    def __init__(self, conn: Any, owner: str, *, postgres: bool) -> None:
        self._conn = conn
        self._owner = owner
        self._postgres = postgres

    @classmethod
    def in_folder(cls, folder: Path, owner: str) -> AnswerStore:
        folder.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(folder / STORE_FILE, timeout=30, isolation_level=None)
        store = cls(conn, owner, postgres=False)
        store._make_tables("BLOB")
        return store

    @classmethod
    def in_database(cls, url: str, owner: str, *, create: bool = True) -> AnswerStore | None:
        """The store in the state's database; without `create`, None when its tables are not
        there (nothing is created: `plan` may run as a role that only reads)."""
        from reconciler.state import database  # psycopg only when a database is used

        store = cls(database.connect(url), owner, postgres=True)
        if not create:
            if url in _made or store._has_tables():
                return store
            store.close()
            return None
        with _making:
            if url not in _made:
                store._make_tables("BYTEA")
                _made.add(url)
        return store

    def _has_tables(self) -> bool:
        names = ", ".join(f"to_regclass('{name}')" for name in _TABLES)
        return all(found is not None for found in self._execute(f"SELECT {names}")[0])

    def close(self) -> None:
        self._conn.close()

    def _make_tables(self, blob: str) -> None:
        with self._transaction():
            if self._postgres:  # replicas starting together must not race to create one table
                self._execute("SELECT pg_advisory_xact_lock(%s)", (hash_key("answers"),))
            for name, columns in _TABLES.items():
                self._execute(f"CREATE TABLE IF NOT EXISTS {name} ({columns.format(blob=blob)})")
            self._execute(_AGE_INDEX)

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[None]:
        if self._postgres:
            with self._conn.transaction():
                yield
            return
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise
        self._conn.execute("COMMIT")

    def _execute(self, sql: str, params: Sequence[object] = ()) -> list[tuple[Any, ...]]:
        cursor = self._conn.execute(sql if self._postgres else sql.replace("%s", "?"), params)
        return list(cursor.fetchall()) if cursor.description else []

    def _executemany(self, sql: str, rows: Sequence[Sequence[object]]) -> None:
        cursor = self._conn.cursor()
        cursor.executemany(sql if self._postgres else sql.replace("%s", "?"), rows)

    # -- batches read

    def unread(self, batch_ids: Collection[str]) -> set[str]:
        """Of these batches, those whose answers the store has not read yet."""
        read: set[str] = set()
        for chunk in _chunks(sorted(batch_ids)):
            marks = ", ".join("%s" for _ in chunk)
            sql = f"SELECT batch_id FROM reconciler_answer_batches WHERE owner = %s AND batch_id IN ({marks})"
            read |= {row[0] for row in self._execute(sql, (self._owner, *chunk))}
        return set(batch_ids) - read

    def add(self, batch_id: str, answers: Iterable[tuple[str, Source, int, bytes]], now: int) -> int:
        """Stores a batch's answers (identity, source, answered_at, line) and marks it read."""
        sql = (
            "INSERT INTO reconciler_answers (owner, identity, job, run, generation, batch_id, answered_at, "
            "size, line) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s) "
            "ON CONFLICT (owner, identity, job, run) DO UPDATE SET generation = excluded.generation, "
            "batch_id = excluded.batch_id, answered_at = excluded.answered_at, size = excluded.size, "
            "line = excluded.line WHERE excluded.answered_at > reconciler_answers.answered_at"
        )
        count = 0
        with self._transaction():
            rows: list[tuple[object, ...]] = []
            for identity, source, at, line in answers:
                rows.append(
                    (
                        self._owner,
                        identity,
                        source.job,
                        source.run,
                        source.generation,
                        batch_id,
                        at,
                        len(line),
                        line,
                    )
                )
                if len(rows) >= CHUNK:
                    self._executemany(sql, rows)
                    count, rows = count + len(rows), []
            if rows:
                self._executemany(sql, rows)
                count += len(rows)
            self._execute(
                "INSERT INTO reconciler_answer_batches (owner, batch_id, read_at) VALUES (%s, %s, %s) "
                "ON CONFLICT (owner, batch_id) DO NOTHING",
                (self._owner, batch_id, now),
            )
        return count

    # -- answers

    def find(
        self, identities: Sequence[str], *, job: str | None, since: int, excluded: Source
    ) -> dict[str, Stored]:
        """Each identity's answer a run may reuse: answered at `since` or later, by `job` (None: any
        job of the owner), never by the run `excluded` itself; this job's own first, then the newest."""
        found: dict[str, Stored] = {}
        for chunk in _chunks(sorted(set(identities))):
            for identity, job_, run, generation, at in self._rows(
                "identity, job, run, generation, answered_at", chunk, job, since, excluded
            ):
                stored = Stored(identity, Source(job_, generation, run), at)
                if _better(stored, found.get(identity), excluded.job):
                    found[identity] = stored
        return found

    def lines(
        self, identities: Sequence[str], *, job: str | None, since: int, excluded: Source
    ) -> dict[str, bytes]:
        """The results line of each identity's answer, as `find` chooses it."""
        chosen = self.find(identities, job=job, since=since, excluded=excluded)
        lines: dict[str, bytes] = {}
        for chunk in _chunks(sorted(chosen)):
            for identity, job_, run, line in self._rows(
                "identity, job, run, line", chunk, job, since, excluded
            ):
                source = chosen[identity].source
                if (job_, run) == (source.job, source.run):
                    lines[identity] = bytes(line)
        return lines

    def _rows(
        self, columns: str, identities: Sequence[str], job: str | None, since: int, excluded: Source
    ) -> list[tuple[Any, ...]]:
        marks = ", ".join("%s" for _ in identities)
        # SQLite would take the age index for `answered_at >=` and scan every answer in range per
        # chunk (50,000 answers: 4 s a plan); a unary + leaves it the primary key's (owner, identity).
        age = "answered_at" if self._postgres else "+answered_at"
        sql = (
            f"SELECT {columns} FROM reconciler_answers WHERE owner = %s AND identity IN ({marks}) "
            f"AND {age} >= %s AND NOT (job = %s AND generation = %s AND run = %s)"
        )
        params: list[object] = [
            self._owner,
            *identities,
            since,
            excluded.job,
            excluded.generation,
            excluded.run,
        ]
        if job is not None:
            sql += " AND job = %s"
            params.append(job)
        return self._execute(sql, params)

    # -- what runs sent

    def remember_choice(self, sha256: str, custom_ids: Sequence[str], now: int) -> None:
        self._execute(
            "INSERT INTO reconciler_answer_choices (owner, sha256, custom_ids, chosen_at) "
            "VALUES (%s, %s, %s, %s) ON CONFLICT (owner, sha256) DO NOTHING",
            (self._owner, sha256, json.dumps(list(custom_ids)), now),
        )

    def choice(self, sha256: str) -> list[str] | None:
        rows = self._execute(
            "SELECT custom_ids FROM reconciler_answer_choices WHERE owner = %s AND sha256 = %s",
            (self._owner, sha256),
        )
        return [str(i) for i in json.loads(rows[0][0])] if rows else None

    # -- the bound

    def prune(self, older_than: int, max_bytes: int) -> None:
        """Drops answers answered before `older_than`, then the oldest while over `max_bytes`."""
        with self._transaction():
            self._execute(
                "DELETE FROM reconciler_answers WHERE owner = %s AND answered_at < %s",
                (self._owner, older_than),
            )
            self._execute(
                "DELETE FROM reconciler_answer_choices WHERE owner = %s AND chosen_at < %s",
                (self._owner, older_than),
            )
            total = self._execute(
                "SELECT COALESCE(SUM(size), 0) FROM reconciler_answers WHERE owner = %s", (self._owner,)
            )
            excess = int(total[0][0]) - max_bytes
            if excess <= 0:
                return
            cut = 0
            for at, size in self._execute(
                "SELECT answered_at, SUM(size) FROM reconciler_answers WHERE owner = %s "
                "GROUP BY answered_at ORDER BY answered_at",
                (self._owner,),
            ):
                excess -= int(size)
                cut = int(at) + 1
                if excess <= 0:
                    break
            self._execute(
                "DELETE FROM reconciler_answers WHERE owner = %s AND answered_at < %s", (self._owner, cut)
            )

    def total_bytes(self) -> int:
        rows = self._execute(
            "SELECT COALESCE(SUM(size), 0) FROM reconciler_answers WHERE owner = %s", (self._owner,)
        )
        return int(rows[0][0])


def hash_key(purpose: str) -> int:
    """A 63-bit advisory lock key of our own."""
    return int.from_bytes(hashlib.sha256(f"reconciler:{purpose}".encode()).digest()[:8], "big") >> 1


def _better(candidate: Stored, current: Stored | None, job: str) -> bool:
    if current is None:
        return True
    return (candidate.source.job == job, candidate.answered_at) > (
        current.source.job == job,
        current.answered_at,
    )


def _chunks(items: Sequence[str]) -> Iterator[Sequence[str]]:
    for start in range(0, len(items), CHUNK):
        yield items[start : start + CHUNK]


class Answers(Protocol):
    """What a pass asks of the answers: the store itself, or `PlannedAnswers` for a plan."""

    def unread(self, batch_ids: Collection[str]) -> set[str]: ...
    def add(self, batch_id: str, answers: Iterable[tuple[str, Source, int, bytes]], now: int) -> int: ...
    def find(
        self, identities: Sequence[str], *, job: str | None, since: int, excluded: Source
    ) -> dict[str, Stored]: ...
    def remember_choice(self, sha256: str, custom_ids: Sequence[str], now: int) -> None: ...
    def choice(self, sha256: str) -> list[str] | None: ...
    def prune(self, older_than: int, max_bytes: int) -> None: ...


class PlannedAnswers:
    """The store as `plan` sees it, writing nothing: the store read as it is (None when there is
    none yet: no file, no tables), and in memory what the pass would add to it (the answers of
    finished batches it has not read, the choices of runs that would start)."""

    def __init__(self, stored: AnswerStore | None) -> None:
        self._stored = stored
        self._memory = AnswerStore(sqlite3.connect(":memory:", isolation_level=None), "", postgres=False)
        self._memory._make_tables("BLOB")

    def close(self) -> None:
        self._memory.close()
        if self._stored is not None:
            self._stored.close()

    def unread(self, batch_ids: Collection[str]) -> set[str]:
        unread = self._memory.unread(batch_ids)
        return self._stored.unread(unread) if self._stored is not None else unread

    def add(self, batch_id: str, answers: Iterable[tuple[str, Source, int, bytes]], now: int) -> int:
        return self._memory.add(batch_id, answers, now)

    def find(
        self, identities: Sequence[str], *, job: str | None, since: int, excluded: Source
    ) -> dict[str, Stored]:
        found = self._memory.find(identities, job=job, since=since, excluded=excluded)
        if self._stored is not None:
            for identity, stored in self._stored.find(
                identities, job=job, since=since, excluded=excluded
            ).items():
                if _better(stored, found.get(identity), excluded.job):
                    found[identity] = stored
        return found

    def remember_choice(self, sha256: str, custom_ids: Sequence[str], now: int) -> None:
        self._memory.remember_choice(sha256, custom_ids, now)

    def choice(self, sha256: str) -> list[str] | None:
        remembered = self._memory.choice(sha256)
        if remembered is None and self._stored is not None:
            return self._stored.choice(sha256)
        return remembered

    def prune(self, older_than: int, max_bytes: int) -> None:
        """Nothing: only a pass that writes prunes."""


@contextlib.contextmanager
def planned_answers(state_path: Path, state_url: str | None, owner: str) -> Iterator[PlannedAnswers]:
    """The answer store for `plan`: opened read-only, never created."""
    answers = PlannedAnswers(_stored_read_only(state_path, state_url, owner))
    try:
        yield answers
    finally:
        answers.close()


def _stored_read_only(state_path: Path, state_url: str | None, owner: str) -> AnswerStore | None:
    if state_url is not None:
        return AnswerStore.in_database(state_url, owner, create=False)
    path = state_path.parent / STORE_FILE
    if not path.is_file():
        return None
    try:
        conn = sqlite3.connect(f"{path.absolute().as_uri()}?mode=ro", uri=True, timeout=30)
        conn.execute("SELECT 1 FROM reconciler_answers LIMIT 1").fetchall()
    except sqlite3.Error as error:
        raise StateError(f"{path}: cannot read the answer store: {error}") from None
    return AnswerStore(conn, owner, postgres=False)


@contextlib.contextmanager
def open_store(state_path: Path, state_url: str | None, owner: str) -> Iterator[AnswerStore]:
    """The answer store beside a state file, or in the state's database."""
    if state_url is None:
        try:
            store = AnswerStore.in_folder(state_path.parent, owner)
        except (sqlite3.Error, OSError) as error:
            raise StateError(
                f"{state_path.parent / STORE_FILE}: cannot open the answer store: {error}"
            ) from None
    else:
        made = AnswerStore.in_database(state_url, owner)
        assert made is not None  # created when missing
        store = made
    try:
        yield store
    finally:
        store.close()
