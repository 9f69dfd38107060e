"""The daemon (`reconciler reconcile --watch --log-format json`) as a subprocess for items 5
and 7, its JSON log lines collected as they arrive."""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Mapping

from tests.bench.data import BenchRepo
from tests.bench.procs import bench_env, reconciler_argv
from tests.bench.sandbox import ExternalSandbox


class Daemon:
    """A running daemon; its JSON log lines are collected as they arrive."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.process = process
        self.started = time.perf_counter()
        self.events: list[dict[str, object]] = []
        self.arrived: dict[str, float] = {}  # event → when its first line arrived (perf_counter)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            with contextlib.suppress(ValueError):
                event = json.loads(line)
                self.events.append(event)
                self.arrived.setdefault(str(event.get("event")), time.perf_counter())

    def logged(self, event: str, job: str | None = None) -> bool:
        return any(e.get("event") == event and (job is None or e.get("job") == job) for e in self.events)

    def created(self, job: str) -> bool:
        """The pass that created `job`'s batch has been logged."""
        return self.logged("action", job)


@contextlib.contextmanager
def running_daemon(
    sandbox: ExternalSandbox, repo: BenchRepo, env: Mapping[str, str] | None = None
) -> Iterator[Daemon]:
    """`env`: more of the daemon's environment (a PostgreSQL state's URL)."""
    env = bench_env({"RECONCILER_SANDBOX_URL": sandbox.base_url, **(env or {})})
    argv = reconciler_argv("reconcile", "--watch", "--log-format", "json", *repo.args())
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
    try:
        yield Daemon(process)
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def wait_for(condition: Callable[[], object], timeout: float, what: str) -> None:
    """Polls `condition()`; the timeout is a safety net, not a measurement."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.02)
