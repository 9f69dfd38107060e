"""Connecting to the state database, and showing its URL without the password.

Connections use TCP keepalives, so a holder whose network is gone loses its locks within
about ten seconds instead of the kernel's two hours.  Tables are created and migrated on the
first connection of each process (postgres_schema.py).
"""

from __future__ import annotations

import threading
from typing import Any
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

from reconciler import DISTRIBUTION
from reconciler.common.errors import StateError

CONNECT_SECONDS = 10
KEEPALIVE: dict[str, Any] = {
    "keepalives": 1,
    "keepalives_idle": 5,
    "keepalives_interval": 2,
    "keepalives_count": 2,
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
            url, autocommit=True, connect_timeout=CONNECT_SECONDS, application_name="reconciler", **KEEPALIVE
        )
    except psycopg.Error as error:
        raise StateError(f"{display_url(url)}: cannot connect: {scrubbed(error, url)}") from None
    try:
        with _migrating:
            if url not in _migrated:
                from reconciler.state.postgres_schema import migrate

                migrate(conn, display_url(url))
                _migrated.add(url)
    except psycopg.Error as error:
        conn.close()
        raise StateError(
            f"{display_url(url)}: cannot set up the state tables: {scrubbed(error, url)}"
        ) from None
    except BaseException:
        conn.close()
        raise
    return conn


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
