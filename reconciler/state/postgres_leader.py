"""The leader lock of daemon replicas on a PostgreSQL state: one leads, the others stand by.

Held on a connection of its own for as long as the replica leads, apart from the writer lock
each pass takes, so a manual `apply` still gets its turn between the leader's passes.  The
server drops it when the leader's session ends: at once for a kill, and for a lost network
after the silence each session asks the server to bear (pg_connect.UNANSWERED_SECONDS); a
standby trying every half second then takes over.
"""

from __future__ import annotations

import contextlib
from typing import Any

from reconciler.common.errors import StateError
from reconciler.state.pg_connect import connect, display_url, scrubbed
from reconciler.state.postgres_locks import LEADER, AdvisoryLock


class LeaderLock:
    def __init__(self, url: str, owner_tag: str) -> None:
        self.url, self.owner_tag = url, owner_tag
        self._conn: Any = None
        self._lock: AdvisoryLock | None = None
        self.leading = False

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
