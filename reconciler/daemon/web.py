"""The health port (`--health-port`): its server, its one route table, its one response
writer, and its connections, bounded.

The routes (`Site.table`; HEAD is answered for every GET route, with the headers alone):

| method | path                  | handler                                                   |
|--------|-----------------------|-----------------------------------------------------------|
| GET    | `/livez`              | `alive`: 200 whenever the process answers                 |
| GET    | `/healthz`, `/readyz` | `ready`: 200, or 503 while passes keep failing            |
| GET    | `/metrics`            | `metrics`: Prometheus text                                |
| GET    | `/`                   | `overview`: the dashboard                                 |
| GET    | `/jobs/{name}`        | `job`: one job (404 when the state has none of that name) |
| GET    | `/events`             | `overview_events`: the dashboard's Server-Sent Events     |
| GET    | `/jobs/{name}/events` | `job_events`: one job's                                   |
| POST   | `/webhooks/openai`    | `webhook` (daemon/webhooks.py)                            |

A path no route has is a 404; a path some route has, asked with another method, a 405 naming
the methods it takes.  `/livez` answers 200 whenever the process does: a restart cures a stuck
process, never a provider outage, so liveness must not depend on the provider.  `/healthz` and
`/readyz` turn 503 when passes keep failing (a provider unreachable): for readiness and alerts.
A query value a route cannot use is a 400, never a traceback.

Every answer — a route's, a 404 or 405, a malformed request's (http.server's own errors), the
503 of a full server, an event stream's head — is written by `respond` (or, for the full
server's 503, from the same `head_fields`), so each carries the same security headers.

The server runs on daemon threads and never touches the state file or a provider: it only
reads what the loop published (board.Snapshot).  A flood of connections must never take the
descriptors the passes need, nor stop `/healthz` from answering:
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
import re
import resource
import secrets
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from reconciler.common.errors import UserError
from reconciler.daemon.board import Board, Metrics, Snapshot
from reconciler.daemon.dashboard import GONE, job_page, overview
from reconciler.daemon.webhooks import MAX_BODY_BYTES, WebhookInbox

READ_SECONDS = 10.0  # to send one whole request: a probe or a webhook takes milliseconds
MIN_CONNECTIONS, MAX_CONNECTIONS = 8, 128
_OUT_OF_DESCRIPTORS = (errno.EMFILE, errno.ENFILE)
TEXT, JSON, HTML = "text/plain; charset=utf-8", "application/json", "text/html; charset=utf-8"

# On every answer, whatever it is.
SECURITY_HEADERS = {
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}
# On every answer but the dashboard's pages, which allow their own script (`_page`).
NOTHING_POLICY = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"


@dataclass(frozen=True)
class Response:
    status: int
    body: bytes
    content_type: str = TEXT
    headers: Mapping[str, str] = field(default_factory=dict)  # beside the security headers


@dataclass(frozen=True)
class EventStream:
    """Server-Sent Events: a 200 whose body is `events`, written as they come; `done` is called
    once the stream ends (the client left, or the board closed)."""

    events: Iterator[bytes]
    done: Callable[[], None]


Reply = Response | EventStream


def text(status: int, message: str, **headers: str) -> Response:
    """A plain-text answer; `Retry_After="5"` is the header `Retry-After: 5`."""
    named = {name.replace("_", "-"): value for name, value in headers.items()}
    return Response(status, f"{message}\n".encode(), TEXT, named)


def head_fields(content_type: str, extra: Mapping[str, str], length: int | None) -> list[tuple[str, str]]:
    """Every header of an answer: the security headers always, whatever `extra` says."""
    fields = {"Content-Security-Policy": NOTHING_POLICY, **extra, **SECURITY_HEADERS}
    fields["Content-Type"] = content_type
    if length is not None:
        fields["Content-Length"] = str(length)
    return list(fields.items())


def respond(request: BaseHTTPRequestHandler, reply: Reply) -> None:
    """The one writer of an answer (a HEAD gets the head alone)."""
    if isinstance(reply, EventStream):
        _stream(request, reply)
        return
    _head(request, reply.status, reply.content_type, reply.headers, len(reply.body))
    if request.command != "HEAD":
        request.wfile.write(reply.body)


def _head(
    request: BaseHTTPRequestHandler,
    status: int,
    content_type: str,
    extra: Mapping[str, str],
    length: int | None,
) -> None:
    request.send_response(status)
    for name, value in head_fields(content_type, extra, length):
        request.send_header(name, value)
    request.end_headers()


def _stream(request: BaseHTTPRequestHandler, stream: EventStream) -> None:
    try:
        _head(request, 200, "text/event-stream", {}, None)
        if request.command == "HEAD":
            return
        for event in stream.events:
            request.wfile.write(event)
            request.wfile.flush()
    except OSError:  # the page was closed
        return
    finally:
        stream.done()


def _busy_answer() -> bytes:
    """The 503 of a full server, written without a thread: built once, from `head_fields`."""
    body = b"too many connections; try again\n"
    extra = {"Retry-After": "1", "Connection": "close"}
    lines = [f"{name}: {value}" for name, value in head_fields(TEXT, extra, len(body))]
    return "\r\n".join(["HTTP/1.0 503 Service Unavailable", *lines, "", ""]).encode("latin-1") + body


_BUSY = _busy_answer()


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


@dataclass(frozen=True)
class Request:
    params: Mapping[str, str]  # what the route's pattern took from the path, percent-decoded
    query: str
    headers: Mapping[str, str]
    body: bytes | None = None  # a route that takes one: None when it had no length, or too much


@dataclass(frozen=True)
class Route:
    method: str
    pattern: str  # `/jobs/{name}`: a `{…}` takes one path segment
    handler: Callable[[Request], Reply]
    takes_body: bool = False

    @property
    def regex(self) -> re.Pattern[str]:
        pieces = re.split(r"\{(\w+)\}", self.pattern)  # literal, name, literal, …
        parts = [re.escape(p) if i % 2 == 0 else f"(?P<{p}>[^/]+)" for i, p in enumerate(pieces)]
        return re.compile("".join(parts))


class RouteTable:
    def __init__(self, routes: Iterable[Route]) -> None:
        self.routes = tuple(routes)
        self._compiled = [(route, route.regex) for route in self.routes]

    def find(self, method: str, path: str) -> tuple[Route, dict[str, str]] | Response:
        """The route for `method` and `path` (a trailing slash ignored) and what its pattern
        took; else the 404 or 405 to answer."""
        path = path.rstrip("/") or "/"
        wanted = "GET" if method == "HEAD" else method
        allowed: set[str] = set()
        for route, regex in self._compiled:
            found = regex.fullmatch(path)
            if found is None:
                continue
            if route.method == wanted:
                return route, {name: unquote(value) for name, value in found.groupdict().items()}
            allowed |= {route.method, "HEAD"} if route.method == "GET" else {route.method}
        if allowed:
            methods = ", ".join(sorted(allowed))
            return text(405, f"{method} is not allowed here; this path takes {methods}", Allow=methods)
        return text(404, "not found; try /, /healthz, /livez or /metrics")


WEBHOOK_PATH = "/webhooks/openai"
KEEPALIVE_SECONDS = 15.0
MAX_VERSION_DIGITS = 18  # `since` is a snapshot version: a counter, far below 10**18


class BadQuery(ValueError):
    pass


class Site:
    """What the health port serves: the handlers of the route table."""

    def __init__(
        self,
        board: Board,
        metrics: Metrics,
        health: Callable[[], Health],
        inbox: WebhookInbox | None,
        max_streams: int,
    ) -> None:
        self.board, self.metrics, self.health, self.inbox = board, metrics, health, inbox
        self._streams = threading.BoundedSemaphore(max_streams)

    def table(self) -> RouteTable:
        routes = [
            Route("GET", "/livez", self.alive),
            Route("GET", "/healthz", self.ready),
            Route("GET", "/readyz", self.ready),
            Route("GET", "/metrics", self.metrics_text),
            Route("GET", "/", self.overview),
            Route("GET", "/jobs/{name}", self.job),
            Route("GET", "/events", self.overview_events),
            Route("GET", "/jobs/{name}/events", self.job_events),
        ]
        if self.inbox is not None:
            routes.append(Route("POST", WEBHOOK_PATH, self.webhook, takes_body=True))
        return RouteTable(routes)

    def alive(self, request: Request) -> Reply:
        return Response(200, b'{"status": "alive"}\n', JSON)

    def ready(self, request: Request) -> Reply:
        report = self.health()
        body = json.dumps(report.detail, sort_keys=True).encode() + b"\n"
        return Response(200 if report.healthy else 503, body, JSON)

    def metrics_text(self, request: Request) -> Reply:
        return Response(200, generate_latest(self.metrics.registry), CONTENT_TYPE_LATEST)

    def overview(self, request: Request) -> Reply:
        nonce = secrets.token_urlsafe(16)
        return _page(overview(self.board.snapshot(), nonce), nonce)

    def job(self, request: Request) -> Reply:
        nonce = secrets.token_urlsafe(16)
        document = job_page(self.board.snapshot(), request.params["name"], nonce)
        return text(404, "no such job in the state") if document is None else _page(document, nonce)

    def overview_events(self, request: Request) -> Reply:
        return self._events(request, overview)

    def job_events(self, request: Request) -> Reply:
        name = request.params["name"]
        return self._events(request, lambda snap: job_page(snap, name) or GONE)

    def webhook(self, request: Request) -> Reply:
        assert self.inbox is not None
        if request.body is None:
            why = f"a body of at most {MAX_BODY_BYTES} bytes, with a length"
            answer = self.inbox.refused("too_large", 413, why)
        else:
            answer = self.inbox.receive(request.headers, request.body)
        return Response(answer.status, json.dumps(answer.body).encode() + b"\n", JSON)

    def _events(self, request: Request, render: Callable[[Snapshot], str]) -> Reply:
        try:
            since = _since(request.query)
        except BadQuery as problem:
            return text(400, str(problem))
        if not self._streams.acquire(blocking=False):
            return text(503, "too many event streams open", Retry_After="5")
        return EventStream(self._updates(render, since), self._streams.release)

    def _updates(self, render: Callable[[Snapshot], str], since: int) -> Iterator[bytes]:
        """The page's new content each time the loop publishes; a comment now and then."""
        yield b"retry: 2000\n\n"
        version = since
        while not self.board.closed:
            snap = self.board.wait_newer(version, KEEPALIVE_SECONDS)
            if snap.version == version:
                yield b": keep-alive\n\n"
                continue
            version = snap.version
            lines = "".join(f"data: {line}\n" for line in render(snap).splitlines() or [""])
            yield f"id: {version}\n{lines}\n".encode()


