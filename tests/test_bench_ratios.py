"""The benchmark suite's figures that CI can hold us to: request counts, and ratios measured
in one run, at small scale. Seconds thresholds are left to `python -m tests.bench`.

The apply ratio is against a floor computed from the injected latency (every request one
after another), which no sequential client can beat; the latency is large so the ratio
holds on a busy machine.
"""

from __future__ import annotations

import gc
import json
import math
import threading
import time
from pathlib import Path

import pytest

from tests.fixtures.daemon import StartDaemon
from tests.fixtures.repo import MakeRepo, RunCli, UserRepo
from tests.fixtures.sandbox import SandboxFactory, upload
from tests.hostile_server import BATCH, hostile_server
from tests.reconcile_helpers import (
    OWNER,
    batches,
    mutating,
    sdk,
    settled,
    state_of,
    stays,
    use_sandbox,
    wait_until,
)

pytestmark = pytest.mark.timeout(120)

LATENCY = 0.2  # seconds the sandbox adds to every request


def _jobs(repo: UserRepo, count: int, prefix: str = "job") -> list[str]:
    names = [f"{prefix}-{i:03d}" for i in range(count)]
    for name in names:
        repo.write_job(name, requests=2)
    return names


def test_apply_of_new_jobs_sends_one_upload_and_one_create_per_job_and_beats_sequential_fourfold(
    make_repo: MakeRepo, sandbox_factory: SandboxFactory, run_cli: RunCli, monkeypatch: pytest.MonkeyPatch
) -> None:
    sandbox = sandbox_factory(latency_seconds=LATENCY)
    use_sandbox(monkeypatch, sandbox)
    repo = make_repo()
    jobs = _jobs(repo, 32)

    started = time.perf_counter()
    result = run_cli("apply", "--auto-approve", *repo.args())
    elapsed = time.perf_counter() - started

    assert result.exit_code == 0, result.stderr
    counts = mutating(sandbox.request_counts())
    assert counts == {"POST /v1/files": len(jobs), "POST /v1/batches": len(jobs)}
    sequential_floor = len(jobs) * 2 * LATENCY
    assert sequential_floor / elapsed >= 4, (
        f"{elapsed:.2f}s against a sequential floor of {sequential_floor}s"
    )


def test_apply_sends_the_uploads_of_forty_new_jobs_all_at_once(make_repo: MakeRepo, run_cli: RunCli) -> None:
    """No fixed pool of 16: as many requests at once as there are (up to --parallelism, 64)."""
    jobs = 40
    lock, arrived = threading.Lock(), threading.Event()
    held: list[int] = []
    waits: list[bool] = []

    def hold_each_upload_until_all_have_arrived(method: str, route: str) -> None:
        if (method, route) != ("POST", "/files"):
            return
        with lock:
            held.append(len(held) + 1)
            if len(held) == jobs:
                arrived.set()
        waits.append(arrived.wait(timeout=10))  # a safety net: a smaller pool never gets them all here

    with hostile_server() as hostile:
        hostile.script("/batches", {"object": "list", "data": [], "has_more": False})
        hostile.script("/files", {"object": "list", "data": [], "has_more": False})
        upload = {"id": "file-1", "object": "file", "bytes": 1, "filename": "x.jsonl", "purpose": "batch"}
        hostile.script("POST /files", upload)
        hostile.script("POST /batches", BATCH)
        hostile.on_request(hold_each_upload_until_all_have_arrived)
        repo = make_repo()
        repo.write_provider("odd", base_url=hostile.base_url("scripted"))
        for index in range(jobs):
            repo.write_job(f"job-{index:03d}", provider="odd", requests=2)
        result = run_cli("apply", "--auto-approve", "--owner", OWNER, *repo.args())
        assert result.exit_code == 0, result.stderr
        assert all(waits) and len(waits) == jobs, f"{waits.count(False)} uploads gave up waiting for the rest"
        assert hostile.calls["POST /files"] == hostile.calls["POST /batches"] == jobs


