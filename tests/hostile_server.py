"""A tiny real HTTP server that answers the Batch API badly, one way per path prefix.

`http://127.0.0.1:<port>/<behaviour>/v1` is a base URL whose every request gets that
behaviour, so one server serves a whole test module and each test picks its poison:

    missing-fields     200 with objects lacking `id`, `data` and the like
    unknown-status     batches in a status no documentation names
    html-error         502 with an HTML page, as a broken proxy sends
    html-ok            200 with an HTML page
    truncated-json     200 whose JSON stops mid-object
    wrong-type         200 whose body is a JSON array, or a list whose `data` holds strings
    text-json          a valid batch sent as text/plain (the client may accept it)
    endless            a list whose `has_more` never ends, a new id on every page
    cycle              a list whose pages point back at each other forever
    ignores-after      a list that answers every page with the first one, has_more true
    hang-up            the connection closes halfway through the promised body
    stall              headers, then nothing (until the client gives up)
    retry-forever      429 with `Retry-After: 86400` on every request
    bad-counts         a batch whose request_counts are words, errors a list
    echo-auth          401 whose message repeats the Authorization header it was sent
    drip               headers promising 100,000 bytes, then one byte every `drip_seconds`
    flood              a list page that never ends, sent chunked (no length announced)
    flood-declared     the same, announcing 500 MB in Content-Length
    scripted           whatever the test put in `script[path]` (path after /v1), else 404;
                       with any headers it asked for (a Location, a retry-after-ms)

`requests[behaviour]` counts what arrived, so tests can bound the client's effort;
`calls["POST /batches"]` counts per method and route; `sent[behaviour]` the body bytes the special behaviours got out before the client hung up.
"""

from __future__ import annotations

import json
import sys
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

Answer = tuple[int, str, bytes]  # status, content type, body

BATCH = {"id": "batch_hostile", "object": "batch", "endpoint": "/v1/chat/completions", "status": "validating"}


def _json(status: int, body: Any) -> Answer:
    return status, "application/json", json.dumps(body).encode()


def _page(query: dict[str, str], ids: Callable[[int], str]) -> Answer:
    after = query.get("after", "")
    number = int(after.rsplit("_", 1)[1]) + 1 if after else 0
    return _json(200, {"object": "list", "data": [BATCH | {"id": ids(number)}], "has_more": True})


def _missing_fields(path: str, query: dict[str, str]) -> Answer:
    if path.endswith("/batches"):
        return _json(200, {"object": "list", "has_more": False})  # no `data`
    if path.endswith("/files"):
        return _json(200, {"object": "file", "bytes": 3})  # no `id`
    return _json(200, {"object": "batch", "status": "completed"})  # no `id`


