"""The PostgreSQL database a state is kept in: connections that bound their calls, the URL shown
without its password, the tables and their migrations, and the advisory locks (the owner's
writer lock and the daemon's leader lock).  What is kept in the tables is postgres.py's.

Connections.  A replica whose host loses its network must lose its locks within seconds, and
must not wait long for an answer that will not come. Both ends of every connection are told so:
- the client (libpq): TCP keepalives while idle, and a TCP user timeout on data sent and not
  acknowledged, so a call over a dead network fails after about UNANSWERED_SECONDS instead of
  the kernel's ~15 minutes of retransmissions;
- the server, through session settings any role may set (PostgreSQL's tcp_keepalives_idle,
  _interval, _count and tcp_user_timeout have context `user`): it drops a silent client's
  session, and with it the session's advisory locks (the leader lock), after about
  UNANSWERED_SECONDS instead of its kernel's two hours;
- statement_timeout, lock_timeout and idle_in_transaction_session_timeout bound what the
  server may spend on one of our calls, and how long a stalled client may hold row locks.
Over a unix socket the TCP settings do not apply (nor are they needed).  The URL never holds a
password unless it came from the environment; whatever is shown of it (messages, logs, `where`)
has the password removed (`display_url`, `scrubbed`).

Tables, created and migrated by the reconciler itself on the first connection of each process:

    reconciler_schema           one row: the schema version these tables are at
    reconciler_state_heads      per owner, the current serial: the row a write compares and sets;
                                the document's top-level fields but its jobs, and the serial
                                the job rows are at (none: an older schema's whole document)
    reconciler_state_jobs       per owner and job, its record as last written, and at which serial
    reconciler_state_versions   the pass log: every serial ever written, per owner, with the jobs
                                it changed (`changes`), or the whole document (a first write, a
                                rebuilt state, and every write of schema version 1)
    reconciler_lock_holders     who holds an advisory lock (pid, host, command, since), so the
                                refused can be told; keyed by the lock and the holder's session

Migrations run under a transaction-scoped advisory lock, so replicas starting together do not
race to create the same table.  A schema newer than this reconciler knows is refused.  Version 2
(job rows and the pass log) keeps every row of version 1: the current document is read from its
head's version until the first write, which writes every job's row.

Locks are session advisory locks keyed by the owner.  The server releases one when the
holder's connection ends, however it ends: a killed process, a lost network (noticed by the
keepalives and TCP user timeout above) or a clean exit.  Two locks per owner: the *writer*
lock, held by every pass that may mutate for the whole pass, and the *leader* lock
(`LeaderLock`), held by the daemon replica that runs passes for as long as it leads.  Holders
record pid, host, command and since in reconciler_lock_holders, keyed by the lock and their
server session, so a refused writer can name the one it waited for.

The leader lock is held on a connection of its own for as long as the replica leads, apart
from the writer lock each pass takes, so a manual `apply` still gets its turn between the
leader's passes.  The server drops it when the leader's session ends: at once for a kill, and
for a lost network after UNANSWERED_SECONDS of silence; a standby trying every half second
then takes over.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import socket
import threading
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

from reconciler import DISTRIBUTION
from reconciler.common.errors import StateError

if TYPE_CHECKING:
    import psycopg


CONNECT_SECONDS = 10
UNANSWERED_SECONDS = 10  # a peer silent this long is gone, to us and to the server
KEEPALIVE_IDLE_SECONDS, KEEPALIVE_INTERVAL_SECONDS, KEEPALIVE_COUNT = 5, 2, 2
CLIENT: dict[str, Any] = {
    "keepalives": 1,
    "keepalives_idle": KEEPALIVE_IDLE_SECONDS,
    "keepalives_interval": KEEPALIVE_INTERVAL_SECONDS,
    "keepalives_count": KEEPALIVE_COUNT,
    "tcp_user_timeout": UNANSWERED_SECONDS * 1000,
}
SESSION: dict[str, str] = {
    "tcp_keepalives_idle": str(KEEPALIVE_IDLE_SECONDS),
    "tcp_keepalives_interval": str(KEEPALIVE_INTERVAL_SECONDS),
    "tcp_keepalives_count": str(KEEPALIVE_COUNT),
    "tcp_user_timeout": str(UNANSWERED_SECONDS * 1000),
    "statement_timeout": "60s",  # the largest statement writes a whole state document, or its rows
    "lock_timeout": "10s",
    "idle_in_transaction_session_timeout": "60s",
}
_migrated: set[str] = set()
_migrating = threading.Lock()


def connect(url: str) -> Any:
    """An autocommit connection with our tables in place; StateError when it cannot be had."""
    try:
        import psycopg
    except ImportError:
        hint = f"pip install '{DISTRIBUTION}[postgresql]' (or 'psycopg[binary]' beside it)"
        raise StateError(f"a postgresql:// state needs psycopg: {hint}") from None
    try:
        conn = psycopg.connect(
            url, autocommit=True, connect_timeout=CONNECT_SECONDS, application_name="reconciler", **CLIENT
        )
    except psycopg.Error as error:
        raise StateError(f"{display_url(url)}: cannot connect: {scrubbed(error, url)}") from None
    doing = "set the session's timeouts"
    try:
        _bound_session(conn)
        doing = "set up the state tables"
        with _migrating:
            if url not in _migrated:
                migrate(conn, display_url(url))
                _migrated.add(url)
    except psycopg.Error as error:
        conn.close()
        raise StateError(f"{display_url(url)}: cannot {doing}: {scrubbed(error, url)}") from None
    except BaseException:
        conn.close()
        raise
    return conn


def _bound_session(conn: Any) -> None:
    """The session's half of the bounds above, in one round trip (set_config takes parameters)."""
    calls = ", ".join("set_config(%s, %s, false)" for _ in SESSION)
    conn.execute(f"SELECT {calls}", [item for pair in SESSION.items() for item in pair])


