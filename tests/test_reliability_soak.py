"""Soak: the daemon under faults while jobs come and go; memory and open files stay bounded.

`reconcile --watch` runs as a real process against a sandbox answering 20% of requests with
429/500/503 and losing 20% of create answers, while the test adds, edits and deletes specs
every few tenths of a second.  Its resident memory, open file descriptors and threads are
read from /proc after a warm-up and at the end; the growth between the two must stay small.
Then faults stop, and every job must have exactly one batch per generation and part.

CI soaks for ~30 s; RECONCILER_FULL=1 for 5 minutes.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.fixtures.sandbox import cli_env
from tests.reconcile_helpers import batches, wait_until

FULL = os.environ.get("RECONCILER_FULL") == "1"
SOAK_SECONDS = 300.0 if FULL else 30.0
FAULTS = {"fault_rate": 0.2, "lost_response_rate": 0.2, "retry_after_seconds": 0.01}
MAX_FD_GROWTH = 8
MAX_THREAD_GROWTH = 4
MAX_RSS_GROWTH_KIB = 16 * 1024

pytestmark = pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads /proc")


def usage(pid: int) -> dict[str, int]:
    status = dict(
        line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line
    )
    return {
        "rss_kib": int(status["VmRSS"].split()[0]),
        "threads": int(status["Threads"]),
        "fds": len(os.listdir(f"/proc/{pid}/fd")),
    }


def log_events(log: Path) -> list[dict[str, Any]]:
    events = []
    for line in log.read_text(errors="replace").splitlines():
        try:
            events.append(json.loads(line))
        except ValueError:
            continue
    return events


def churn(repo: Any, rng: random.Random, alive: list[str], serial: int) -> None:
    """One change a user might push: a new job, an edited input, or a deleted spec."""
    move = rng.choice(["add", "add", "edit", "delete"] if len(alive) < 8 else ["edit", "delete"])
    if move == "add" or not alive:
        name = f"job-{serial:04d}"
        repo.write_job(
            name, requests=rng.randint(1, 4), **({"split": {"max_requests": 2}} if serial % 3 else {})
        )
        alive.append(name)
    elif move == "edit":
        repo.write_input(f"data/{rng.choice(alive)}.jsonl", requests=rng.randint(1, 5))
    else:
        name = alive.pop(rng.randrange(len(alive)))
        (repo.specs / f"{name}.yaml").unlink()


@pytest.mark.slow
def test_the_daemon_under_faults_and_churn_keeps_memory_and_open_files_bounded(
    make_repo, sandbox_factory, tmp_path
):
    seed = random.randrange(1 << 32)
    print(f"soak seed {seed}")
    rng = random.Random(seed)
    sandbox = sandbox_factory(**FAULTS)
    repo = make_repo()
    alive: list[str] = []
    for serial in range(4):
        churn(repo, rng, alive, serial)
    log = tmp_path / "daemon.log"
    env = cli_env() | {"RECONCILER_SANDBOX_URL": sandbox.base_url, "RECONCILER_OWNER": "tests/soak"}
    command = [sys.executable, "-m", "reconciler", "reconcile", "--watch", "--interval", "0.3"]
    command += ["--log-format", "json", "--health-port", "127.0.0.1:0", *repo.args()]
    with log.open("wb") as stderr:
        daemon = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=stderr)
    try:
        health = wait_until(lambda: [e for e in log_events(log) if e.get("event") == "health"], timeout=60)
        metrics_url = f"http://127.0.0.1:{health[0]['port']}/metrics"
        started = time.monotonic()
        serial, warm = 4, None
        while (elapsed := time.monotonic() - started) < SOAK_SECONDS:
            if warm is None and elapsed > SOAK_SECONDS / 4:
                warm = usage(daemon.pid)
            churn(repo, rng, alive, serial := serial + 1)
            time.sleep(rng.uniform(0.1, 0.6))
            assert daemon.poll() is None, log.read_text()
        end = usage(daemon.pid)
        passes = _passes(metrics_url)

        sandbox.configure(fault_rate=0.0, lost_response_rate=0.0)
        wait_until(lambda: _converged(repo, sandbox, alive), timeout=120)
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(timeout=30) == 0
    finally:
        if daemon.poll() is None:
            daemon.kill()
            daemon.wait()

    print(f"soak {SOAK_SECONDS:.0f}s: {serial} spec changes, passes {dict(passes)}, warm {warm}, end {end}")
    assert warm is not None
    assert passes["ok"] >= 10 and passes["failed"] + passes["degraded"] >= 1, passes
    assert end["fds"] - warm["fds"] <= MAX_FD_GROWTH, (warm, end)
    assert end["threads"] - warm["threads"] <= MAX_THREAD_GROWTH, (warm, end)
    assert end["rss_kib"] - warm["rss_kib"] <= MAX_RSS_GROWTH_KIB, (warm, end)
    assert "Traceback" not in log.read_text()


def _passes(url: str) -> Counter[str]:
    counts: Counter[str] = Counter()
    for line in httpx.get(url, timeout=10).text.splitlines():
        if line.startswith("reconciler_passes_total{"):
            result = line.split('result="')[1].split('"')[0]
            counts[result] += int(float(line.rsplit(" ", 1)[1]))
    return counts


def _converged(repo: Any, sandbox: Any, alive: list[str]) -> bool:
    """Every job alive has all its parts, none twice; the state records every job alive."""
    try:
        jobs = json.loads(repo.state.read_text())["jobs"]
    except (OSError, ValueError):
        return False
    units = Counter(
        (b.metadata["reconciler_job"], b.metadata["reconciler_generation"], b.metadata.get("reconciler_part"))
        for b in batches(sandbox)
    )
    assert all(n == 1 for n in units.values()), {u: n for u, n in units.items() if n > 1}
    return all(name in jobs and jobs[name]["batches"] and not jobs[name]["pending"] for name in alive)
