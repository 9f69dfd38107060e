"""The health port under a flood: the daemon runs with a low descriptor limit (`ulimit -n`), and
more connections than its cap arrive — event streams that stay open, clients that never send
a request. `/healthz` and `/metrics` still answer, a pass still creates a batch, the daemon's
descriptors stay bounded; a bad query value is a 400, never a traceback in the log.
"""

from __future__ import annotations

import contextlib
import os
import socket
from collections import Counter
from collections.abc import Callable, Iterator

import httpx
import pytest

from reconciler.sandbox import Sandbox
from tests.events_helpers import Daemon
from tests.fixtures.repo import UserRepo
from tests.fixtures.sandbox import SandboxFactory
from tests.reconcile_helpers import batches

NOFILE = 256  # as `ulimit -n 256`: the caps follow it (32 connections, 16 event streams)
FLOOD = 300  # more connections than the daemon has descriptors


def _descriptors(daemon: Daemon) -> int:
    return len(os.listdir(f"/proc/{daemon.process.pid}/fd"))


@contextlib.contextmanager
def _connections(daemon: Daemon, count: int, request: bytes) -> Iterator[list[socket.socket]]:
    opened = []
    try:
        for _ in range(count):
            connection = socket.create_connection(("127.0.0.1", daemon.port or 0), timeout=20)
            if request:
                connection.sendall(request)
            opened.append(connection)
        yield opened
    finally:
        for connection in opened:
            connection.close()


def _status(connection: socket.socket) -> str:
    """The answer's status code, or `closed` when the daemon hung up without one."""
    try:
        head = connection.recv(64)
    except ConnectionResetError:
        return "closed"
    return head.split(b" ")[1].decode() if head.startswith(b"HTTP/") else "closed"


def _answers(daemon: Daemon) -> tuple[int, int]:
    with httpx.Client(base_url=daemon.url, timeout=20) as client:
        return client.get("/healthz").status_code, client.get("/metrics").status_code


@pytest.mark.slow
def test_more_event_streams_and_idle_clients_than_the_cap_leave_health_and_passes_working(
    make_repo: Callable[..., UserRepo],
    sandbox_factory: SandboxFactory,
    events_daemon: Callable[..., Daemon],
) -> None:
    sandbox: Sandbox = sandbox_factory()
    repo = make_repo()
    repo.write_job("first-job")
    daemon = events_daemon(repo, sandbox, nofile=NOFILE)
    before = _descriptors(daemon)

    stream = b"GET /events HTTP/1.1\r\nHost: reconciler\r\n\r\n"
    with _connections(daemon, FLOOD, stream) as streams:
        answered = Counter(_status(connection) for connection in streams)
        during = _descriptors(daemon)
        with _connections(daemon, FLOOD, b"") as idle:  # connect, then say nothing
            assert _answers(daemon) == (200, 200)
            repo.write_job("second-job")
            daemon.eventually(lambda: batches(sandbox, "second-job"))
            # The cap (32), and as many again at most for connections being let go.
            assert _descriptors(daemon) <= before + 2 * 32
            assert len(idle) == FLOOD

    # The streams beyond the cap were refused at once (a 503), or, while still sending their
    # request, cut off to make room; none was left hanging, and no more than 16 stayed open.
    assert set(answered) <= {"200", "503", "closed"}, answered
    assert answered["200"] <= 16 and answered["503"] >= 1, answered
    assert during <= before + 2 * 32
    log = daemon.log()
    assert "Too many open files" not in log and "Traceback" not in log, log


BAD_QUERIES = (
    "/events?since=%C2%B2",  # a superscript two: a "digit" to str.isdigit, not to int()
    "/events?since=abc",
    "/events?since=-1",
    "/events?since=",
    "/events?since=1&since=2",
    "/events?since=" + "9" * 5000,  # past int()'s digit limit
    "/events?since=%FF",
    "/jobs/first-job/events?since=%C2%B2",
)


@pytest.mark.slow
def test_a_bad_query_value_is_a_400_not_a_traceback(
    make_repo: Callable[..., UserRepo],
    sandbox_factory: SandboxFactory,
    events_daemon: Callable[..., Daemon],
) -> None:
    repo = make_repo()
    repo.write_job("first-job")
    daemon = events_daemon(repo, sandbox_factory())

    def answer(target: str) -> str:
        try:
            with httpx.stream("GET", f"{daemon.url}{target}", timeout=20) as found:
                if found.status_code != 400:
                    return str(found.status_code)  # e.g. 200: a stream, which never ends
                return f"400 {found.read().decode().split(':')[0].strip()}"
        except httpx.HTTPError as error:
            return type(error).__name__

    answers = {target[:40]: answer(target) for target in BAD_QUERIES}
    with httpx.stream("GET", f"{daemon.url}/events?since=0", timeout=20) as good:
        good_status = good.status_code

    assert answers == {target[:40]: "400 since" for target in BAD_QUERIES[:-2]} | {
        BAD_QUERIES[-2][:40]: "400 the query is not UTF-8",
        BAD_QUERIES[-1][:40]: "400 since",
    }
    assert good_status == 200
    assert httpx.get(f"{daemon.url}/healthz", timeout=20).status_code == 200
    assert "Traceback" not in daemon.log()