def display_url(url: str) -> str:
    """The URL as shown anywhere: no password, in the user part or the query."""
    try:
        parts = urlsplit(url)
        netloc = parts.netloc.rpartition("@")
        user = netloc[0].partition(":")[0]
        shown_netloc = f"{user}@{netloc[2]}" if netloc[1] else netloc[2]
        query = urlencode([(k, v) for k, v in parse_qsl(parts.query) if k != "password"])
        return urlunsplit((parts.scheme, shown_netloc, parts.path, query, ""))
    except ValueError:
        return "the state database"


def scrubbed(error: Exception, url: str) -> str:
    """The first line of a database error, with any password of `url` taken out."""
    text = (str(error).strip().splitlines() or [type(error).__name__])[0]
    for secret in _passwords(url):
        text = text.replace(secret, "***")
    return text


def _passwords(url: str) -> list[str]:
    try:
        parts = urlsplit(url)
        found = [parts.password, unquote(parts.password)] if parts.password else []
        return found + [v for k, v in parse_qsl(parts.query) if k == "password" and v]
    except ValueError:
        return []


MIGRATE_LOCK = (0x5245_4331, 0)  # classid 'REC1', objid 0: the migration lock
MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE reconciler_state_versions (
        owner text NOT NULL,
        serial bigint NOT NULL,
        lineage text NOT NULL,
        document jsonb NOT NULL,
        written_at timestamptz NOT NULL DEFAULT now(),
        written_by text,
        PRIMARY KEY (owner, serial)
    );
    CREATE TABLE reconciler_state_heads (
        owner text PRIMARY KEY,
        serial bigint NOT NULL,
        lineage text NOT NULL
    );
    CREATE TABLE reconciler_lock_holders (
        lock_key bigint NOT NULL,
        backend_pid integer NOT NULL,
        holder jsonb NOT NULL,
        PRIMARY KEY (lock_key, backend_pid)
    );
    """,
    """
    ALTER TABLE reconciler_state_versions ALTER COLUMN document DROP NOT NULL;
    ALTER TABLE reconciler_state_versions ADD COLUMN changes jsonb, ADD COLUMN jobs integer;
    ALTER TABLE reconciler_state_heads ADD COLUMN top jsonb, ADD COLUMN rows_serial bigint;
    CREATE TABLE reconciler_state_jobs (
        owner text NOT NULL,
        name text NOT NULL,
        serial bigint NOT NULL,
        record jsonb NOT NULL,
        PRIMARY KEY (owner, name)
    );
    """,
)


def migrate(conn: psycopg.Connection[tuple[object, ...]], where: str) -> None:
    """Brings the tables to the latest version; a no-op when they are there already, which only
    reads (a role that may only read, e.g. a pull request's `plan`, gets past it)."""
    if _schema_version(conn) == len(MIGRATIONS):
        return
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s, %s)", MIGRATE_LOCK)
        conn.execute(
            "CREATE TABLE IF NOT EXISTS reconciler_schema (id integer PRIMARY KEY CHECK (id = 1), "
            "version integer NOT NULL)"
        )
        row = conn.execute("SELECT version FROM reconciler_schema").fetchone()
        current = int(str(row[0])) if row else 0
        if current > len(MIGRATIONS):
            raise StateError(
                f"{where}: the state tables are at schema version {current}, newer than this "
                f"reconciler understands ({len(MIGRATIONS)}); upgrade reconciler"
            )
        for sql in MIGRATIONS[current:]:
            conn.execute(sql)
        conn.execute(
            "INSERT INTO reconciler_schema (id, version) VALUES (1, %s) "
            "ON CONFLICT (id) DO UPDATE SET version = EXCLUDED.version",
            (len(MIGRATIONS),),
        )


