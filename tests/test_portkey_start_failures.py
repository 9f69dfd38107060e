"""Issue 25, item 14: Portkey's `batch_start_failed` and `file_upload_failed` are restarted.

Nothing ran and nothing was billed, so the part is submitted again by default: twice at most,
60 s and then 300 s after the failed start, spending none of `retry.max_attempts`.  The
Portkey gateway fixture passes statuses through and never makes these two itself, so the
sandbox's `start_failure` knob produces them.  `RECONCILER_NOW` moves the reconciler's clock
past a restart's wait instead of the test waiting for it.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from reconciler.sandbox import Sandbox
from tests.events_helpers import Receiver
from tests.fixtures.daemon import StartDaemon, reconciler_env
from tests.fixtures.repo import MakeRepo, RunCli, UserRepo, planned
from tests.fixtures.sandbox import SandboxFactory
from tests.reconcile_helpers import batches, settled, stays, wait_until

START_FAILURES = ["batch_start_failed", "file_upload_failed"]


@pytest.fixture(autouse=True)
def _owner(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RECONCILER_OWNER", "tests/restarts")


@pytest.fixture
def local(make_repo: MakeRepo, sandbox: Sandbox) -> UserRepo:
    repo = make_repo()
    repo.write_provider("local", base_url=sandbox.base_url)
    return repo


def later(monkeypatch: pytest.MonkeyPatch, hours: float = 1) -> None:
    """The reconciler's clock, moved past every restart's wait."""
    moved = datetime.now(UTC) + timedelta(hours=hours)
    monkeypatch.setenv("RECONCILER_NOW", moved.isoformat(timespec="seconds"))


def recorded(repo: UserRepo) -> dict[str, object]:
    job: dict[str, object] = json.loads(repo.state.read_text())["jobs"]["nightly-eval"]
    return job


def creates(sandbox: Sandbox) -> int:
    return sandbox.request_counts().get("POST /v1/batches", 0)


def plan_reason(run_cli: RunCli, repo: UserRepo) -> tuple[str, str, dict[str, Any]]:
    """(action, reason code, reason data) of the one change `plan --json` shows."""
    (change,) = planned(run_cli, repo).values()
    return change["action"], change["reason_code"], change["reason_data"]


@pytest.mark.parametrize("status", START_FAILURES)
def test_a_failed_start_is_restarted_after_its_wait_and_spends_no_retry(
    local: UserRepo, sandbox: Sandbox, run_cli: RunCli, monkeypatch: pytest.MonkeyPatch, status: str
) -> None:
    sandbox.configure(start_failure=status)
    local.write_job("nightly-eval", provider="local", results="../out/r.jsonl")  # retry: none
    assert run_cli("reconcile", *local.args()).exit_code == 0
    wait_until(lambda: [b.status for b in batches(sandbox, "nightly-eval")] == [status])

    held = run_cli("reconcile", *local.args())  # within the first wait: nothing is sent
    assert held.exit_code == 0, held.stderr
    assert recorded(local)["status"] == "pending" and creates(sandbox) == 1
    action, code, data = plan_reason(run_cli, local)
    assert (action, code, data["status"], data["part"]) == ("noop", "restart_waits", status, 0)
    attempts = recorded(local)["batches"]
    assert isinstance(attempts, list)
    (failed,) = attempts
    assert (data["restart"], data["restarts"]) == (1, 2)
    assert data["at"] == (failed["failed_at"] or failed["created_at"]) + 60  # the first restart's wait

    sandbox.configure(start_failure=None)  # what stopped the start has passed
    later(monkeypatch)
    action, code, data = plan_reason(run_cli, local)
    assert (action, code, data["status"], data["restart"], data["restarts"]) == (
        "retry",
        "restart",
        status,
        1,
        2,
    )
    done = run_cli("reconcile", "--wait", "--timeout", "60", *local.args())
    assert done.exit_code == 0, done.stderr
    job = recorded(local)
    assert job["status"] == "completed"
    assert [(b["status"], b["retry"]) for b in job["batches"]] == [(status, 1), ("completed", 2)]  # type: ignore[attr-defined]
    lines = [json.loads(line) for line in (local.root / "out" / "r.jsonl").read_text().splitlines()]
    assert len(lines) == 3 and all(line["response"]["status_code"] == 200 for line in lines)


@pytest.mark.parametrize("status", START_FAILURES)
def test_a_start_that_keeps_failing_is_submitted_three_times_in_all(
    local: UserRepo, sandbox: Sandbox, run_cli: RunCli, monkeypatch: pytest.MonkeyPatch, status: str
) -> None:
    sandbox.configure(start_failure=status)
    local.write_job("nightly-eval", provider="local")
    later(monkeypatch)
    result = run_cli("reconcile", "--wait", "--timeout", "60", *local.args())
    assert result.exit_code == 1 and f"nightly-eval: ended {status}" in result.stderr, result.stderr
    job = recorded(local)
    assert [(b["status"], b["retry"]) for b in job["batches"]] == [(status, n) for n in (1, 2, 3)]  # type: ignore[attr-defined]
    assert creates(sandbox) == 3
    again = run_cli("reconcile", *local.args())  # nothing more is owed
    assert again.exit_code == 0 and creates(sandbox) == 3


def test_the_user_retry_still_counts_after_the_restarts_are_spent(
    local: UserRepo, sandbox: Sandbox, run_cli: RunCli, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`retry.on: [batch_failed]`, 2 attempts: three submissions of the first attempt, then the
    one retry it asked for, restarted no more (its failed start follows three others)."""
    sandbox.configure(start_failure="batch_start_failed")
    local.write_job("nightly-eval", provider="local", retry={"max_attempts": 2, "on": ["batch_failed"]})
    later(monkeypatch)
    result = run_cli("reconcile", "--wait", "--timeout", "60", *local.args())
    assert result.exit_code == 1 and "nightly-eval: ended batch_start_failed" in result.stderr
    assert [b["retry"] for b in recorded(local)["batches"]] == [1, 2, 3, 4]  # type: ignore[attr-defined]
    assert creates(sandbox) == 4


