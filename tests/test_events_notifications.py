"""Notifications: each event reaches a channel once — across a restart and a SIGKILL mid-pass,
through a 500, and without a hanging channel holding up the passes. Secrets stay out of logs
and the state.
"""

from __future__ import annotations

import signal
from collections.abc import Callable

import pytest

from reconciler.sandbox import Sandbox
from tests.events_helpers import Daemon, Receiver, statuses
from tests.fixtures.repo import CliResult, UserRepo
from tests.reconcile_helpers import batches, sdk, state_of, use_sandbox, wait_until

TOKEN = "T0KEN-not-for-logs-8c1f"  # a Slack-style URL is itself the secret


def _channel(
    repo: UserRepo,
    fmt: str = "json",
    jobs: str = '["*"]',
    events: str = "[completed, failed, expired, cancelled, replaced]",
) -> None:
    repo.write_spec(
        "specs/channel.yaml",
        f"""
        apiVersion: reconciler/v1
        kind: Notification
        metadata: {{name: evals-channel}}
        spec:
          url: ${{HOOK_URL}}
          format: {fmt}
          events: {events}
          jobs: {jobs}
        """,
    )


@pytest.mark.slow
def test_each_event_reaches_the_channel_once_across_a_restart_and_a_sigkill_mid_pass(
    make_repo: Callable[..., UserRepo],
    sandbox_factory: Callable[..., Sandbox],
    events_daemon: Callable[..., Daemon],
    receiver: Receiver,
) -> None:
    sandbox, repo = sandbox_factory(), make_repo()
    _channel(repo)
    env = {"HOOK_URL": f"{receiver.url}/hook/{TOKEN}"}
    receiver.plan = [500]  # the first try fails: retried by the announcer after its backoff
    first = events_daemon(repo, sandbox, env=env)
    repo.write_job("a")
    first.eventually(lambda: len(receiver.acknowledged) == 1)
    sent = {"notification": "evals-channel"}
    assert first.metric("reconciler_notifications_failed_total", **sent) == 1
    assert first.metric("reconciler_notifications_sent_total", **sent) == 1
    assert first.stop() == 0

    second = events_daemon(repo, sandbox, env=env)  # a restart: `a` is not announced again
    sandbox.configure(validation_seconds=1.0)
    repo.write_job("b")
    [b] = second.eventually(lambda: batches(sandbox, "b"))
    sandbox.configure(latency_seconds=2.0)
    sandbox.reset_counts()
    second.eventually(lambda: sandbox.request_counts())  # a request of a pass is in flight
    second.stop(signal.SIGKILL)
    sandbox.configure(latency_seconds=0.0)
    wait_until(lambda: sdk(sandbox).batches.retrieve(b.id).status == "completed")
    assert len(receiver.received) == 2  # b ended while no daemon ran

    third = events_daemon(repo, sandbox, env=env)
    third.eventually(lambda: len(receiver.acknowledged) == 2)
    assert third.stop() == 0

    events = [(m["data"]["job"], m["data"]["event"], m["type"]) for m in receiver.acknowledged]
    assert events == [
        ("a", "completed", "dev.reconciler.batchjob.completed"),
        ("b", "completed", "dev.reconciler.batchjob.completed"),
    ]
    assert len(receiver.received) == 3 and len(set(receiver.ids())) == 2
    assert all(
        m["specversion"] == "1.0" and m["source"].startswith("urn:reconciler:") for m in receiver.acknowledged
    )
    assert state_of(repo.root)["notices"]["outbox"] == []
    for daemon in (first, second, third):
        assert TOKEN not in daemon.log()
    assert TOKEN not in repo.state.read_text()


