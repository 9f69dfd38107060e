"""The health port (`--health-port`): its server, its routes, and its connections, bounded.

`GET /healthz` (alias `/readyz`), `GET /livez`, `GET /metrics`, and, when given `routes`, the
dashboard, its event stream and `POST /webhooks/openai`.  `/livez` answers 200 whenever the
process does: a restart cures a stuck process, never a provider outage, so liveness must not
depend on the provider.  `/healthz` and `/readyz` turn 503 when passes keep failing (a
provider unreachable): for readiness and alerts.  A query value a route cannot use is a 400,
never a traceback.

The server runs on daemon threads and never touches the state file or a provider: it only
reads what the loop recorded.  A flood of connections must never take the descriptors the
passes need, nor stop `/healthz` from answering:
- At most `Caps.connections` are open at once, a thread each. A new one beyond that takes the
  place of the oldest still sending its request (an idle or slow client); when every open one
  is being answered, the new one gets a 503 at once and is closed.
- A request must arrive whole within `READ_SECONDS`; a client still sending it then is cut off.
- Event streams (`/events`) have their own, lower cap (`Caps.streams`): one beyond it gets a
  503 at once.
- The caps follow the process's descriptor limit (RLIMIT_NOFILE): the health port holds at
  most an eighth of it, the rest stays for the passes (provider connections, the state, the
  file watch, the embedded sandbox).
"""

from __future__ import annotations

import contextlib
import errno
import json
import resource
import secrets
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from reconciler.common.errors import UserError
from reconciler.daemon.board import Board, Metrics
from reconciler.daemon.dashboard import job_page, overview, page
from reconciler.daemon.webhooks import MAX_BODY_BYTES, WebhookInbox

READ_SECONDS = 10.0  # to send one whole request: a probe or a webhook takes milliseconds
MIN_CONNECTIONS, MAX_CONNECTIONS = 8, 128
_BUSY_TEXT = b"too many connections; try again\n"
_BUSY = (
    b"HTTP/1.0 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\nRetry-After: 1\r\n"
    b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(_BUSY_TEXT), _BUSY_TEXT)
)
_OUT_OF_DESCRIPTORS = (errno.EMFILE, errno.ENFILE)


