"""The routes the health port serves beside /healthz and /metrics: the dashboard, its event
stream, and `POST /webhooks/openai`. health.py hands each request here first.

A query value a route cannot use is a 400, never a traceback; event streams beyond
`Caps.streams` get a 503 at once (connections.py caps everything else).
"""

from __future__ import annotations

import json
import secrets
import threading
from http.server import BaseHTTPRequestHandler
from urllib.parse import parse_qs, unquote, urlsplit

from reconciler.daemon.board import Board
from reconciler.daemon.connections import Caps
from reconciler.daemon.dashboard import job_page, overview
from reconciler.daemon.dashboard_parts import page
from reconciler.daemon.webhooks import MAX_BODY_BYTES, WebhookInbox

WEBHOOK_PATH = "/webhooks/openai"
KEEPALIVE_SECONDS = 15.0
MAX_VERSION_DIGITS = 18  # `since` is a snapshot version: a counter, far below 10**18
_HEADERS = {
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}


class BadQuery(ValueError):
    pass


class Routes:
    def __init__(self, board: Board, inbox: WebhookInbox | None, max_streams: int | None = None) -> None:
        self.board, self.inbox = board, inbox
        streams = Caps.for_this_process().streams if max_streams is None else max_streams
        self._streams = threading.BoundedSemaphore(streams)

    def get(self, request: BaseHTTPRequestHandler) -> bool:
        """Serves the request and returns True, or returns False: not a route of ours."""
        split = urlsplit(request.path)
        path = split.path.rstrip("/") or "/"
        if path.endswith("/events") and (path == "/events" or path.startswith("/jobs/")):
            try:
                since = _since(split.query)
            except BadQuery as problem:
                _send(request, 400, "text/plain; charset=utf-8", f"{problem}\n".encode())
                return True
            self._stream_if_room(request, path.removesuffix("/events") or "/", since)
            return True
        html = self._render(path)
        if html is None and path.startswith("/jobs/"):
            _send(request, 404, "text/plain; charset=utf-8", b"no such job in the state\n")
            return True
        if html is None:
            return False
        nonce = secrets.token_urlsafe(16)
        document = page("reconciler", html, self.board.snapshot().version, nonce).encode()
        policy = (
            f"default-src 'none'; style-src 'unsafe-inline'; script-src 'nonce-{nonce}'; "
            "connect-src 'self'; base-uri 'none'; form-action 'none'"
        )
        _send(request, 200, "text/html; charset=utf-8", document, {"Content-Security-Policy": policy})
        return True

    def takes_post(self, target: str) -> bool:
        return urlsplit(target).path == WEBHOOK_PATH and self.inbox is not None

    def post(self, request: BaseHTTPRequestHandler, body: bytes | None) -> None:
        """A webhook delivery; `body` None: it announced no length, or more than MAX_BODY_BYTES."""
        assert self.inbox is not None
        if body is None:
            answer = self.inbox.refused(
                "too_large", 413, f"a body of at most {MAX_BODY_BYTES} bytes, with a length"
            )
        else:
            answer = self.inbox.receive(dict(request.headers.items()), body)
        _send(request, answer.status, "application/json", json.dumps(answer.body).encode() + b"\n")

    def _render(self, path: str) -> str | None:
        snap = self.board.snapshot()
        if path == "/":
            return overview(snap)
        if path.startswith("/jobs/"):
            return job_page(snap, unquote(path.removeprefix("/jobs/")))
        return None

    def _stream_if_room(self, request: BaseHTTPRequestHandler, path: str, since: int) -> None:
        if not self._streams.acquire(blocking=False):
            request.close_connection = True
            busy = b"too many event streams open\n"
            _send(request, 503, "text/plain; charset=utf-8", busy, {"Retry-After": "5"})
            return
        try:
            self._stream(request, path, since)
        finally:
            self._streams.release()

    def _stream(self, request: BaseHTTPRequestHandler, path: str, since: int) -> None:
        """Server-Sent Events: the page's new content each time the loop publishes."""
        request.send_response(200)
        for name, value in {**_HEADERS, "Content-Type": "text/event-stream"}.items():
            request.send_header(name, value)
        request.end_headers()
        version = since
        try:
            request.wfile.write(b"retry: 2000\n\n")
            while not self.board.closed:
                snap = self.board.wait_newer(version, KEEPALIVE_SECONDS)
                if snap.version == version:
                    request.wfile.write(b": keep-alive\n\n")
                else:
                    version = snap.version
                    fragment = self._render(path) or "<p>This job is no longer in the state.</p>"
                    lines = "".join(f"data: {line}\n" for line in fragment.splitlines() or [""])
                    request.wfile.write(f"id: {version}\n{lines}\n".encode())
                request.wfile.flush()
        except OSError:  # the page was closed
            return


def _send(
    request: BaseHTTPRequestHandler,
    status: int,
    content_type: str,
    body: bytes,
    extra: dict[str, str] | None = None,
) -> None:
    request.send_response(status)
    for name, value in {**_HEADERS, **(extra or {}), "Content-Type": content_type}.items():
        request.send_header(name, value)
    request.send_header("Content-Length", str(len(body)))
    request.end_headers()
    request.wfile.write(body)


def _since(query: str) -> int:
    """The `since` of an event stream: the snapshot version the page shows; absent, -1 (send
    the current one at once)."""
    try:
        found = parse_qs(query, keep_blank_values=True, errors="strict").get("since")
    except UnicodeDecodeError:
        raise BadQuery("the query is not UTF-8") from None
    if found is None:
        return -1
    value = found[0]
    if len(found) > 1 or not (value.isascii() and value.isdigit()) or len(value) > MAX_VERSION_DIGITS:
        raise BadQuery("since: must be one whole number, the version the page shows")
    return int(value)
