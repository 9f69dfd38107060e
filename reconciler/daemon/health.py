"""`--health-port`: `GET /healthz` (alias `/readyz`), `GET /livez`, `GET /metrics`, and the
dashboard and webhooks (web.py) when given `routes`.

`/livez` answers 200 whenever the process does: a restart cures a stuck process, never a
provider outage, so liveness must not depend on the provider.  `/healthz` and `/readyz`
turn 503 when passes keep failing (a provider unreachable): for readiness and alerts.

The server runs on daemon threads and never touches the state file or a provider: it
only reads what the loop recorded. Its connections are capped and timed (connections.py).
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from reconciler.common.errors import UserError
from reconciler.daemon.connections import CappedServer, Caps
from reconciler.daemon.metrics import Metrics
from reconciler.daemon.web import Routes
from reconciler.daemon.webhooks import MAX_BODY_BYTES


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
        self.role = "leader"  # or "standby": a replica waiting for the leader lock (leader.py)
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