BEHAVIOURS: dict[str, Callable[[str, dict[str, str]], Answer]] = {
    "missing-fields": _missing_fields,
    "unknown-status": lambda path, q: _json(
        200,
        {"object": "list", "data": [BATCH | {"status": "quantum_superposition"}], "has_more": False}
        if path.endswith("/batches")
        else BATCH | {"status": "quantum_superposition"},
    ),
    "html-error": lambda path, q: (502, "text/html", b"<html><body><h1>502 Bad Gateway</h1></body></html>"),
    "html-ok": lambda path, q: (200, "text/html", b"<!doctype html><title>Sign in</title><form></form>"),
    "truncated-json": lambda path, q: (200, "application/json", b'{"id": "batch_1", "object": "batch", "sta'),
    "wrong-type": lambda path, q: (
        _json(200, {"object": "list", "data": ["batch_1"], "has_more": False})
        if path.endswith("/batches")
        else _json(200, [BATCH])
    ),
    "text-json": lambda path, q: (200, "text/plain", json.dumps(BATCH).encode()),
    "endless": lambda path, q: _page(q, lambda n: f"batch_{n}"),
    "cycle": lambda path, q: _page(q, lambda n: f"batch_{n % 2}"),
    "ignores-after": lambda path, q: _page({}, lambda n: "batch_0"),
    "retry-forever": lambda path, q: _json(429, {"error": {"message": "slow down", "type": "requests"}}),
    "bad-counts": lambda path, q: _json(
        200, BATCH | {"request_counts": {"total": "many", "completed": "some"}, "errors": ["a", "b"]}
    ),
}
SPECIAL = ("hang-up", "stall", "drip", "flood", "flood-declared")
FLOOD_CHUNK = json.dumps(BATCH).encode() * 100


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out as separate writes
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the tests read counts, not logs."""

    def _serve(self) -> None:
        parts = urlsplit(self.path)
        behaviour, _, rest = parts.path.lstrip("/").partition("/")
        self.server.count(behaviour)
        route = ("/" + rest).removeprefix("/v1")
        self.server.count_call(f"{self.command} {route}")
        if self.server.hook is not None:
            self.server.hook(self.command, route)  # before the body: the client is still sending it
        length = int(self.headers.get("content-length") or 0)
        if length:
            self.rfile.read(length)
        if behaviour in SPECIAL:
            self._misbehave(behaviour)
            return
        answer = BEHAVIOURS.get(behaviour)
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        status, kind, body = answer("/" + rest, query) if answer else _json(404, {"error": {"message": "?"}})
        headers: dict[str, str] = {}
        if behaviour == "scripted":
            missing = (404, "text/plain", b"", headers)
            script = self.server.script
            status, kind, body, headers = script.get(f"{self.command} {route}", script.get(route, missing))
        if behaviour == "echo-auth":
            sent = self.headers.get("authorization", "")
            status, kind, body = _json(401, {"error": {"message": f"Incorrect API key provided: {sent}."}})
        self.send_response(status)
        self.send_header("content-type", kind)
        self.send_header("content-length", str(len(body)))
        if status == 429 and behaviour != "scripted":
            self.send_header("retry-after", "86400")
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def _misbehave(self, behaviour: str) -> None:
        self.send_response(200)
        self.send_header("content-type", "application/json")
        if behaviour.startswith("flood"):
            self._flood(declared=behaviour == "flood-declared")
            return
        self.send_header("content-length", "100000" if behaviour == "drip" else "4096")
        self.end_headers()
        if behaviour == "drip":
            self._drip()
            return
        if behaviour == "hang-up":
            self.wfile.write(b'{"id": "batch_1", "obj')
            self.close_connection = True
            return
        self.wfile.flush()
        self.server.stop_stalling.wait(30)  # until the test ends; the client times out first
        self.close_connection = True

    def _drip(self) -> None:
        try:
            for _ in range(100000):
                self.wfile.write(b" ")
                self.wfile.flush()
                self.server.count_sent("drip", 1)
                if self.server.stop_stalling.wait(self.server.drip_seconds):
                    break
        except OSError:
            pass  # the client gave up: what the test wants
        self.close_connection = True

    def _flood(self, *, declared: bool) -> None:
        behaviour = "flood-declared" if declared else "flood"
        if declared:
            self.send_header("content-length", str(500 * 1024 * 1024))
        else:
            self.send_header("transfer-encoding", "chunked")
        self.end_headers()
        try:
            self._send_part(b'{"object": "list", "has_more": false, "data": [', chunked=not declared)
            while not self.server.stop_stalling.is_set():
                self._send_part(FLOOD_CHUNK, chunked=not declared)
                self.server.count_sent(behaviour, len(FLOOD_CHUNK))
        except OSError:
            pass
        self.close_connection = True

    def _send_part(self, data: bytes, *, chunked: bool) -> None:
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data) if chunked else data)

    do_GET = _serve
    do_POST = _serve
    do_DELETE = _serve


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.requests: Counter[str] = Counter()
        self.sent: Counter[str] = Counter()
        self.calls: Counter[str] = Counter()
        self.hook: Callable[[str, str], None] | None = None
        self.script: dict[str, tuple[int, str, bytes, dict[str, str]]] = {}
        self.drip_seconds = 0.1
        self.stop_stalling = threading.Event()
        self._lock = threading.Lock()

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client hanging up is normal (a command that failed closes its connections, one
        still reading in the background included); anything else is a bug worth its traceback,
        which lands in the stderr a test reads."""
        if not isinstance(sys.exc_info()[1], OSError):
            super().handle_error(request, client_address)

    def count(self, behaviour: str) -> None:
        with self._lock:
            self.requests[behaviour] += 1

    def count_call(self, call: str) -> None:
        with self._lock:
            self.calls[call] += 1

    def count_sent(self, behaviour: str, size: int) -> None:
        with self._lock:
            self.sent[behaviour] += size


class HostileServer:
    def __init__(self, server: _Server) -> None:
        self._server = server
        self.root = f"http://127.0.0.1:{server.server_address[1]}"

    def base_url(self, behaviour: str) -> str:
        return f"{self.root}/{behaviour}/v1"

    @property
    def requests(self) -> Counter[str]:
        return self._server.requests

    @property
    def sent(self) -> Counter[str]:
        return self._server.sent

    @property
    def calls(self) -> Counter[str]:
        """Requests per `METHOD /route` (the path after /v1), whatever the behaviour."""
        return self._server.calls

    def on_request(self, hook: Callable[[str, str], None] | None) -> None:
        """Calls `hook(method, route)` as each request's headers arrive, before its body is read."""
        self._server.hook = hook

    def drip_every(self, seconds: float) -> None:
        self._server.drip_seconds = seconds

    def script(self, path: str, body: Any, status: int = 200, headers: dict[str, str] | None = None) -> None:
        """`scripted` answers `path` (as after /v1, e.g. "/batches", or "POST /files" for one method)
        with `body`: JSON, or bytes as is."""
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        self._server.script[path] = (status, "application/json", raw, dict(headers or {}))


@contextmanager
def hostile_server() -> Iterator[HostileServer]:
    server = _Server()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield HostileServer(server)
    finally:
        server.stop_stalling.set()
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