def _page(document: str, nonce: str) -> Response:
    policy = (
        f"default-src 'none'; style-src 'unsafe-inline'; script-src 'nonce-{nonce}'; "
        "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    )
    return Response(200, document.encode(), HTML, {"Content-Security-Policy": policy})


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


METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT")


def _handler(table: RouteTable) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        timeout = 30  # no single read or write of a connection waits longer
        server: CappedServer

        # A request line it cannot read is answered as HTTP/1.0, with headers (http.server's
        # default, HTTP/0.9, has none); so is an HTTP/0.9 request.
        default_request_version = "HTTP/1.0"

        def version_string(self) -> str:
            return "reconciler"  # the `Server:` header, without Python's version

        def serve(self) -> None:
            """Every method goes through the route table (one another server does not know
            is http.server's 501, which `send_error` writes as any answer)."""
            path, _, query = self.path.partition("?")
            found = table.find(self.command, path)
            if isinstance(found, Response):
                self.server.request_read(self.connection)
                respond(self, found)
                return
            route, params = found
            body = self._body() if route.takes_body else None
            self.server.request_read(self.connection)
            respond(self, route.handler(Request(params, query, dict(self.headers.items()), body)))

        def _body(self) -> bytes | None:
            """The body, or None (unread) when it announces no length or more than we take."""
            length = self.headers.get("Content-Length", "")
            if not (length.isascii() and length.isdigit()) or int(length) > MAX_BODY_BYTES:
                self.close_connection = True  # the body is not read: the connection cannot be reused
                return None
            return self.rfile.read(int(length))

        def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
            """http.server's own errors (a malformed request, a method no route knows) through
            the one writer: with the security headers, as text."""
            self.close_connection = True
            respond(self, text(code, message or HTTPStatus(code).phrase))

        def log_message(self, format: str, *args: Any) -> None:
            pass  # probes every few seconds would drown the daemon's own log

    for method in METHODS:
        setattr(Handler, f"do_{method}", Handler.serve)
    return Handler


@contextlib.contextmanager
def serve_health(host: str, port: int, site: Site, caps: Caps) -> Iterator[tuple[str, int]]:
    """Serves until the block ends; yields the bound (host, port) — port 0 picks a free one."""
    try:
        server = CappedServer((host, port), _handler(site.table()), caps)
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
