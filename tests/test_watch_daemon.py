"""`reconciler reconcile --watch` as a real subprocess against a sandbox in this process.

Waits poll the sandbox or the state file with generous safety-net timeouts; what is
asserted is what happened (batches, request counts, state, log lines), plus the two
bounds the issue itself sets: a new spec is a batch in under 2 s, SIGTERM exits in 5 s.
"""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from reconciler.sandbox import Sandbox
from reconciler.state.file import read_state
from tests.fixtures.daemon import StartDaemon, reconciler_env, watch_command
from tests.fixtures.repo import MakeRepo, UserRepo
from tests.fixtures.sandbox import SandboxFactory
from tests.reconcile_helpers import batches, mutating, settled, stays

SLOW_VALIDATION = {"validation_seconds": 30.0}  # batches stay running, so a wrong cancel would show


def _statuses(repo: UserRepo) -> dict[str, str]:
    """Each job's status as recorded: the state file and the journal the daemon appends to it."""
    return {name: job.status for name, job in read_state(repo.state).jobs.items()}


def _rewrite_job(spec: Path, **spec_fields: Any) -> None:
    """Edits a spec in place, the way an editor or `git pull` would."""
    document = yaml.safe_load(spec.read_text(encoding="utf-8"))
    document["spec"].update(spec_fields)
    spec.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")


@pytest.mark.slow
def test_a_new_spec_becomes_a_batch_within_two_seconds_and_an_edit_replaces_it(
    make_repo: MakeRepo, sandbox_factory: SandboxFactory, start_daemon: StartDaemon
) -> None:
    sandbox, repo = sandbox_factory(**SLOW_VALIDATION), make_repo()
    daemon = start_daemon(repo, sandbox)

    spec = repo.write_job("nightly-eval", requests=3)
    first = daemon.eventually(lambda: batches(sandbox, "nightly-eval"), timeout=2.0)
    assert len(first) == 1

    _rewrite_job(spec, run="second")
    both = daemon.eventually(lambda: len(found := batches(sandbox, "nightly-eval")) == 2 and found)
    old, new = sorted(both, key=lambda b: b.id != first[0].id)
    assert old.status in ("cancelling", "cancelled")
    assert new.status == "validating" and (new.metadata or {}).get("reconciler_run") == "second"
    counts = sandbox.request_counts()
    assert counts["POST /v1/batches"] == 2 and counts["POST /v1/batches/{id}/cancel"] == 1
    daemon.wait_for_log(re.escape(f"nightly-eval: ~ replace {old.id} → {new.id}"))


@pytest.mark.slow
def test_status_transitions_reach_the_state_file_while_it_runs(
    make_repo: MakeRepo, sandbox_factory: SandboxFactory, start_daemon: StartDaemon
) -> None:
    sandbox = sandbox_factory(validation_seconds=0.3, requests_per_second=5.0, finalizing_seconds=0.3)
    repo = make_repo()
    repo.write_job("nightly-eval", requests=5)
    daemon = start_daemon(repo, sandbox)

    seen: list[str] = []

    def completed() -> bool:
        status = _statuses(repo).get("nightly-eval")
        if status and (not seen or seen[-1] != status):
            seen.append(status)
        return status == "completed"

    daemon.eventually(completed)
    assert "in_progress" in seen and seen[-1] == "completed"
    daemon.wait_for_log(r"nightly-eval: \w+ → completed \(5/5, output file-\w+\)")


@pytest.mark.slow
def test_injected_faults_neither_stop_it_nor_create_duplicates(
    make_repo: MakeRepo, sandbox_factory: SandboxFactory, start_daemon: StartDaemon
) -> None:
    # Every create that succeeds answers 500, and 15% of all requests fail first.
    sandbox = sandbox_factory(fault_rate=0.15, lost_response_rate=1.0, seed=5)
    repo = make_repo()
    specs = [repo.write_job(f"job-{i}", requests=2) for i in range(6)]
    daemon = start_daemon(repo, sandbox)
    daemon.eventually(lambda: list(_statuses(repo).values()) == ["completed"] * 6, timeout=60)
    for spec in specs[:2]:
        _rewrite_job(spec, run="edited")
    daemon.eventually(lambda: Counter(b.status for b in _live(sandbox))["completed"] == 8, timeout=60)

    assert daemon.process.poll() is None
    per_generation = Counter(
        (b.metadata["reconciler_job"], b.metadata["reconciler_generation"], b.metadata["reconciler_run"])
        for b in _live(sandbox)
    )
    assert len(per_generation) == 8 and set(per_generation.values()) == {1}
    daemon.wait_for_log("outcome unknown")  # the lost responses did reach the daemon
    assert "Traceback" not in daemon.log()


