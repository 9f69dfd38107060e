"""Crash injection: `apply` / `reconcile` SIGKILLed at random moments, over a 20-job repo.

Each trial starts a real `python -m reconciler` process against the sandbox in this test
process, kills it at a seeded random moment (or lets it finish), and checks at once that no
job, generation, part and attempt ever got two batches and that the state file still parses.
Between trials some inputs change, so kills also land in replaces (cancel, then create).
Every few trials and at the end, an in-process `reconcile` converges and every upload is
accounted for: the input of a batch, or deleted.

CI runs a reduced count; RECONCILER_FULL=1 runs the full 50 trials.  A failure names its
seed; rerun with RECONCILER_CRASH_SEED=<seed> to replay it.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import time
from collections import Counter
from typing import Any

import httpx
import pytest

from reconciler.sandbox import Sandbox
from tests.fixtures.daemon import reconciler_command, reconciler_env
from tests.fixtures.repo import MakeRepo, RunCli
from tests.fixtures.sandbox import SandboxFactory

FULL = os.environ.get("RECONCILER_FULL") == "1"
TRIALS = 50 if FULL else 12
CONVERGE_EVERY = 10 if FULL else 6
JOBS = 20
SPLIT_JOBS = range(14, 18)  # 5 requests at 2 per part: 3 parts each
RETRY_JOBS = range(18, 20)  # long enough to expire, so they are retried
OWNER = "tests/reliability-crash"
KNOBS = {"latency_seconds": 0.01, "expiry_seconds": 1.0, "requests_per_second": 200.0}
# A create killed mid-request waits out a quarantine before it is sent again (it may still be
# in flight).  This sandbox acts on whatever it received within milliseconds: 1 s is plenty.
QUARANTINE = {"RECONCILER_CREATE_QUARANTINE": "1"}


def job_name(index: int) -> str:
    return f"job-{index:02d}"


def write_repo(repo: Any) -> None:
    for index in range(JOBS):
        name = job_name(index)
        if index in SPLIT_JOBS:
            repo.write_job(name, requests=5, split={"max_requests": 2})
        elif index in RETRY_JOBS:
            repo.write_job(name, requests=300, retry={"max_attempts": 3})
        else:
            repo.write_job(name, requests=3)


def change_inputs(repo: Any, rng: random.Random) -> list[str]:
    """A new generation for a few plain or split jobs: the next run replaces their batches."""
    chosen = rng.sample([i for i in range(JOBS) if i not in RETRY_JOBS], k=rng.randint(0, 2))
    for index in chosen:
        path = repo.data / f"{job_name(index)}.jsonl"
        line = json.loads(path.read_text().splitlines()[-1])
        line["custom_id"] = f"extra-{rng.getrandbits(48):012x}"
        with path.open("a") as out:
            out.write(json.dumps(line) + "\n")
    return [job_name(i) for i in chosen]


def owned_batches(sandbox: Sandbox) -> list[dict[str, Any]]:
    listed = []
    with httpx.Client(base_url=sandbox.base_url, timeout=30) as http:
        after = None
        while True:
            page = http.get("/batches", params={"limit": 100, **({"after": after} if after else {})}).json()
            listed += page["data"]
            if not page["has_more"] or not page["data"]:
                break
            after = page["data"][-1]["id"]
    return [b for b in listed if (b.get("metadata") or {}).get("reconciler_job")]


def input_files(sandbox: Sandbox) -> list[dict[str, Any]]:
    with httpx.Client(base_url=sandbox.base_url, timeout=30) as http:
        files: list[dict[str, Any]] = http.get("/files", params={"purpose": "batch"}).json()["data"]
    return files


def unit_of(batch: dict[str, Any]) -> tuple[str, str, str, str]:
    meta = batch["metadata"]
    keys = ("reconciler_job", "reconciler_generation", "reconciler_part", "reconciler_retry")
    job, generation, part, retry = (meta.get(key) for key in keys)
    return job, generation, part or "0", retry or "1"


def duplicate_units(sandbox: Sandbox) -> dict[tuple[str, ...], int]:
    """(job, generation, part, retry) → how many batches, where that is more than one."""
    units = Counter(unit_of(b) for b in owned_batches(sandbox))
    return {unit: n for unit, n in units.items() if n > 1}


def state_parses(repo: Any) -> dict[str, Any] | None:
    """The state (and its backup, when there is one) as a valid State; None before the first."""
    from reconciler.state.model import State

    backup = repo.state.with_name("state.json.backup")
    if backup.exists():
        State.model_validate_json(backup.read_bytes())
    if not repo.state.exists():
        return None
    data: dict[str, Any] = json.loads(repo.state.read_text())
    State.model_validate(data)
    return data


def sent(sandbox: Sandbox) -> Counter[str]:
    return Counter(sandbox.request_counts())


def run_and_kill(
    repo: Any, sandbox: Sandbox, rng: random.Random, budget: float | None
) -> tuple[str, Counter[str] | None, float]:
    """Starts apply or reconcile; once it has reached the API, SIGKILLs it after a random share
    of `budget` seconds (None: lets it finish).  Returns the command, what it had sent when
    killed (None if it finished first) and how long it talked to the API."""
    command = rng.choice(["apply", "reconcile"])
    extra = ["--auto-approve"] if command == "apply" else []
    parallelism = str(rng.choice([1, 2, 4, 16]))
    before = sent(sandbox)
    process = subprocess.Popen(
        reconciler_command(command, *extra, "--parallelism", parallelism, *repo.args()),
        env=reconciler_env(sandbox, OWNER) | QUARANTINE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    while sent(sandbox) == before and process.poll() is None:
        time.sleep(0.002)  # imports and spec loading are not the interesting part
    talking = time.monotonic()
    killed = None
    try:
        process.wait(timeout=120 if budget is None else rng.uniform(0, budget))
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
        killed = sent(sandbox) - before
    took = time.monotonic() - talking
    stderr = process.stderr.read().decode() if process.stderr else ""
    if process.stderr:
        process.stderr.close()
    assert "Traceback" not in stderr, stderr
    return command, killed, took


def converge(run_cli: Any, repo: Any, timeout: float = 60.0) -> None:
    """In-process reconcile passes until every job's batches are finished and nothing is left to
    do.  Batches finish on the sandbox's clock, so the bound is a deadline, not a pass count."""
    deadline, passes = time.monotonic() + timeout, 0
    while True:
        result = run_cli("reconcile", *repo.args())
        passes += 1
        assert "Traceback" not in result.stderr, result.stderr
        state = state_parses(repo)
        assert state is not None, "no state file after a reconcile"
        jobs = state["jobs"]
        settled = all(j["status"] in ("completed", "expired", "failed", "cancelled") for j in jobs.values())
        if result.exit_code == 0 and "Applied: 0 created, 0 cancelled" in result.stdout and settled:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"no convergence after {passes} passes: {result.stdout}{result.stderr}")
        time.sleep(0.3)