def _schema_version(conn: psycopg.Connection[tuple[object, ...]]) -> int | None:
    """The tables' version, read without writing; None when there are none yet."""
    found = conn.execute("SELECT to_regclass('reconciler_schema') IS NOT NULL").fetchone()
    if not (found and found[0]):
        return None
    row = conn.execute("SELECT version FROM reconciler_schema").fetchone()
    return int(str(row[0])) if row else None


NAMESPACE = 0x5245_4331  # 'REC1': the classid of every advisory lock of ours
POLL_SECONDS = 0.1
WRITER, LEADER = "writer", "leader"


def lock_key(owner_tag: str, purpose: str) -> int:
    digest = hashlib.sha256(f"{purpose}:{owner_tag}".encode()).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFF_FFFF  # an int4 that is also a valid oid


class AdvisoryLock:
    """One owner's lock of one purpose, on one connection (autocommit)."""

    def __init__(self, conn: psycopg.Connection[Any], owner_tag: str, purpose: str) -> None:
        self.conn, self.key = conn, lock_key(owner_tag, purpose)

    def try_acquire(self, command: str) -> bool:
        row = self.conn.execute("SELECT pg_try_advisory_lock(%s, %s)", (NAMESPACE, self.key)).fetchone()
        if not (row and row[0]):
            return False
        with self.conn.transaction():
            self.conn.execute("DELETE FROM reconciler_lock_holders WHERE lock_key = %s", (self.key,))
            self.conn.execute(
                "INSERT INTO reconciler_lock_holders (lock_key, backend_pid, holder) "
                "VALUES (%s, pg_backend_pid(), %s)",
                (self.key, json.dumps(_holder_record(command))),
            )
        return True

    def acquire(self, command: str, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while not self.try_acquire(command):
            if time.monotonic() >= deadline:
                return False
            time.sleep(POLL_SECONDS)
        return True

    def held(self) -> bool:
        """Whether this session still holds it: False once the connection is lost."""
        row = self.conn.execute(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted "
            "AND pid = pg_backend_pid() AND classid = %s::oid AND objid = %s::oid AND objsubid = 2",
            (NAMESPACE, self.key),
        ).fetchone()
        return bool(row and row[0])

    def release(self) -> None:
        self.conn.execute("SELECT pg_advisory_unlock(%s, %s)", (NAMESPACE, self.key))
        self.conn.execute(
            "DELETE FROM reconciler_lock_holders WHERE lock_key = %s AND backend_pid = pg_backend_pid()",
            (self.key,),
        )

    def holder(self) -> str:
        """`pid 12 on host (reconciler apply, since …)` of the session holding it now."""
        row = self.conn.execute(
            "SELECT h.holder FROM pg_locks l JOIN reconciler_lock_holders h "
            "ON h.backend_pid = l.pid AND h.lock_key = %s "
            "WHERE l.locktype = 'advisory' AND l.granted AND l.classid = %s::oid "
            "AND l.objid = %s::oid AND l.objsubid = 2",
            (self.key, NAMESPACE, self.key),
        ).fetchone()
        if not row:
            return "another session (it holds the lock but has not said who it is yet)"
        record = row[0] if isinstance(row[0], dict) else json.loads(row[0])
        return f"pid {record['pid']} on {record['host']} ({record['command']}, since {record['since']})"


def _holder_record(command: str) -> dict[str, Any]:
    return {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "command": command,
        "since": datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
    }


class LeaderLock:
    """The daemon's guard on a database: replicas elect one leader, the others stand by."""

    always_leads = False

    def __init__(self, url: str, owner_tag: str) -> None:
        self.url, self.owner_tag = url, owner_tag
        self._conn: Any = None
        self._lock: AdvisoryLock | None = None
        self.leading = False

    def __enter__(self) -> LeaderLock:
        return self  # nothing held yet: each `try_lead` tries

    def __exit__(self, *exc: object) -> None:
        self.close()

    def try_lead(self, command: str) -> bool:
        """Leads if it did or can now; False while another replica leads.  StateError when the
        database cannot be reached (the connection is dropped, to be made again next time)."""
        import psycopg

        try:
            if self.leading:
                assert self._lock is not None
                self.leading = self._lock.held()
                if not self.leading:
                    self._drop()
                return self.leading
            if self._lock is None:
                self._conn = connect(self.url)
                self._lock = AdvisoryLock(self._conn, self.owner_tag, LEADER)
            self.leading = self._lock.try_acquire(command)
            return self.leading
        except psycopg.Error as error:
            self._drop()
            raise StateError(f"{display_url(self.url)}: {scrubbed(error, self.url)}") from None

    def holder(self) -> str:
        try:
            return self._lock.holder() if self._lock else "another replica"
        except Exception:  # only a courtesy for the log line
            return "another replica"

    def close(self) -> None:
        self._drop()

    def _drop(self) -> None:
        self.leading = False
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.close()
        self._conn, self._lock = None, None
