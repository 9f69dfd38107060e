"""Connecting to the state database, and showing its URL without the password.

A replica whose host loses its network must lose its locks within seconds, and must not wait
long for an answer that will not come. Both ends of every connection are told so:
- the client (libpq): TCP keepalives while idle, and a TCP user timeout on data sent and not
  acknowledged, so a call over a dead network fails after about UNANSWERED_SECONDS instead of
  the kernel's ~15 minutes of retransmissions;
- the server, through session settings any role may set (PostgreSQL's tcp_keepalives_idle,
  _interval, _count and tcp_user_timeout have context `user`): it drops a silent client's
  session, and with it the session's advisory locks (the leader lock), after about
  UNANSWERED_SECONDS instead of its kernel's two hours;
- statement_timeout, lock_timeout and idle_in_transaction_session_timeout bound what the
  server may spend on one of our calls, and how long a stalled client may hold row locks.
Over a unix socket the TCP settings do not apply (nor are they needed). Tables are created and
migrated on the first connection of each process (postgres_schema.py).
"""

from __future__ import annotations

import threading
from typing import Any
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

from reconciler import DISTRIBUTION
from reconciler.common.errors import StateError

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
    "statement_timeout": "60s",  # the largest statement writes a whole state document
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
                from reconciler.state.postgres_schema import migrate

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