def assert_converged(repo: Any, sandbox: Sandbox) -> None:
    live = owned_batches(sandbox)
    state = state_parses(repo)
    assert state is not None
    for name in (job_name(i) for i in range(JOBS)):
        job = state["jobs"][name]
        current = [
            b
            for b in live
            if b["metadata"]["reconciler_job"] == name
            and b["metadata"]["reconciler_generation"] == job["generation"]
        ]
        parts = {b["metadata"]["reconciler_part"] for b in current}
        recorded = {b["batch_id"] for b in job["batches"]}
        assert recorded == {b["id"] for b in current}, f"{name}: the state lost or invented a batch"
        requests = len((repo.data / f"{name}.jsonl").read_text().splitlines())
        expected = -(-requests // 2) if int(name[-2:]) in SPLIT_JOBS else 1
        assert len(parts) == expected, f"{name}: parts {sorted(parts)} of generation {job['generation']}"
        assert not job["pending"], f"{name}: unresolved intents {job['pending']}"
    referenced = {b["input_file_id"] for b in live}
    orphans = [f for f in input_files(sandbox) if f["id"] not in referenced]
    assert orphans == [], f"uploads no batch reads: {[f['filename'] for f in orphans]}"


@pytest.mark.slow
@pytest.mark.timeout(1800 if FULL else 300)
def test_sigkilled_applies_never_duplicate_a_batch_lose_the_state_or_orphan_an_upload(
    make_repo: MakeRepo, sandbox_factory: SandboxFactory, run_cli: RunCli, monkeypatch: pytest.MonkeyPatch
) -> None:
    seed = int(os.environ.get("RECONCILER_CRASH_SEED", random.randrange(1 << 32)))
    sandbox = sandbox_factory(**KNOBS)
    monkeypatch.setenv("RECONCILER_SANDBOX_URL", sandbox.base_url)
    monkeypatch.setenv("RECONCILER_OWNER", OWNER)
    monkeypatch.setenv(*next(iter(QUARANTINE.items())))
    repo = make_repo()
    write_repo(repo)
    try:
        kills, landed = run_trials(repo, sandbox, run_cli, random.Random(seed))
    except AssertionError as failure:
        failure.add_note(f"replay with RECONCILER_CRASH_SEED={seed}")
        raise
    counts = sent(sandbox)
    print(f"seed {seed}; trials: {TRIALS}; {dict(kills)}; kills fell {dict(landed)}")
    print(
        f"batches {len(owned_batches(sandbox))}, uploads {counts['POST /v1/files']}, creates "
        f"{counts['POST /v1/batches']}, leftover uploads deleted {counts['DELETE /v1/files/{id}']}"
    )
    assert kills.total() == TRIALS and sum(n for k, n in kills.items() if "killed" in k) >= TRIALS // 6


def run_trials(repo: Any, sandbox: Sandbox, run_cli: Any, rng: random.Random) -> tuple[Counter[str], ...]:
    """The trials. A kill waits up to about as long as recent runs took to finish, so most
    land while the run still talks to the API."""
    durations = [run_and_kill(repo, sandbox, random.Random(0), None)[2]]  # a whole first apply
    kills: Counter[str] = Counter()
    landed: Counter[str] = Counter()  # where kills fell: what the process had sent by then
    for trial in range(1, TRIALS + 1):
        change_inputs(repo, rng)
        budget = sorted(durations[-5:])[len(durations[-5:]) // 2]
        command, killed, took = run_and_kill(repo, sandbox, rng, budget)
        kills[f"{command} {'finished' if killed is None else 'killed'}"] += 1
        if killed is None:
            durations.append(took)
        else:
            landed[_moment(killed)] += 1
        assert duplicate_units(sandbox) == {}, f"after trial {trial}"
        state_parses(repo)
        if trial % CONVERGE_EVERY == 0 or trial == TRIALS:
            converge(run_cli, repo)
            assert_converged(repo, sandbox)
    assert sorted(p.name for p in repo.state.parent.glob(".*tmp")) == [], "temp files of killed writers"
    return kills, landed


def _moment(sent_before_kill: Counter[str]) -> str:
    uploads, creates = sent_before_kill["POST /v1/files"], sent_before_kill["POST /v1/batches"]
    if not uploads and not creates:
        return "before any upload"
    if uploads > creates:
        return "between an upload and its create"
    return "after creates"
