"""Incremental runs (`spec.reuse`): the answer store, where its answers come from, and what a run
reuses instead of sending.

A request's identity is its endpoint and canonical body (specs/inputs/digest.request_identity);
its custom_id is only a label.  The store is content-addressed by identity: each row is one
answer with status 200, kept as the line the merged results file gave it (engine/results.py
writes it back byte for byte, under the new custom_id when that changed), with the job, run and
generation that got it and when (`answered_at`, the batch's end by the provider's clock).
Errors, expired and cancelled requests are never stored, so never reused.

    file state      <state dir>/answers.sqlite       (SQLite, beside the state file)
    PostgreSQL      reconciler_answers, _answer_batches, _answer_choices in the state's database,
                    keyed by owner: every checkout, CI runner and daemon replica shares them

Where answers come from: the provider's files.  Every finished batch of ours in the live list
(the state recorded it, or a rebuilt state found it) whose answers the store has not read yet is
read once: its input file (the requests' bodies) and its output file (their answers).  So a
fresh checkout, with no state folder, reuses too, for as long as the provider keeps the files.

Bounded: answers older than the longest `max_age` of the jobs (plus `PRUNE_MARGIN`, for runs
still collecting what they chose) are pruned, and past `$RECONCILER_ANSWERS_MAX_BYTES` (2 GiB)
the oldest go first.

A run's choice, once, when it starts (`with_reuse`): each request whose identity has an answer
within `max_age` from an earlier run (of this job; with `scope: owner`, of any job of the
owner) is reused, the others are sent.  The sent requests, in input order, are written to a file
under the work folder named by the sha256 of their custom_ids; it becomes the DesiredJob's
`input_path`, so split, upload, retry, resume and metering work on what is sent.  The choice is
recorded with the run (`state.model.ReuseRecord`) and its custom_ids in the store, so every later
pass, here or on a checkout sharing the store, sends the same requests.  A run already started
keeps its choice whatever --no-reuse or the spec's `reuse` now says (removed, added, another
max_age: its answers stay in the store from its `since`); a run started without reuse sends
everything.  Request identities come from `specs/inputs/cache`, kept by the input's digest.

`plan` writes nothing of this (`PlannedAnswers`): it reads the store as it is (none when there
is no file or no table yet: nothing is created), holds in memory what the pass would add (the
answers of finished batches not read yet, a starting run's choice), and writes the file of what
a run would send to a scratch folder.  apply and reconcile make the same choice and keep it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sqlite3
import tempfile
import threading
from collections import Counter
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol

from reconciler.api.batch import LiveBatch
from reconciler.api.reader import BatchReader
from reconciler.common import fileops
from reconciler.common.errors import ApiStatusError, StateError, UserError
from reconciler.engine.outcomes import classify, result_lines
from reconciler.engine.results import ReusedLines, answer_line
from reconciler.engine.retries import part_lines
from reconciler.plans.changes import DesiredJob, Reuse
from reconciler.plans.runs import RunChoice
from reconciler.specs.inputs.cache import read_identities, write_identities
from reconciler.specs.inputs.digest import line_identity
from reconciler.specs.parts import split_input
from reconciler.specs.slices import PartSpec
from reconciler.state.model import ReuseRecord, State

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
        from reconciler.state import postgres  # psycopg only when a database is used

        store = cls(postgres.connect(url), owner, postgres=True)
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


# -- reading finished batches


def read_finished(
    store: Answers,
    live: Sequence[LiveBatch],
    readers: Mapping[str, BatchReader],
    jobs: Collection[str] | None,
    oldest: int,
    now: int,
) -> int:
    """Reads each finished batch of `jobs` (None: any job of ours) ended since `oldest` that the
    store has not read yet; returns how many answers it stored."""
    candidates = {
        b.id: b
        for b in live
        if b.terminal
        and b.batch.output_file_id
        and b.batch.input_file_id
        and b.batch.job
        and (jobs is None or b.batch.job in jobs)
        and _ended(b) >= oldest
        and b.provider in readers
    }
    stored = 0
    for batch_id in sorted(store.unread(candidates)):
        batch = candidates[batch_id]
        stored += store.add(batch_id, _answers_of(batch, readers[batch.provider]), now)
    return stored


def _ended(live: LiveBatch) -> int:
    b = live.batch
    return b.completed_at or b.failed_at or b.expired_at or b.cancelled_at or b.created_at or 0


def _answers_of(live: LiveBatch, reader: BatchReader) -> Iterator[tuple[str, Source, int, bytes]]:
    """(identity, source, answered_at, results line) of each request the batch answered with 200."""
    batch = live.batch
    source = Source(batch.job or "", batch.generation or "", batch.run)
    with tempfile.TemporaryDirectory(prefix="reconciler-answers-") as scratch:
        sent, answered = Path(scratch) / "input.jsonl", Path(scratch) / "output.jsonl"
        try:
            _download(reader, str(batch.input_file_id), sent)
            _download(reader, str(batch.output_file_id), answered)
        except ApiStatusError as error:
            if error.status != 404:
                raise
            return  # the provider no longer has them: nothing to read, now or later
        identities = {
            custom_id: identity
            for custom_id, identity in (
                line_identity(batch.endpoint or "", raw)
                for _, raw in part_lines(sent, PartSpec(index=0, requests=0))
            )
        }
        for _, line in result_lines(answered, identities):
            custom_id = str(line["custom_id"])
            response = line.get("response")
            if (
                classify(line) is not None
                or not isinstance(response, dict)
                or response.get("status_code") != 200
            ):
                continue
            text = answer_line(custom_id, response, line.get("error"), batch.id, batch.retry)
            yield identities[custom_id], source, _ended(live), text


def _download(reader: BatchReader, file_id: str, target: Path) -> None:
    with target.open("wb") as out:
        reader.download_file(file_id, out)


# -- a run's choice


@dataclass(frozen=True)
class ReuseFolders:
    """Where a pass keeps what reuse works with: `root` the work folder (the files of what runs
    send), `inputs` the input cache's folder (each input's request identities), and `scratch`,
    for a read-only pass (`plan`), where a new choice's file goes instead of the work folder."""

    root: Path
    inputs: Path
    scratch: Path | None = None


