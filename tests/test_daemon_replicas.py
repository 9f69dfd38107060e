"""Daemon replicas on a PostgreSQL state: one leads, the others stand by, a kill hands over.

Three `reconcile --watch` replicas, each in its own checkout of the repo (as pods would be),
one database.  The leader is SIGKILLed at random moments, mostly while its passes create; a
standby must lead within 5 s each time (seen on its /healthz), no unit may ever get two
batches, and in the end every job has converged.  A replacement replica joins after each kill.

CI kills the leader 3 times; RECONCILER_FULL=1 10 times.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from reconciler.sandbox import Sandbox
from tests.fixtures.postgres import StateDb
from tests.fixtures.repo import MakeRepo
from tests.fixtures.sandbox import cli_env
from tests.reconcile_helpers import batches, wait_until

FULL = os.environ.get("RECONCILER_FULL") == "1"
KILLS = 10 if FULL else 3
JOBS = 6
OWNER = "tests/replicas"
TAKEOVER_SECONDS = 5.0


@dataclass
class Replica:
    process: subprocess.Popen[bytes]
    log_file: Path
    port: int | None = None

    def log(self) -> str:
        return self.log_file.read_text(encoding="utf-8", errors="replace")

    def health(self) -> dict[str, Any] | None:
        if self.port is None:
            found = re.search(r"dashboard on http://127\.0\.0\.1:(\d+)/", self.log())
            if not found:
                return None
            self.port = int(found.group(1))
        try:
            body: dict[str, Any] = httpx.get(f"http://127.0.0.1:{self.port}/healthz", timeout=2).json()
        except httpx.HTTPError:
            return None
        return body

    def role(self) -> str | None:
        return (self.health() or {}).get("role")


# Starts one more replica (waiting until it leads or stands by), and every replica started so far.
Replicas = tuple[Callable[[], Replica], list[Replica]]


@pytest.fixture
def replicas(tmp_path: Path, make_repo: MakeRepo, sandbox: Sandbox, state_db: StateDb) -> Iterator[Replicas]:
    seed = make_repo("seed")
    started: list[Replica] = []

    def start() -> Replica:
        index = len(started) + 1
        checkout = tmp_path / f"pod-{index}"
        shutil.copytree(seed.root, checkout)
        env = cli_env() | {
            "RECONCILER_SANDBOX_URL": sandbox.base_url,
            "RECONCILER_OWNER": OWNER,
            "RECONCILER_STATE_URL": state_db.url,
            "XDG_RUNTIME_DIR": str(tmp_path / f"runtime-{index}"),  # pods share no machine
        }
        log_file = tmp_path / f"replica-{index}.log"
        command = [sys.executable, "-m", "reconciler", "reconcile", "--watch", "--repo", str(checkout)]
        command += ["--interval", "0.5", "--health-port", "0"]
        with log_file.open("wb") as stderr:
            process = subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=stderr, env=env
            )
        replica = Replica(process, log_file)
        started.append(replica)
        wait_until(lambda: replica.role() in ("leader", "standby"), timeout=60)
        return replica

    for index in range(JOBS):
        split: dict[str, Any] = {"split": {"max_requests": 2}} if index == 0 else {}
        seed.write_job(f"job-{index}", requests=4, **split)
    yield start, started
    for replica in started:
        if replica.process.poll() is None:
            replica.process.kill()
            replica.process.wait(timeout=15)


def units(sandbox: Sandbox) -> Counter[tuple[str, str, str]]:
    return Counter(
        (b.metadata["reconciler_job"], b.metadata["reconciler_generation"], b.metadata["reconciler_part"])
        for b in batches(sandbox)
    )


@pytest.mark.slow
def test_three_replicas_one_leads_and_a_killed_leader_is_replaced_within_5_seconds(
    replicas: Replicas, sandbox: Sandbox, state_db: StateDb
) -> None:
    start, started = replicas
    sandbox.configure(latency_seconds=0.05, validation_seconds=0.5)
    rng = random.Random(int(os.environ.get("RECONCILER_REPLICA_SEED", "7")))
    for _ in range(3):
        start()
    roles = Counter(r.role() for r in started)
    assert roles == {"leader": 1, "standby": 2}, roles
    for kill in range(KILLS):
        (leader,) = [r for r in started if r.process.poll() is None and r.role() == "leader"]
        time.sleep(rng.uniform(0.0, 1.5))  # a random moment: idle, planning, creating or recording
        leader.process.send_signal(signal.SIGKILL)
        leader.process.wait(timeout=15)
        killed = time.monotonic()
        living = [r for r in started if r.process.poll() is None]
        while time.monotonic() - killed < TAKEOVER_SECONDS:
            if any(r.role() == "leader" for r in living):
                break
            time.sleep(0.05)
        else:
            logs = "\n".join(r.log()[-2000:] for r in living)
            raise AssertionError(f"kill {kill}: no new leader within {TAKEOVER_SECONDS}s\n{logs}")
        assert max(units(sandbox).values()) == 1, f"kill {kill}: duplicates"
        start()  # the Deployment brings a replacement pod
        leaders = [r for r in started if r.process.poll() is None and r.role() == "leader"]
        assert len(leaders) == 1
    wait_until(lambda: converged(state_db), timeout=90)
    found = units(sandbox)
    assert max(found.values()) == 1, found
    assert len(found) == JOBS + 1  # job-0 has two parts
    (leader,) = [r for r in started if r.process.poll() is None and r.role() == "leader"]
    metrics = httpx.get(f"http://127.0.0.1:{leader.port}/metrics").text
    assert "reconciler_leader 1.0" in metrics
    standby = next(r for r in started if r.process.poll() is None and r.role() == "standby")
    assert "reconciler_leader 0.0" in httpx.get(f"http://127.0.0.1:{standby.port}/metrics").text
    for replica in started:  # the password from the environment reached no log
        assert state_db.password not in replica.log()


def converged(state_db: StateDb) -> bool:
    rows = state_db.query("SELECT record FROM reconciler_state_jobs")  # a row per job
    jobs = [raw if isinstance(raw, dict) else json.loads(str(raw)) for (raw,) in rows]
    return len(jobs) == JOBS and all(j["status"] == "completed" and not j["pending"] for j in jobs)
