"""The tables of a PostgreSQL state, created and migrated by the reconciler itself.

    reconciler_schema           one row: the schema version these tables are at
    reconciler_state_versions   every serial ever written, per owner: the document as written
    reconciler_state_heads      per owner, the current serial: the row a write compares and sets
    reconciler_lock_holders     who holds an advisory lock (pid, host, command, since), so the
                                refused can be told; keyed by the lock and the holder's session

Migrations run under a transaction-scoped advisory lock, so replicas starting together do not
race to create the same table.  A schema newer than this reconciler knows is refused.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import psycopg

from reconciler.common.errors import StateError

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
)


def migrate(conn: psycopg.Connection[tuple[object, ...]], where: str) -> None:
    """Brings the tables to the latest version; a no-op when they are there already."""
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