@dataclass(frozen=True)
class Caps:
    connections: int
    streams: int

    @staticmethod
    def for_this_process() -> Caps:
        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
        limit = soft if soft != resource.RLIM_INFINITY else 1 << 20
        connections = max(MIN_CONNECTIONS, min(MAX_CONNECTIONS, limit // 8))
        return Caps(connections=connections, streams=connections // 2)


@dataclass
class _Open:
    connection: socket.socket
    since: float = field(default_factory=time.monotonic)
    reading: bool = True  # still receiving its request
    evicted: bool = False


class CappedServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # the kernel's queue of connections not yet accepted: no descriptors

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler], caps: Caps) -> None:
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        self.caps = caps
        self._lock = threading.Lock()
        self._open: dict[socket.socket, _Open] = {}
        super().__init__(address, handler)

    def get_request(self) -> tuple[socket.socket, Any]:
        try:
            return super().get_request()
        except OSError as error:
            if error.errno in _OUT_OF_DESCRIPTORS:
                time.sleep(0.05)  # the listening socket stays readable: do not spin on it
            raise

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._admit(request):
            _answer_busy(request)
            return
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._lock:
            self._open.pop(request, None)
        super().shutdown_request(request)

    def request_read(self, connection: socket.socket) -> None:
        """The handler has the whole request: from now on it is being answered."""
        with self._lock:
            found = self._open.get(connection)
            if found is not None:
                found.reading = False

    def service_actions(self) -> None:
        """Every half second, on the serving thread: cuts off requests too slow to arrive."""
        cutoff = time.monotonic() - READ_SECONDS
        with self._lock:
            late = [o for o in self._open.values() if o.reading and not o.evicted and o.since < cutoff]
            for entry in late:
                _cut(entry)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client hanging up or cut off is normal; anything else is a bug worth its traceback."""
        if not isinstance(sys.exc_info()[1], OSError):
            super().handle_error(request, client_address)

    def _admit(self, request: socket.socket) -> bool:
        with self._lock:
            live = [entry for entry in self._open.values() if not entry.evicted]
            if len(live) >= self.caps.connections:
                waiting = [entry for entry in live if entry.reading]
                if not waiting:
                    return False
                _cut(min(waiting, key=lambda entry: entry.since))
            self._open[request] = _Open(request)
            return True


def _cut(entry: _Open) -> None:
    """Wakes the connection's thread from its read (it ends, and closes the connection)."""
    entry.evicted = True
    with contextlib.suppress(OSError):
        entry.connection.shutdown(socket.SHUT_RDWR)


def _answer_busy(request: socket.socket) -> None:
    """A 503 without a thread and without waiting: what arrived is read, the answer fits the
    socket's buffer, and the connection is closed."""
    with contextlib.suppress(OSError):
        request.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            request.recv(65536)
        request.send(_BUSY)
        request.shutdown(socket.SHUT_WR)
    request.close()


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


@dataclass(frozen=True)
class Health:
    healthy: bool
    detail: dict[str, Any]


class Liveness:
    """How the passes have been going, for /healthz and the last-success gauge."""

    def __init__(self, interval: float, metrics: Metrics) -> None:
        self.interval, self.metrics = interval, metrics
        self.started = time.time()
        self.last_success: float | None = None
        self.last_ok: bool | None = None
        self.failed_in_a_row = 0
        self.role = "leader"  # or "standby": a replica waiting for the leader lock (loop.Role)
        self.over_budget: dict[str, str] = {}  # job → why the last pass refused its change

    def standing_by(self) -> None:
        """A standby that reached the database is as healthy as an idle leader."""
        self.last_ok, self.failed_in_a_row = True, 0

    def succeeded(self, result: str) -> None:
        self.metrics.passes.labels(result=result).inc()
        self.last_ok, self.failed_in_a_row, self.last_success = True, 0, time.time()
        self.metrics.last_success.set(self.last_success)

    def failed(self) -> int:
        """Counts a failed pass; returns how many failed in a row."""
        self.metrics.passes.labels(result="failed").inc()
        self.last_ok = False
        self.failed_in_a_row += 1
        return self.failed_in_a_row

    def report(self) -> Health:
        ok = healthy(time.time(), self.started, self.last_success, self.last_ok, self.interval)
        status = ("degraded" if self.over_budget else "ok") if ok else "failing"
        detail = {
            "status": status,
            "over_budget": dict(sorted(self.over_budget.items())),
            "role": self.role,
            "last_successful_pass": iso(self.last_success),
            "failed_passes_in_a_row": self.failed_in_a_row,
            "started": iso(self.started),
        }
        return Health(ok, detail)


def healthy(
    now: float, started: float, last_success: float | None, last_ok: bool | None, interval: float
) -> bool:
    """Unhealthy only when passes keep failing (or none has run) for more than three intervals.

    An idle daemon whose last pass succeeded stays healthy however long ago that was: with
    every batch finished it has nothing to poll."""
    if last_ok:
        return True
    return now - (last_success if last_success is not None else started) <= 3 * interval


def _handler(
    metrics: Metrics, health: Callable[[], Health], routes: Routes | None
) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        timeout = 30  # no single read or write of a connection waits longer
        server: CappedServer

        def parse_request(self) -> bool:
            parsed = super().parse_request()
            if parsed and self.command != "POST":  # a GET has no body: it has all arrived
                self.server.request_read(self.connection)
            return parsed

        def do_POST(self) -> None:
            if routes is None or not routes.takes_post(self.path):
                self.server.request_read(self.connection)
                self._send(404, "text/plain; charset=utf-8", b"not found\n")
                return
            body = self._body()
            self.server.request_read(self.connection)
            routes.post(self, body)

        def _body(self) -> bytes | None:
            """The body, or None (unread) when it announces no length or more than we take."""
            length = self.headers.get("Content-Length", "")
            if not (length.isascii() and length.isdigit()) or int(length) > MAX_BODY_BYTES:
                self.close_connection = True  # the body is not read: the connection cannot be reused
                return None
            return self.rfile.read(int(length))

        def do_GET(self) -> None:
            route = self.path.split("?", 1)[0]
            if route == "/livez":
                self._send(200, "application/json", b'{"status": "alive"}\n')
            elif route in ("/healthz", "/readyz"):
                report = health()
                body = json.dumps(report.detail, sort_keys=True).encode() + b"\n"
                self._send(200 if report.healthy else 503, "application/json", body)
            elif route == "/metrics":
                self._send(200, CONTENT_TYPE_LATEST, generate_latest(metrics.registry))
            elif routes is None or not routes.get(self):
                self._send(404, "text/plain; charset=utf-8", b"not found; try /healthz, /livez or /metrics\n")

        def _send(self, status: int, content_type: str, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # probes every few seconds would drown the daemon's own log

    return Handler


@contextlib.contextmanager
def serve_health(
    host: str, port: int, metrics: Metrics, health: Callable[[], Health], routes: Routes | None = None
) -> Iterator[tuple[str, int]]:
    """Serves until the block ends; yields the bound (host, port) — port 0 picks a free one."""
    try:
        server = CappedServer((host, port), _handler(metrics, health, routes), Caps.for_this_process())
    except OSError as error:  # in use, or not an address of this machine: the user's to fix
        raise UserError(f"--health-port {host}:{port}: {error.strerror or error}") from None
    thread = threading.Thread(target=server.serve_forever, name="health", daemon=True)
    thread.start()
    try:
        bound_host, bound_port = server.server_address[:2]
        yield str(bound_host), int(bound_port)
    finally:
        server.shutdown()
        server.server_close()


def iso(timestamp: float | None) -> str | None:
    if timestamp is None:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(timestamp))


def parse_listen(value: str) -> tuple[str, int]:
    """`9090` → loopback:9090; `0.0.0.0:9090` or `[::]:9090` to listen beyond this machine."""
    host, _, port = value.rpartition(":")
    host = host.strip("[]") or "127.0.0.1"
    if not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"{value!r} is not [HOST:]PORT with a port from 0 to 65535")
    return host, int(port)
