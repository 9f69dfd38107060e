"""A schedule under the daemon: it sleeps until the next slot, and each slot is one run however
many notice it — the daemon, `reconcile`s racing it, a restarted daemon.  Real processes over
real HTTP; the slot is reached by starting the reconciler's clock just before it
($RECONCILER_NOW), so the test waits seconds, not a day."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest

from reconciler.sandbox import Sandbox
from tests.fixtures.repo import UserRepo
from tests.fixtures.sandbox import cli_env
from tests.reconcile_helpers import batches

OWNER = "tests/schedule"
SLOT = "2026-12-01T01:00:00Z"
T = TypeVar("T")


def _env(sandbox: Sandbox, now: str) -> dict[str, str]:
    return {
        **cli_env(),
        "RECONCILER_SANDBOX_URL": sandbox.base_url,
        "RECONCILER_OWNER": OWNER,
        "RECONCILER_NOW": now,
    }


def _eventually(condition: Callable[[], T], what: str, timeout: float = 30.0) -> T:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"{what}: not within {timeout}s")


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[Callable[..., subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []

    def start(repo: UserRepo, sandbox: Sandbox, now: str) -> subprocess.Popen[bytes]:
        log = tmp_path / f"daemon-{len(started)}.log"
        with log.open("wb") as stderr:
            process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "reconciler",
                    "reconcile",
                    "--watch",
                    *repo.args(),
                    "--interval",
                    "30",
                ],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=stderr,
                env=_env(sandbox, now),
            )
        started.append(process)
        _eventually(lambda: "first pass done" in log.read_text(), "the daemon's first pass")
        return process

    yield start
    for process in started:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=15)


def _reconcile(repo: UserRepo, sandbox: Sandbox, now: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "reconciler", "reconcile", *repo.args()],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env={**_env(sandbox, now), "RECONCILER_LOCK_TIMEOUT": "60"},
    )


@pytest.mark.slow
def test_each_slot_is_one_run_across_the_daemon_racing_reconciles_and_a_restart(
    make_repo: Callable[..., UserRepo], sandbox: Sandbox, daemon: Callable[..., subprocess.Popen[bytes]]
) -> None:
    repo = make_repo()
    # Yesterday's slot is past the deadline, so nothing runs until today's.
    repo.write_job("nightly-eval", schedule="0 1 * * *", starting_deadline="1h")
    started = time.monotonic()
    first = daemon(repo, sandbox, "2026-12-01T00:59:58Z")
    assert batches(sandbox) == []

    # Three one-shot reconciles whose clocks stand on the slot race the daemon waking for it.
    racers = [_reconcile(repo, sandbox, SLOT) for _ in range(3)]
    for racer in racers:
        _, err = racer.communicate(timeout=60)
        assert racer.returncode == 0, err.decode()
    _eventually(lambda: batches(sandbox, "nightly-eval"), "the slot's batch")
    # Let the daemon's clock pass the slot too (it started two seconds before it).
    _eventually(lambda: time.monotonic() > started + 4, "the daemon's clock passing the slot")

    first.send_signal(signal.SIGTERM)
    assert first.wait(timeout=15) == 0
    daemon(repo, sandbox, "2026-12-01T01:00:30Z")  # restarted within the slot's hour

    assert sandbox.request_counts().get("POST /v1/batches") == 1
    (run,) = batches(sandbox, "nightly-eval")
    assert run.metadata["reconciler_run"] == SLOT


@pytest.mark.slow
def test_the_daemon_sleeps_until_the_next_slot_and_starts_it(
    make_repo: Callable[..., UserRepo], sandbox: Sandbox, daemon: Callable[..., subprocess.Popen[bytes]]
) -> None:
    repo = make_repo()
    repo.write_job("nightly-eval", schedule="0 1 * * *", starting_deadline="1h")
    daemon(repo, sandbox, "2026-12-01T00:59:58Z")
    assert batches(sandbox) == []
    # Nothing runs and no file changes: only the slot can wake it, about two seconds on.
    found = _eventually(lambda: batches(sandbox, "nightly-eval"), "the slot's batch", timeout=15)
    assert [b.metadata["reconciler_run"] for b in found] == [SLOT]
    assert sandbox.request_counts().get("POST /v1/batches") == 1
