"""`--health-port`: `GET /healthz` and `GET /metrics` (Prometheus text format).

The metrics live in their own registry, so only the daemon's own series are served.
The server runs on daemon threads and never touches the state file or the provider.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, generate_latest


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.passes = Counter(
            "reconciler_passes", "Reconcile passes by result (ok, degraded, failed).", ["result"],
            registry=self.registry,
        )
        self.actions = Counter(
            "reconciler_actions", "Changes carried out, by kind and result.", ["kind", "result"],
            registry=self.registry,
        )
        self.api_errors = Counter(
            "reconciler_api_errors", "API errors that reached the daemon, by HTTP status.", ["status"],
            registry=self.registry,
        )
        self.jobs = Gauge("reconciler_jobs", "Jobs in the state file by status.", ["status"], registry=self.registry)
        self.last_success = Gauge(
            "reconciler_last_successful_pass_timestamp_seconds",
            "Unix time of the last pass that observed every provider.",
            registry=self.registry,
        )

    def set_jobs(self, by_status: Mapping[str, int]) -> None:
        self.jobs.clear()  # a status no job has any more must not linger at its old count
        for status, count in by_status.items():
            self.jobs.labels(status=status).set(count)


@dataclass(frozen=True)
class Health:
    healthy: bool
    detail: dict[str, Any]


def _handler(metrics: Metrics, health: Callable[[], Health]) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            route = self.path.split("?", 1)[0]
            if route == "/healthz":
                report = health()
                body = json.dumps(report.detail, sort_keys=True).encode() + b"\n"
                self._send(200 if report.healthy else 503, "application/json", body)
            elif route == "/metrics":
                self._send(200, CONTENT_TYPE_LATEST, generate_latest(metrics.registry))
            else:
                self._send(404, "text/plain; charset=utf-8", b"not found; try /healthz or /metrics\n")

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
    host: str, port: int, metrics: Metrics, health: Callable[[], Health]
) -> Iterator[tuple[str, int]]:
    """Serves until the block ends; yields the bound (host, port) — port 0 picks a free one."""
    server = ThreadingHTTPServer((host, port), _handler(metrics, health))
    server.daemon_threads = True
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