def _live(sandbox: Sandbox) -> list[Any]:
    sandbox.configure(fault_rate=0.0)  # the test's own look must not be refused
    try:
        return batches(sandbox)
    finally:
        sandbox.configure(fault_rate=0.15)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("signum", "latency", "ending"),
    [
        (signal.SIGTERM, 1.0, "stopped"),
        (signal.SIGINT, 4.0, "did not finish in time"),  # the pass outlasts the grace: abandoned
    ],
    ids=["SIGTERM-pass-finishes", "SIGINT-pass-abandoned"],
)
def test_a_stop_signal_exits_zero_within_five_seconds_leaving_a_valid_state(
    signum: int,
    latency: float,
    ending: str,
    make_repo: MakeRepo,
    sandbox_factory: SandboxFactory,
    start_daemon: StartDaemon,
) -> None:
    sandbox, repo = sandbox_factory(**SLOW_VALIDATION), make_repo()
    repo.write_job("a")
    repo.write_job("b")
    daemon = start_daemon(repo, sandbox)
    sandbox.configure(latency_seconds=latency)  # every pass now takes seconds: the signal lands mid-pass
    before = sum(sandbox.request_counts().values())
    daemon.eventually(lambda: sum(sandbox.request_counts().values()) > before)  # a slow request is out

    code = daemon.stop(signum, timeout=5.0)  # TimeoutExpired past five seconds
    assert code == 0
    assert ending in daemon.log()
    state = read_state(repo.state)
    assert sorted(state.jobs) == ["a", "b"]
    assert all(len(job.batches) == 1 for job in state.jobs.values())


@pytest.mark.slow
def test_a_restart_picks_up_where_it_left_off_without_creating_again(
    make_repo: MakeRepo, sandbox_factory: SandboxFactory, start_daemon: StartDaemon
) -> None:
    sandbox = sandbox_factory(validation_seconds=0.5, requests_per_second=4.0)
    repo = make_repo()
    repo.write_job("a", requests=4)
    repo.write_job("b", requests=4)
    first = start_daemon(repo, sandbox)
    assert first.stop() == 0
    before = read_state(repo.state)
    sent = mutating(sandbox.request_counts())

    second = start_daemon(repo, sandbox)
    second.eventually(lambda: _statuses(repo) == {"a": "completed", "b": "completed"})
    after = read_state(repo.state)
    assert mutating(sandbox.request_counts()) == sent
    assert after.lineage == before.lineage
    for name in ("a", "b"):
        assert after.jobs[name].batch_ids == before.jobs[name].batch_ids