@pytest.mark.slow
def test_plan_over_owned_and_twice_as_many_foreign_batches_lists_one_page_per_hundred_plus_three(
    make_repo: MakeRepo,
    sandbox_factory: SandboxFactory,
    run_cli: RunCli,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    sandbox = sandbox_factory()
    use_sandbox(monkeypatch, sandbox)
    repo = make_repo()
    owned = len(_jobs(repo, 60))
    assert run_cli("apply", "--auto-approve", *repo.args()).exit_code == 0
    foreign = 2 * owned  # created after ours: the newest, so a plan must page past them all
    with sdk(sandbox) as client:
        file_id = upload(
            client,
            [
                {
                    "custom_id": "x",
                    "method": "POST",
                    "url": "/v1/chat/completions",
                    "body": {"model": "gpt-4o-mini", "messages": []},
                }
            ],
        ).id
        for index in range(foreign):
            metadata = {"reconciler_job": "theirs", "reconciler_owner": "0" * 16} if index % 2 else None
            client.batches.create(
                input_file_id=file_id,
                endpoint="/v1/chat/completions",
                completion_window="24h",
                metadata=metadata,
            )
    bound = math.ceil((owned + foreign) / 100) + 3

    for extra in ([], ["--state", str(tmp_path / "lost" / "state.json")]):
        sandbox.reset_counts()
        result = run_cli("plan", *repo.args(*extra))
        assert result.exit_code == 0, result.stderr
        assert sum(sandbox.request_counts().values()) <= bound, (extra, sandbox.request_counts())
        assert "GET /v1/batches" in sandbox.request_counts()


@pytest.mark.parametrize(
    "command", [("plan",), ("apply", "--auto-approve"), ("reconcile",)], ids=lambda c: c[0]
)
def test_a_one_shot_command_runs_without_the_cyclic_collector_and_leaves_it_on(
    make_repo: MakeRepo,
    sandbox_factory: SandboxFactory,
    run_cli: RunCli,
    monkeypatch: pytest.MonkeyPatch,
    command: tuple[str, ...],
) -> None:
    """It rescanned every spec, job and batch held each time the heap grew by a quarter: dozens
    of times over these 80 jobs, a quarter of the CPU of a plan at 10,000."""
    use_sandbox(monkeypatch, sandbox_factory())
    repo = make_repo()
    _jobs(repo, 80)
    assert run_cli("apply", "--auto-approve", *repo.args()).exit_code == 0  # a state to read
    before = sum(generation["collections"] for generation in gc.get_stats())
    result = run_cli(*command, *repo.args())
    assert result.exit_code == 0, result.stderr
    collections = sum(generation["collections"] for generation in gc.get_stats()) - before
    assert collections <= 1  # the one that follows when it is turned back on
    assert gc.isenabled()


@pytest.mark.slow
def test_validate_with_an_unchanged_input_does_not_read_it_again(
    user_repo: UserRepo, run_cli: RunCli
) -> None:
    data = user_repo.write_input("data/nightly-eval.jsonl", requests=40_000)  # ~6 MB
    size = data.stat().st_size

    def bytes_read_by(*args: str) -> int:
        before = _bytes_read()
        assert run_cli(*args).exit_code == 0
        return _bytes_read() - before

    assert bytes_read_by("validate", *user_repo.args()) >= size  # uncached: the file is read
    assert bytes_read_by("validate", *user_repo.args()) < size // 10  # cached: it is not


def _bytes_read() -> int:
    """What this process has read so far (`rchar`), a count the kernel keeps."""
    io = Path("/proc/self/io").read_text()
    return int(next(line for line in io.splitlines() if line.startswith("rchar")).split()[1])


@pytest.mark.slow
def test_an_idle_daemon_sends_no_request_for_finished_jobs(
    make_repo: MakeRepo,
    sandbox_factory: SandboxFactory,
    run_cli: RunCli,
    start_daemon: StartDaemon,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sandbox = sandbox_factory()
    use_sandbox(monkeypatch, sandbox)
    repo = make_repo()
    jobs = _jobs(repo, 20)
    assert run_cli("apply", "--auto-approve", *repo.args()).exit_code == 0
    wait_until(lambda: all(b.status == "completed" for b in batches(sandbox)) and len(batches(sandbox)) == 20)
    assert run_cli("reconcile", *repo.args()).exit_code == 0
    assert {job["status"] for job in state_of(repo.root)["jobs"].values()} == {"completed"}
    serial = state_of(repo.root)["serial"]

    # A one-second interval: were finished jobs polled at all, three intervals would show it.
    daemon = start_daemon(repo, sandbox, interval="1", owner=OWNER, ready=None)
    daemon.eventually(lambda: state_of(repo.root)["serial"] > serial)  # its first pass is done
    settled(sandbox.request_counts, quiet=0.5)  # and whatever that pass sent has arrived
    sandbox.reset_counts()
    stays(lambda: sandbox.request_counts() == {} and daemon.process.poll() is None, seconds=3.0)
    assert daemon.stop() == 0, daemon.log()
    assert len(jobs) == len(json.loads(repo.state.read_text())["jobs"])