@pytest.mark.slow
def test_a_channel_that_answers_500_then_200_gets_the_message_once(
    make_repo: Callable[..., UserRepo],
    sandbox_factory: Callable[..., Sandbox],
    run_cli: Callable[..., CliResult],
    receiver: Receiver,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sandbox, repo = sandbox_factory(), make_repo()
    use_sandbox(monkeypatch, sandbox)
    monkeypatch.setenv("HOOK_URL", f"{receiver.url}/slack/{TOKEN}")
    _channel(repo, fmt="slack", jobs='["nightly-*"]')
    repo.write_job("nightly-eval")
    repo.write_job("weekly-report")  # not followed by the channel
    receiver.plan = [500]

    result = run_cli("reconcile", *repo.args(), "--wait")

    assert result.exit_code == 0, result.stderr
    assert len(receiver.received) == 2  # the 500, then the retry
    [message] = receiver.acknowledged
    assert message["text"].startswith(":white_check_mark: nightly-eval completed: 3/3 done")
    assert "not sent to notification evals-channel: HTTP 500; retrying in 2s" in result.stdout
    assert TOKEN not in result.stdout + result.stderr
    assert state_of(repo.root)["notices"]["outbox"] == []

    again = run_cli("reconcile", *repo.args())  # nothing new: nothing sent
    assert again.exit_code == 0 and len(receiver.received) == 2


@pytest.mark.slow
def test_a_hanging_channel_does_not_hold_up_the_passes(
    make_repo: Callable[..., UserRepo],
    sandbox_factory: Callable[..., Sandbox],
    events_daemon: Callable[..., Daemon],
    receiver: Receiver,
) -> None:
    sandbox, repo = sandbox_factory(), make_repo()
    _channel(repo)
    receiver.plan = ["hang"] * 10
    daemon = events_daemon(repo, sandbox, env={"HOOK_URL": f"{receiver.url}/hook"})
    repo.write_job("a")
    daemon.eventually(lambda: receiver.received)  # the send of `a completed` is now held

    repo.write_job("b")
    daemon.eventually(lambda: statuses(repo).get("b") == "completed")
    assert len(receiver.received) == 1  # still that one send: passes went on beside it
    assert receiver.acknowledged == []


def test_notification_mistakes_are_one_line_each_without_secrets(
    make_repo: Callable[..., UserRepo], run_cli: Callable[..., CliResult]
) -> None:
    repo = make_repo()
    repo.write_spec(
        "specs/bad.yaml",
        """
        apiVersion: reconciler/v1
        kind: Notification
        metadata: {name: channel}
        spec:
          url: https://hooks.example/T0KEN
          events: [finished]
        ---
        apiVersion: reconciler/v1
        kind: Provider
        metadata: {name: openai}
        spec:
          base_url: https://api.openai.com/v1
          webhook_secret: whsec_c2VjcmV0
        """,
    )
    result = run_cli("validate", *repo.args())
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert any(
        line.startswith("error: specs/bad.yaml:6: spec.events[0]: must be 'failed'") for line in lines
    ), lines
    assert any(
        line.startswith("error: specs/bad.yaml:13: spec.webhook_secret: write the secret as ${VAR}")
        for line in lines
    ), lines
    assert "c2VjcmV0" not in result.stderr and "T0KEN" not in result.stderr
    assert len(lines) == 2 and "Traceback" not in result.stderr


@pytest.mark.slow
def test_a_missed_slot_and_each_run_of_a_schedule_are_announced_once(
    make_repo: Callable[..., UserRepo],
    sandbox_factory: Callable[..., Sandbox],
    run_cli: Callable[..., CliResult],
    receiver: Receiver,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sandbox, repo = sandbox_factory(), make_repo()
    use_sandbox(monkeypatch, sandbox)
    monkeypatch.setenv("HOOK_URL", f"{receiver.url}/hook/{TOKEN}")
    _channel(repo, events="[completed, schedule_missed]")
    repo.write_job("nightly-eval", schedule="0 2 * * *", timezone="Europe/Berlin", starting_deadline="2h")

    def events() -> list[tuple[str, str | None]]:
        return [(m["data"]["event"], m["data"].get("slot")) for m in receiver.acknowledged]

    monkeypatch.setenv("RECONCILER_NOW", "2026-12-01T02:05:00+01:00")  # the first slot, on time
    assert run_cli("reconcile", "--wait", "--timeout", "60", *repo.args()).exit_code == 0
    assert events() == [("completed", None)]

    monkeypatch.setenv("RECONCILER_NOW", "2026-12-02T05:00:00+01:00")  # the next slot, 3 h late
    for _ in range(2):  # seen twice: announced once
        assert run_cli("reconcile", *repo.args()).exit_code == 0
    assert events() == [("completed", None), ("schedule_missed", "2026-12-02T01:00:00Z")]
    assert "missed its scheduled run 2026-12-02T01:00:00Z" in receiver.acknowledged[1]["data"]["summary"]

    monkeypatch.setenv("RECONCILER_NOW", "2026-12-03T02:05:00+01:00")  # a new run ends: news again
    assert run_cli("reconcile", "--wait", "--timeout", "60", *repo.args()).exit_code == 0
    assert [e for e, _ in events()] == ["completed", "schedule_missed", "completed"]
    assert len(set(receiver.ids())) == 3