@pytest.mark.slow
def test_a_second_daemon_on_the_same_state_refuses_naming_the_holder(
    make_repo: MakeRepo, sandbox_factory: SandboxFactory, start_daemon: StartDaemon
) -> None:
    sandbox, repo = sandbox_factory(), make_repo()
    repo.write_job("nightly-eval")
    first = start_daemon(repo, sandbox)

    second = subprocess.run(
        watch_command(repo),
        env=reconciler_env(sandbox),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert second.returncode == 1
    assert f"another daemon already reconciles this state file: pid {first.process.pid} on " in second.stderr
    assert len(second.stderr.strip().splitlines()) == 1
    assert first.process.poll() is None


@pytest.mark.slow
def test_a_spec_that_stops_validating_is_reported_and_nothing_is_cancelled(
    make_repo: MakeRepo, sandbox_factory: SandboxFactory, start_daemon: StartDaemon
) -> None:
    sandbox, repo = sandbox_factory(**SLOW_VALIDATION), make_repo()
    broken = repo.write_job("a")
    removed = repo.write_job("b")
    daemon = start_daemon(repo, sandbox)
    valid = broken.read_text(encoding="utf-8")

    broken.write_text("apiVersion: reconciler/v1\nkind: BatchJob\nmetadata: {name: a\n", encoding="utf-8")
    removed.unlink()  # while anything is broken, not even a real removal cancels
    daemon.eventually(lambda: "error: specs/a.yaml:" in daemon.log())
    repo.write_job("c")  # the valid rest keeps converging
    daemon.eventually(lambda: batches(sandbox, "c"))
    assert "POST /v1/batches/{id}/cancel" not in sandbox.request_counts()
    assert {"a", "b", "c"} <= set(_statuses(repo))

    broken.write_text(valid, encoding="utf-8")  # fixed: now b's removal is carried out
    daemon.eventually(lambda: "the specs validate again" in daemon.log())
    daemon.eventually(lambda: batches(sandbox, "b")[0].status in ("cancelling", "cancelled"))
    assert sandbox.request_counts()["POST /v1/batches/{id}/cancel"] == 1
    assert [b.status for b in batches(sandbox, "a")] == ["validating"]


@pytest.mark.slow
def test_starting_with_a_broken_spec_only_observes(
    make_repo: MakeRepo, sandbox_factory: SandboxFactory, start_daemon: StartDaemon
) -> None:
    sandbox, repo = sandbox_factory(**SLOW_VALIDATION), make_repo()
    spec = repo.write_job("a")
    assert start_daemon(repo, sandbox).stop() == 0
    spec.write_text("kind: BatchJob\nmetadata: [\n", encoding="utf-8")

    daemon = start_daemon(repo, sandbox)
    daemon.eventually(lambda: "only observing until they do" in daemon.log())
    assert "POST /v1/batches/{id}/cancel" not in sandbox.request_counts()
    assert _statuses(repo) == {"a": "validating"}


@pytest.mark.slow
def test_health_metrics_and_json_logs(
    make_repo: MakeRepo, sandbox_factory: SandboxFactory, start_daemon: StartDaemon
) -> None:
    sandbox, repo = sandbox_factory(), make_repo()
    repo.write_job("nightly-eval")
    daemon = start_daemon(repo, sandbox, "--health-port", "0", "--log-format", "json")
    daemon.eventually(lambda: _statuses(repo) == {"nightly-eval": "completed"})

    events = daemon.events()
    assert all({"ts", "level", "event", "message"} <= event.keys() for event in events)
    create = next(e for e in events if e["event"] == "action")
    assert (create["job"], create["action"], create["level"]) == ("nightly-eval", "create", "info")
    port = next(e["port"] for e in events if e["event"] == "health")
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
        health = http.get("/healthz")
        metrics = http.get("/metrics").text
    assert health.status_code == 200 and health.json()["status"] == "ok"
    assert 'reconciler_actions_total{kind="create",result="ok"} 1.0' in metrics
    assert re.search(r'reconciler_passes_total\{result="ok"\} [1-9]', metrics)
    assert "reconciler_last_successful_pass_timestamp_seconds" in metrics


@pytest.mark.slow
def test_an_idle_daemon_sends_nothing_until_a_file_changes(
    make_repo: MakeRepo, sandbox_factory: SandboxFactory, start_daemon: StartDaemon
) -> None:
    sandbox, repo = sandbox_factory(), make_repo()
    repo.write_job("a")
    daemon = start_daemon(repo, sandbox, interval="0.2")
    daemon.eventually(lambda: _statuses(repo) == {"a": "completed"})
    quiet = settled(sandbox.request_counts, quiet=0.5)  # the pass that saw it finish has ended
    stays(lambda: sandbox.request_counts() == quiet, seconds=1.5)  # more than seven intervals

    repo.write_job("b")
    daemon.eventually(lambda: batches(sandbox, "b"))


@pytest.mark.slow
def test_a_burst_of_new_specs_is_one_pass(
    make_repo: MakeRepo, sandbox_factory: SandboxFactory, start_daemon: StartDaemon
) -> None:
    sandbox, repo = sandbox_factory(**SLOW_VALIDATION), make_repo()
    daemon = start_daemon(repo, sandbox, "--log-format", "json")
    for i in range(20):
        repo.write_job(f"job-{i:02d}", requests=2)

    creates = daemon.eventually(
        lambda: len(found := [e for e in daemon.events() if e.get("action") == "create"]) == 20 and found
    )
    assert len({e["pass"] for e in creates}) == 1
    assert sandbox.request_counts()["POST /v1/batches"] == 20


@pytest.mark.slow
def test_a_repo_symlink_swapped_to_a_new_checkout_is_followed(
    tmp_path: Path, sandbox_factory: SandboxFactory, start_daemon: StartDaemon
) -> None:
    """git-sync's layout: `repo` is a symlink, replaced atomically by one to a fresh worktree."""
    sandbox, git = sandbox_factory(**SLOW_VALIDATION), tmp_path / "git"
    old, new = UserRepo(git / ".worktrees" / "old"), UserRepo(git / ".worktrees" / "new")
    for checkout in (old, new):
        checkout.specs.mkdir(parents=True)
        checkout.write_job("a")
    new.write_job("b")
    (git / "repo").symlink_to(".worktrees/old")
    daemon = start_daemon(UserRepo(git / "repo"), sandbox, "--state", str(tmp_path / "state.json"))

    (git / "repo.next").symlink_to(".worktrees/new")
    (git / "repo.next").replace(git / "repo")  # the swap alone must wake it
    daemon.eventually(lambda: batches(sandbox, "b"))
    shutil.rmtree(old.root)  # git-sync then deletes the old worktree
    new.write_job("c")  # and what changes now is the new checkout
    daemon.eventually(lambda: batches(sandbox, "c"))
    assert [b.status for b in batches(sandbox, "a")] == ["validating"]  # same spec, same batch
    assert "POST /v1/batches/{id}/cancel" not in sandbox.request_counts()


@pytest.mark.slow
def test_liveness_stays_up_while_readiness_reports_an_unreachable_provider(
    make_repo: MakeRepo,
    sandbox_factory: SandboxFactory,
    start_daemon: StartDaemon,
) -> None:
    sandbox, repo = sandbox_factory(**SLOW_VALIDATION), make_repo()
    repo.write_job("nightly-eval")
    daemon = start_daemon(repo, sandbox, "--health-port", "0", "--log-format", "json", interval="0.2")
    daemon.eventually(lambda: _statuses(repo) == {"nightly-eval": "validating"})
    port = next(e["port"] for e in daemon.events() if e["event"] == "health")
    sandbox.stop()  # the provider goes away; the daemon's passes now fail
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
        daemon.eventually(lambda: http.get("/readyz").status_code == 503)
        assert http.get("/healthz").status_code == 503
        assert http.get("/livez").status_code == 200