@dataclass(frozen=True)
class _Choice:
    sent: list[str]  # custom_ids, in input order
    reused: int
    from_run: str | None
    since: int
    from_several: bool = False  # the reused answers come from more than one run

    @property
    def sha256(self) -> str:
        return hashlib.sha256("\n".join(self.sent).encode()).hexdigest()


def with_reuse(
    desired: Mapping[str, DesiredJob],
    state: State,
    live: Sequence[LiveBatch],
    choices: Mapping[str, RunChoice],
    readers: Mapping[str, BatchReader],
    store: Answers,
    work: ReuseFolders,
    now: int,
    *,
    no_reuse: bool = False,
) -> dict[str, DesiredJob]:
    """The desired jobs with each reusing run's choice applied: its input_path what is sent.  A run
    that recorded a choice keeps it whatever the spec's `reuse` now says (removed, added, another
    max_age): only a run that starts now chooses."""
    kept = {name: record for name, job in desired.items() if (record := kept_record(job, state, choices))}
    fresh = {
        n: j for n, j in desired.items() if j.reuse_max_age is not None and not j.suspend and n not in kept
    }
    if not kept and not fresh:
        return dict(desired)
    oldest = min([now - (j.reuse_max_age or 0) for j in fresh.values()] + [r.since for r in kept.values()])
    owner_wide = bool(kept) or any(j.reuse_scope == "owner" for j in fresh.values())
    read_finished(store, live, readers, None if owner_wide else set(fresh), oldest, now)
    store.prune(oldest - PRUNE_MARGIN, max_store_bytes())
    found = dict(desired)
    for name, record in kept.items():
        found[name] = _applied(desired[name], _kept_choice(desired[name], record, store, work), work)
    for name, job in fresh.items():
        run = choices[name].run if name in choices else None
        if run is not None and not no_reuse and not _started_without_reuse(job, state, run):
            choice = _choose(job, run, store, work, now - (job.reuse_max_age or 0))
            store.remember_choice(choice.sha256, choice.sent, now)
            found[name] = _applied(job, choice, work)
    return found


def kept_record(job: DesiredJob, state: State, choices: Mapping[str, RunChoice]) -> ReuseRecord | None:
    """The choice the job's current run recorded when it started, if it recorded one."""
    recorded = state.jobs.get(job.name)
    choice = choices.get(job.name)
    if recorded is None or recorded.reuse is None or choice is None or choice.run is None:
        return None
    record, run = recorded.reuse, choice.run
    if (recorded.run, recorded.generation) != (run, job.generation):
        return None
    return record if (record.run, record.generation) == (run, job.generation) else None


