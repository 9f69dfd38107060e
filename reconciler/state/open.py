"""Opening the state backend a command names: the state file, or the database at a URL.

Apart from backend.py (the interface both backends implement), so that this module imports the
backends and no backend imports it: no cycle.  psycopg itself is imported only when a database
is used (inside postgres.py).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from reconciler.state.backend import StateBackend
from reconciler.state.file import FileBackend
from reconciler.state.postgres import PostgresBackend


@contextlib.contextmanager
def open_backend(path: Path, url: str | None, owner_tag: str | None) -> Iterator[StateBackend]:
    """The backend for a state file `path`, or for the database at `url` (owner_tag keys it)."""
    if url is None:
        yield FileBackend(path, owner_tag)
        return
    if owner_tag is None:
        raise AssertionError("a PostgreSQL state is keyed by its owner")
    backend = PostgresBackend.connect(url, owner_tag)
    try:
        yield backend
    finally:
        backend.close()