def test_the_daemon_sleeps_until_a_restart_is_due_instead_of_polling(
    sandbox_factory: SandboxFactory, make_repo: MakeRepo, start_daemon: StartDaemon
) -> None:
    sandbox = sandbox_factory(start_failure="batch_start_failed")
    repo = make_repo()
    repo.write_provider("local", base_url=sandbox.base_url)
    repo.write_job("nightly-eval", provider="local")
    # The daemon's clock runs 59.5 s ahead: the first restart (60 s after a failed start) comes
    # at once, the second (300 s after the next) is minutes away.
    ahead = (datetime.now(UTC) + timedelta(seconds=59.5)).isoformat()
    env = reconciler_env(owner="tests/restarts", RECONCILER_NOW=ahead)
    daemon = start_daemon(repo, None, env=env, interval="0.5")

    def attempts() -> list[tuple[str, int]]:
        job = json.loads(repo.state.read_text())["jobs"].get("nightly-eval", {})
        return [(b["status"], b["retry"]) for b in job.get("batches", [])]

    daemon.eventually(lambda: attempts() == [("batch_start_failed", 1), ("batch_start_failed", 2)])
    lists = settled(lambda: sandbox.request_counts().get("GET /v1/batches", 0), quiet=1.0)
    assert recorded(repo)["status"] == "pending"
    # Four intervals, and a pending job is otherwise polled at every one: nothing is sent.
    stays(lambda: sandbox.request_counts().get("GET /v1/batches", 0) == lists, 2.0)
    assert creates(sandbox) == 2


@pytest.mark.parametrize("status", START_FAILURES)
def test_a_start_that_failed_for_good_is_announced_as_failed_once_after_the_restarts(
    local: UserRepo,
    sandbox: Sandbox,
    run_cli: RunCli,
    receiver: Receiver,
    monkeypatch: pytest.MonkeyPatch,
    status: str,
) -> None:
    monkeypatch.setenv("HOOK_URL", f"{receiver.url}/hook")
    local.write_spec(
        "specs/channel.yaml",
        """
        apiVersion: reconciler/v1
        kind: Notification
        metadata: {name: evals-channel}
        spec:
          url: ${HOOK_URL}
        """,
    )
    sandbox.configure(start_failure=status)
    local.write_job("nightly-eval", provider="local")
    later(monkeypatch)
    result = run_cli("reconcile", "--wait", "--timeout", "60", *local.args())
    assert result.exit_code == 1 and f"nightly-eval: ended {status}" in result.stderr, result.stderr
    assert creates(sandbox) == 3  # the first start and its two restarts: one notice, at the end

    (told,) = [message["data"] for message in receiver.acknowledged]
    assert (told["event"], told["status"], told["job"]) == ("failed", status, "nightly-eval")
    assert told["summary"].startswith(f"nightly-eval failed ({status}): 0/3 done")
    assert run_cli("reconcile", *local.args()).exit_code == 0
    assert len(receiver.acknowledged) == 1  # seen again: not news