def _started_without_reuse(job: DesiredJob, state: State, run: str) -> bool:
    """A run that began without reuse sends everything, as it began."""
    recorded = state.jobs.get(job.name)
    if recorded is None or (recorded.run, recorded.generation) != (run, job.generation):
        return False
    return bool(recorded.batches or recorded.pending)


def _choose(job: DesiredJob, run: str, store: Answers, work: ReuseFolders, since: int) -> _Choice:
    requests = request_identities(job, work.inputs)
    scope = job.name if job.reuse_scope == "job" else None
    excluded = Source(job.name, job.generation, run)
    found = store.find([identity for _, identity in requests], job=scope, since=since, excluded=excluded)
    sent = [custom_id for custom_id, identity in requests if identity not in found]
    runs = Counter(found[identity].source.run for _, identity in requests if identity in found).most_common()
    from_run = runs[0][0] if runs else None
    return _Choice(sent, len(requests) - len(sent), from_run, since, len(runs) > 1)


def _kept_choice(job: DesiredJob, kept: ReuseRecord, store: Answers, work: ReuseFolders) -> _Choice:
    """The choice the run started with: from its file, the store, or made again the same way."""
    path = _sent_file(work.root, job, kept.sent_sha256)
    if path.exists():
        sent = [custom_id for custom_id, _ in _input_lines(str(path))]
    else:
        remembered = store.choice(kept.sent_sha256)
        sent = remembered if remembered is not None else _choose(job, kept.run, store, work, kept.since).sent
    choice = _Choice(sent, kept.reused, kept.from_run, kept.since, kept.from_several)
    if choice.sha256 != kept.sent_sha256:
        raise StateError(
            f"{job.name}: which requests run {kept.run} sent is no longer known here (the answer store "
            f"changed); `reconcile --replace {job.name}` starts a new run"
        )
    return choice


def request_identities(job: DesiredJob, inputs: Path) -> list[tuple[str, str]]:
    """(custom_id, identity) of each request of the job's input, in input order: kept beside the
    input cache by the input's digest, so an unchanged input is hashed once."""
    kept = read_identities(inputs, job.input_sha256, job.endpoint) if job.input_sha256 else None
    if kept is not None and len(kept) == job.requests:
        return kept
    identities = [line_identity(job.endpoint, raw) for _, raw in _input_lines(job.input_path)]
    if job.input_sha256:
        write_identities(inputs, job.input_sha256, job.endpoint, identities)
    return identities


def _applied(job: DesiredJob, choice: _Choice, work: ReuseFolders) -> DesiredJob:
    path = _sent_file(work.root, job, choice.sha256)
    if not path.exists():
        path = _sent_file(work.scratch, job, choice.sha256) if work.scratch else path
        wanted = set(choice.sent)
        with fileops.replacing(path) as out:
            for custom_id, raw in _input_lines(job.input_path):
                if custom_id in wanted:
                    out.write(raw)
    count = len(choice.sent)
    if not count:
        parts: tuple[PartSpec, ...] = ()
    elif job.split is not None:
        parts = split_input(path, job.split, display=str(path), endpoint=job.endpoint)
    else:
        parts = (PartSpec(index=0, requests=count),)
    reuse = Reuse(
        job.input_path, choice.reused, choice.from_run, choice.sha256, choice.since, choice.from_several
    )
    return replace(job, input_path=str(path), parts=parts, input_bytes=path.stat().st_size, reuse=reuse)


def _sent_file(work_root: Path, job: DesiredJob, sha256: str) -> Path:
    return work_root / job.name / job.generation / f"sent-{sha256[:32]}.jsonl"


def _input_lines(path: str) -> Iterator[tuple[str, bytes]]:
    return part_lines(Path(path), PartSpec(index=0, requests=0))


# -- the reused lines of a run's results


def reused_lines(store: AnswerStore, job: DesiredJob, run: str | None) -> ReusedLines:
    """The lookup engine/results.py splices a reusing run's results with."""
    reuse = job.reuse
    excluded = Source(job.name, job.generation, run or "")

    # The run chose what to reuse when it started; whatever the spec's `reuse` says now (scope
    # narrowed, reuse removed), its answers are looked up owner-wide, this job's own first: the
    # same answers as its choice found.
    def lookup(identities: Sequence[str]) -> Mapping[str, bytes]:
        return store.lines(identities, job=None, since=reuse.since if reuse else 0, excluded=excluded)

    return lookup
