"""Soak: the daemon under faults for a while; memory, open files and threads stay bounded.

`reconcile --watch` runs as a real process against a sandbox answering 20% of requests with
429/500/503 and losing 20% of create answers.  Its resident memory, open file descriptors
and threads are read from /proc after a warm-up and at the end.

- Jobs coming and going: the test adds, edits and deletes specs every few tenths of a
  second.  Every change adds batches to the account, and a pass holds the whole live list
  while it plans, so memory may grow with the account, a little; files and threads may not.
  Then faults stop, and every job must have exactly one batch per generation and part.
- An unchanging world: edits that change no batch (labels) make the daemon reload and pass
  again and again over the same batches; memory must come back to where it was.

CI soaks each for ~25 s; RECONCILER_FULL=1 for 5 minutes each.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from reconciler.sandbox import Sandbox
from tests.fixtures.daemon import StartDaemon
from tests.fixtures.repo import MakeRepo, UserRepo
from tests.fixtures.sandbox import SandboxFactory
from tests.reconcile_helpers import batches, wait_until

FULL = os.environ.get("RECONCILER_FULL") == "1"
SOAK_SECONDS = 300.0 if FULL else 25.0
FAULTS = {"fault_rate": 0.2, "lost_response_rate": 0.2, "retry_after_seconds": 0.01}
MAX_FD_GROWTH = 8
MAX_THREAD_GROWTH = 4
MAX_RSS_GROWTH_KIB = {"churn": 16 * 1024, "steady": 3 * 1024}

pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(SOAK_SECONDS + 300),
    pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads /proc"),
]


def usage(pid: int) -> dict[str, int]:
    status = dict(
        line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line
    )
    return {
        "rss_kib": int(status["VmRSS"].split()[0]),
        "threads": int(status["Threads"]),
        "fds": len(os.listdir(f"/proc/{pid}/fd")),
    }


def passes(url: str) -> Counter[str]:
    counts: Counter[str] = Counter()
    for line in httpx.get(url, timeout=10).text.splitlines():
        if line.startswith("reconciler_passes_total{"):
            result = line.split('result="')[1].split('"')[0]
            counts[result] += int(float(line.rsplit(" ", 1)[1]))
    return counts


@contextlib.contextmanager
def daemon(
    start_daemon: StartDaemon, repo: UserRepo, sandbox: Sandbox
) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """The daemon and its /metrics URL; stopped with SIGTERM, which must exit 0."""
    flags = ("--log-format", "json", "--health-port", "127.0.0.1:0")
    running = start_daemon(repo, sandbox, *flags, interval="0.3", owner="tests/soak", ready=None)
    health = running.eventually(
        lambda: [e for e in running.events() if e.get("event") == "health"], timeout=60
    )
    yield running.process, f"http://127.0.0.1:{health[0]['port']}/metrics"
    assert running.stop(timeout=30) == 0
    assert "Traceback" not in running.log()


def soak(process: subprocess.Popen[bytes], rng: random.Random, change: Any) -> tuple[dict[str, int], ...]:
    """Makes a change every few tenths of a second; usage after a quarter and at the end."""
    started, warm = time.monotonic(), None
    while (elapsed := time.monotonic() - started) < SOAK_SECONDS:
        if warm is None and elapsed > SOAK_SECONDS / 4:
            warm = usage(process.pid)
        change()
        time.sleep(rng.uniform(0.1, 0.6))
        assert process.poll() is None, "the daemon died"
    assert warm is not None
    return warm, usage(process.pid)


def assert_bounded(warm: dict[str, int], end: dict[str, int], kind: str) -> None:
    assert end["fds"] - warm["fds"] <= MAX_FD_GROWTH, (warm, end)
    assert end["threads"] - warm["threads"] <= MAX_THREAD_GROWTH, (warm, end)
    assert end["rss_kib"] - warm["rss_kib"] <= MAX_RSS_GROWTH_KIB[kind], (warm, end)


class Churn:
    """What users push: new jobs, edited inputs, deleted specs."""

    def __init__(self, repo: Any, rng: random.Random) -> None:
        self.repo, self.rng, self.serial = repo, rng, 0
        self.alive: list[str] = []

    def __call__(self) -> None:
        self.serial += 1
        move = self.rng.choice(
            ["add", "add", "edit", "delete"] if len(self.alive) < 8 else ["edit", "delete"]
        )
        if move == "add" or not self.alive:
            name = f"job-{self.serial:04d}"
            split = {"split": {"max_requests": 2}} if self.serial % 3 else {}
            self.repo.write_job(name, requests=self.rng.randint(1, 4), **split)
            self.alive.append(name)
        elif move == "edit":
            self.repo.write_input(
                f"data/{self.rng.choice(self.alive)}.jsonl", requests=self.rng.randint(1, 5)
            )
        else:
            (self.repo.specs / f"{self.alive.pop(self.rng.randrange(len(self.alive)))}.yaml").unlink()


def test_with_jobs_coming_and_going_under_faults_files_and_threads_stay_bounded_and_all_converge(
    make_repo: MakeRepo, sandbox_factory: SandboxFactory, start_daemon: StartDaemon
) -> None:
    seed = int(os.environ.get("RECONCILER_SOAK_SEED", random.randrange(1 << 32)))
    rng, sandbox, repo = random.Random(seed), sandbox_factory(**FAULTS), make_repo()
    churn = Churn(repo, rng)
    for _ in range(4):
        churn()
    with daemon(start_daemon, repo, sandbox) as (process, metrics):
        warm, end = soak(process, rng, churn)
        done = passes(metrics)
        sandbox.configure(fault_rate=0.0, lost_response_rate=0.0)
        wait_until(lambda: converged(repo, sandbox, churn.alive), timeout=120)
    print(f"churn soak {SOAK_SECONDS:.0f}s, seed {seed}: {churn.serial} spec changes, passes {dict(done)}")
    print(f"  warm {warm}, end {end}")
    assert done["ok"] >= 10 and done["failed"] + done["degraded"] >= 1, done
    assert_bounded(warm, end, "churn")


def test_passes_over_an_unchanging_world_under_faults_leave_no_memory_behind(
    make_repo: MakeRepo, sandbox_factory: SandboxFactory, start_daemon: StartDaemon
) -> None:
    rng, sandbox, repo = random.Random(1), sandbox_factory(), make_repo()
    names = [f"job-{index}" for index in range(10)]
    for index, name in enumerate(names):
        split: dict[str, Any] = {"split": {"max_requests": 2}} if index % 2 else {}
        repo.write_job(name, requests=3, **split)

    def relabel() -> None:  # a reload and a pass, but no batch to create or cancel
        spec = repo.specs / f"{rng.choice(names)}.yaml"
        document = yaml.safe_load(spec.read_text())
        document["metadata"]["labels"] = {"edit": str(rng.getrandbits(32))}
        # A pass plans only the jobs a change touched: a label alone touches none (daemon/passes.py).
        document["spec"]["history_limit"] = rng.randint(5, 50)
        spec.write_text(yaml.safe_dump(document))

    with daemon(start_daemon, repo, sandbox) as (process, metrics):
        wait_until(lambda: converged(repo, sandbox, names), timeout=60)
        before = len(batches(sandbox))
        sandbox.configure(**FAULTS)
        warm, end = soak(process, rng, relabel)
        done = passes(metrics)
        sandbox.configure(fault_rate=0.0, lost_response_rate=0.0)
    print(f"steady soak {SOAK_SECONDS:.0f}s: passes {dict(done)}, warm {warm}, end {end}")
    assert sum(done.values()) >= 20 and len(batches(sandbox)) == before
    assert_bounded(warm, end, "steady")


UNIT_KEYS = (
    "reconciler_job",
    "reconciler_generation",
    "reconciler_run",
    "reconciler_part",
    "reconciler_retry",
)


def converged(repo: Any, sandbox: Any, alive: list[str]) -> bool:
    """Every job alive has its batches, none twice; the state records every job alive."""
    try:
        jobs = json.loads(repo.state.read_text())["jobs"]
    except (OSError, ValueError):
        return False
    # A unit is what the duplicate guard keeps one batch of: job, generation, run, part and
    # attempt. An input edited back to an earlier content brings that generation back, and its
    # parts the replace had cancelled are resumed as their next attempt (only the requests
    # without an answer): a second attempt of a part, never a second batch of one attempt.
    units = Counter(
        tuple(b.metadata.get(k) for k in UNIT_KEYS) for b in batches(sandbox) if b.metadata is not None
    )
    assert all(n == 1 for n in units.values()), {u: n for u, n in units.items() if n > 1}
    return all(name in jobs and jobs[name]["batches"] and not jobs[name]["pending"] for name in alive)
