"""Notifications never stall a run: a CLI run spends at most its notification deadline (10 s)
on them, whatever a channel does — hang, or answer a byte at a time — and leaves the rest in
the outbox; the daemon's sends are bounded as a whole, not per read.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from reconciler.engine.notify.courier import CLI_NOTIFY_SECONDS
from tests.events_helpers import Daemon, Receiver
from tests.fixtures.daemon import reconciler_env
from tests.fixtures.repo import CliResult, UserRepo
from tests.fixtures.sandbox import SandboxFactory
from tests.peak_rss import Measured, run_measured
from tests.reconcile_helpers import batches, sdk, state_of, use_sandbox, wait_until

DEADLINE = CLI_NOTIFY_SECONDS  # the run's notification deadline
JOBS = 6  # each ends in one `completed` notice: before, a hanging channel held a run 10 s each


def _channel(repo: UserRepo) -> None:
    repo.write_spec(
        "specs/channel.yaml",
        """
        apiVersion: reconciler/v1
        kind: Notification
        metadata: {name: slow-channel}
        spec:
          url: ${HOOK_URL}
          events: [completed]
        """,
    )


def _reconcile(repo: UserRepo, env: dict[str, str], scratch: Path) -> Measured:
    command = [sys.executable, "-m", "reconciler", "reconcile", *repo.args()]
    return run_measured(command, env=env, scratch=scratch, timeout=300)


@pytest.mark.parametrize("answer", ["hang", "trickle"])
def test_a_stalling_channel_holds_a_cli_run_only_until_its_notification_deadline(
    make_repo: Callable[..., UserRepo],
    sandbox_factory: SandboxFactory,
    receiver: Receiver,
    tmp_path: Path,
    answer: str,
) -> None:
    sandbox, repo = sandbox_factory(), make_repo()
    _channel(repo)
    for number in range(JOBS):
        repo.write_job(f"job-{number}", requests=1)
    env = reconciler_env(sandbox, HOOK_URL=f"{receiver.url}/hook", RECONCILER_NOTIFY_TIMEOUT=f"{DEADLINE:g}")
    receiver.plan = [answer] * (2 * JOBS)
    receiver.trickle_seconds = 0.5  # well inside any read timeout: only a bound on the whole send ends it

    quiet = _reconcile(repo, env, tmp_path / "first")  # creates the batches: nothing to tell yet
    client = sdk(sandbox)
    wait_until(lambda: all(client.batches.retrieve(b.id).status == "completed" for b in batches(sandbox)))
    told = _reconcile(repo, env, tmp_path / "second")  # sees six jobs completed: six notices

    assert quiet.returncode == 0 and told.returncode == 0, told.stderr
    assert len(batches(sandbox)) == JOBS
    assert len(receiver.received) == 1  # the first send took the whole deadline; no other began
    outbox = state_of(repo.root)["notices"]["outbox"]
    assert len(outbox) == JOBS  # all still owed: for the next run or the daemon
    assert sorted(notice["attempts"] for notice in outbox) == [0] * (JOBS - 1) + [1]
    assert (
        "job-0: completed not sent to notification slow-channel: no answer by this run's deadline"
        in told.stdout
    )
    assert f"this run's {DEADLINE:g}s for them are spent; {JOBS} left in the outbox" in told.stdout
    # Beside the same run without a stalled channel, it took the deadline and little more
    # (before: the deadline for each notice, and for ever with the trickle).
    assert told.seconds < quiet.seconds + 2 * DEADLINE, (told.seconds, quiet.seconds)


@pytest.mark.slow
def test_the_daemon_ends_a_trickling_send_and_delivers_on_a_later_try(
    make_repo: Callable[..., UserRepo],
    sandbox_factory: SandboxFactory,
    events_daemon: Callable[..., Daemon],
    receiver: Receiver,
) -> None:
    sandbox, repo = sandbox_factory(), make_repo()
    _channel(repo)
    receiver.plan = ["trickle"]  # then 200
    daemon = events_daemon(repo, sandbox, env={"HOOK_URL": f"{receiver.url}/hook"})
    repo.write_job("job-0")

    daemon.eventually(lambda: receiver.acknowledged, timeout=90)

    assert len(receiver.received) == 2  # the trickle, cut off as a whole; then the retry
    assert "no answer within 10s" in daemon.log()
    daemon.eventually(lambda: state_of(repo.root)["notices"]["outbox"] == [])


def test_a_channel_that_refuses_the_connection_is_reported_in_words(
    make_repo: Callable[..., UserRepo],
    sandbox_factory: SandboxFactory,
    run_cli: Callable[..., CliResult],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sandbox, repo = sandbox_factory(), make_repo()
    use_sandbox(monkeypatch, sandbox)
    monkeypatch.setenv("HOOK_URL", "http://127.0.0.1:9/hook")  # nothing listens on port 9
    _channel(repo)
    repo.write_job("nightly-eval", requests=1)
    assert run_cli("reconcile", *repo.args()).exit_code == 0  # nothing to tell yet
    told = run_cli("reconcile", "--wait", "--timeout", "60", *repo.args())
    assert told.exit_code == 0, told.stderr
    assert (
        "nightly-eval: completed not sent to notification slow-channel: cannot connect (connection refused)"
        in told.stdout
    ), told.stdout
