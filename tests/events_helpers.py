"""Shared by the webhook, notification and dashboard tests: the daemon as a subprocess with its
health port, a local channel that records what it is sent, and reading the daemon's metrics.
"""

from __future__ import annotations

import functools
import json
import re
import resource
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from reconciler.sandbox import Sandbox
from tests.fixtures.repo import UserRepo
from tests.fixtures.sandbox import cli_env

OWNER = "tests/events"
WEBHOOK_SECRET = "whsec_" + "c2VjcmV0LWZvci10aGUtZXZlbnRzLXRlc3Rz"  # base64 of a test-only key


@dataclass
class Daemon:
    process: subprocess.Popen[bytes]
    log_file: Path
    port: int | None = None

    def log(self) -> str:
        return self.log_file.read_text(encoding="utf-8", errors="replace")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def eventually(self, condition: Callable[[], Any], timeout: float = 30.0) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = condition()
            if value:
                return value
            assert self.process.poll() is None, f"daemon exited {self.process.returncode}:\n{self.log()}"
            time.sleep(0.02)
        raise AssertionError(f"condition not met within {timeout}s; daemon log:\n{self.log()}")

    def metric(self, name: str, **labels: str) -> float:
        """One series' value from /metrics; 0 when it has not been counted yet."""
        text = httpx.get(f"{self.url}/metrics", timeout=10).text
        wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
        series = f"{name}{{{wanted}}}" if labels else name
        for line in text.splitlines():
            key, _, value = line.rpartition(" ")
            if key == series:
                return float(value)
        return 0.0

    def stop(self, signum: int = signal.SIGTERM) -> int:
        self.process.send_signal(signum)
        return self.process.wait(timeout=15)


@pytest.fixture
def events_daemon(tmp_path: Path) -> Iterator[Callable[..., Daemon]]:
    started: list[Daemon] = []

    def start(
        repo: UserRepo,
        sandbox: Sandbox,
        *flags: str,
        interval: str = "0.5",
        env: dict[str, str] | None = None,
        nofile: int | None = None,
    ) -> Daemon:
        """`nofile`: the daemon's descriptor limit (RLIMIT_NOFILE, soft and hard), as `ulimit -n`."""
        log_file = tmp_path / f"daemon-{len(started) + 1}.log"
        command = [sys.executable, "-m", "reconciler", "reconcile", "--watch", *repo.args()]
        command += ["--interval", interval, "--health-port", "0", *flags]
        environment = {**cli_env(), "RECONCILER_SANDBOX_URL": sandbox.base_url, "RECONCILER_OWNER": OWNER}
        with log_file.open("wb") as stderr:
            process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=stderr,
                env={**environment, **(env or {})},
                preexec_fn=None if nofile is None else functools.partial(_limit_descriptors, nofile),
            )
        daemon = Daemon(process, log_file)
        started.append(daemon)
        found = daemon.eventually(lambda: re.search(r"dashboard on http://127\.0\.0\.1:(\d+)/", daemon.log()))
        daemon.port = int(found.group(1))
        daemon.eventually(lambda: "first pass done" in daemon.log() or "pass failed" in daemon.log())
        return daemon

    yield start
    for daemon in started:
        if daemon.process.poll() is None:
            daemon.process.kill()
            daemon.process.wait(timeout=15)


def _limit_descriptors(count: int) -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (count, count))


@dataclass
class Receiver:
    """A channel on loopback. `plan` holds the status of each next answer (then 200); "hang"
    holds the request until `release` is set, and answers nothing; "trickle" sends its answer's
    head a byte every `trickle_seconds`, never finishing it; "flood" answers 200 with a body of
    `flood_bytes` (`flood_sent` counts what got out before the client hung up)."""

    plan: list[int | str] = field(default_factory=list)
    received: list[dict[str, Any]] = field(default_factory=list)  # every request: path, headers, body
    acknowledged: list[dict[str, Any]] = field(default_factory=list)  # bodies answered 2xx
    release: threading.Event = field(default_factory=threading.Event)
    url: str = ""
    trickle_seconds: float = 0.5
    flood_bytes: int = 512 << 20
    flood_sent: int = 0

    def ids(self) -> list[str]:
        return [message.get("id", "") for message in self.acknowledged]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    channel = Receiver()
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            message = json.loads(body)
            with lock:
                channel.received.append(
                    {"path": self.path, "headers": dict(self.headers), "body": message, "raw": body}
                )
                answer = channel.plan.pop(0) if channel.plan else 200
            if answer == "hang":
                channel.release.wait(60)
                self.close_connection = True
                return
            if answer == "trickle":
                self._trickle()
                return
            if answer == "flood":
                with lock:
                    channel.acknowledged.append(message)
                self._flood()
                return
            assert isinstance(answer, int)
            if 200 <= answer < 300:
                with lock:
                    channel.acknowledged.append(message)
            self.send_response(answer)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def _trickle(self) -> None:
            head = b"HTTP/1.1 200 OK\r\nX-Slow: " + b"a" * 100_000
            try:
                for byte in head:
                    self.wfile.write(bytes([byte]))
                    self.wfile.flush()
                    if channel.release.wait(channel.trickle_seconds):
                        break
            except OSError:
                pass  # the client gave up: what a bounded client does
            self.close_connection = True

        def _flood(self) -> None:
            self.send_response(200)
            self.send_header("Content-Length", str(channel.flood_bytes))
            self.end_headers()
            chunk = b"0" * (1 << 20)
            try:
                while channel.flood_sent < channel.flood_bytes:
                    self.wfile.write(chunk)
                    with lock:
                        channel.flood_sent += len(chunk)
            except OSError:
                pass
            self.close_connection = True

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    channel.url = f"http://127.0.0.1:{server.server_address[1]}"
    yield channel
    channel.release.set()
    server.shutdown()
    server.server_close()


def statuses(repo: UserRepo) -> dict[str, str]:
    try:
        state = json.loads(repo.state.read_text(encoding="utf-8"))
    except (FileNotFoundError, ValueError):
        return {}
    return {name: job["status"] for name, job in state["jobs"].items()}
