"""Session advisory locks keyed by the owner, and who holds them.

A session advisory lock is released by the server when the holder's connection ends, however
it ends: a killed process, a lost network (noticed by the keepalives and TCP user timeout
every session of ours asks for, pg_connect.py) or a clean exit.  Two
locks per owner: the *writer* lock, held by every pass that may mutate for the whole pass, and
the *leader* lock, held by the daemon replica that runs passes for as long as it leads.

Holders record pid, host, command and since in reconciler_lock_holders, keyed by the lock and
their server session, so a refused writer can name the one it waited for.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import psycopg

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
