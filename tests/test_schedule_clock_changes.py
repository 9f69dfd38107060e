"""Schedules across the clock changes, in two zones, at minutes 0, 30 and 59 of the hour that
repeats (autumn) or is skipped (spring), over real HTTP against the sandbox.

Each slot runs once, as cron does: a wall time that occurs twice at its first occurrence, a wall
time the clock skips at the first instant after the gap.  The night is walked with
$RECONCILER_NOW (each instant named once per test: the clock runs on from the first read of a
value), the daemon is watched while its clock crosses the repeated hour.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from reconciler.engine.clock import slots_at
from reconciler.plans.changes import Slot
from reconciler.sandbox import Sandbox
from tests.events_helpers import OWNER as DAEMON_OWNER
from tests.events_helpers import Daemon, Receiver
from tests.fixtures.repo import MakeRepo, RunCli, UserRepo, planned
from tests.reconcile_helpers import batches, mutating, stays, use_sandbox, wait_until

JOB = "nightly-eval"
CREATES = "POST /v1/batches"
CANCELS = "POST /v1/batches/{id}/cancel"
LISTS = "GET /v1/batches"


@dataclass(frozen=True)
class ClockChange:
    zone: str
    day: date
    at: datetime  # the instant the clock goes back (autumn) or forward (spring)
    hour: int  # the local hour that repeats or is skipped
    autumn: bool

    def wall(self, day: date, minute: int) -> datetime:
        """`hour:minute` local on `day`, as an instant (the first occurrence of a repeated one)."""
        local = datetime(day.year, day.month, day.day, self.hour, minute, tzinfo=ZoneInfo(self.zone))
        return local.astimezone(UTC)

    def slots(self, minute: int) -> tuple[datetime, datetime, datetime]:
        """The slots of `minute hour * * *` the day before, the day of and the day after the change."""
        before, after = self.day - timedelta(days=1), self.day + timedelta(days=1)
        today = self.wall(self.day, minute) if self.autumn else self.at  # skipped: runs when the gap ends
        return self.wall(before, minute), today, self.wall(after, minute)


CHANGES = [
    ClockChange("America/New_York", date(2026, 11, 1), datetime(2026, 11, 1, 6, tzinfo=UTC), 1, True),
    ClockChange("America/New_York", date(2026, 3, 8), datetime(2026, 3, 8, 7, tzinfo=UTC), 2, False),
    ClockChange("Europe/Berlin", date(2026, 10, 25), datetime(2026, 10, 25, 1, tzinfo=UTC), 2, True),
    ClockChange("Europe/Berlin", date(2026, 3, 29), datetime(2026, 3, 29, 1, tzinfo=UTC), 2, False),
]
CASES = [
    pytest.param(
        change,
        minute,
        id=f"{change.zone.split('/')[1]}-{'autumn' if change.autumn else 'spring'}-{minute:02d}",
    )
    for change in CHANGES
    for minute in (0, 30, 59)
]


def run_id(instant: datetime) -> str:
    return instant.strftime("%Y-%m-%dT%H:%M:%SZ")


def now_env(instant: datetime, tag: int) -> str:
    """$RECONCILER_NOW for `instant`, made unique to one test by `tag` microseconds."""
    return (instant + timedelta(microseconds=tag)).isoformat()


def runs(sandbox: Sandbox) -> list[str]:
    return sorted(b.metadata["reconciler_run"] for b in batches(sandbox, JOB))


def night(change: ClockChange, minute: int) -> list[datetime]:
    """Instants after the day's slot: in a repeated hour just before and after the slot's wall time
    comes again, its end, and later that night; after a skipped hour the same, from the gap's end."""
    at, slot = change.at, timedelta(minutes=minute)
    return [
        at + slot - timedelta(minutes=1),
        at + slot + timedelta(seconds=10),
        at + timedelta(minutes=59, seconds=50),
        at + timedelta(hours=3),
    ]


@pytest.mark.parametrize(("change", "minute"), CASES)
def test_each_slot_runs_once_across_a_clock_change_and_no_running_batch_is_cancelled(
    make_repo: MakeRepo,
    sandbox: Sandbox,
    run_cli: RunCli,
    monkeypatch: pytest.MonkeyPatch,
    change: ClockChange,
    minute: int,
) -> None:
    use_sandbox(monkeypatch, sandbox)
    repo = make_repo()
    spec = f"{minute} {change.hour} * * *"
    repo.write_job(JOB, schedule=spec, timezone=change.zone, concurrency_policy="replace")
    yesterday, today, tomorrow = change.slots(minute)

    monkeypatch.setenv("RECONCILER_NOW", now_env(yesterday + timedelta(seconds=10), 1))
    assert run_cli("reconcile", "--wait", "--timeout", "60", *repo.args()).exit_code == 0
    repo.write_input(f"data/{JOB}.jsonl", 4)  # the spec is edited during the day
    sandbox.configure(validation_seconds=3600)  # today's run still runs through the night
    sandbox.reset_counts()

    for instant in [today + timedelta(seconds=10), *(i for i in night(change, minute) if i > today)]:
        monkeypatch.setenv("RECONCILER_NOW", now_env(instant, 1))
        result = run_cli("reconcile", *repo.args())
        assert result.exit_code == 0, result.stderr
    assert runs(sandbox) == [run_id(yesterday), run_id(today)]
    counts = mutating(sandbox.request_counts())
    assert (counts.get(CREATES, 0), counts.get(CANCELS, 0)) == (1, 0)

    monkeypatch.setenv("RECONCILER_NOW", now_env(tomorrow + timedelta(seconds=10), 1))
    replaced = planned(run_cli, repo)[JOB]
    assert (replaced["action"], replaced["reason_code"]) == ("replace", "scheduled_run")
    assert (replaced["reason_data"]["run"], replaced["reason_data"]["timezone"]) == (
        run_id(tomorrow),
        change.zone,
    )
    assert run_cli("reconcile", *repo.args()).exit_code == 0
    assert runs(sandbox) == [run_id(yesterday), run_id(today), run_id(tomorrow)]


@pytest.fixture
def repo_with_channel(make_repo: MakeRepo, receiver: Receiver, monkeypatch: pytest.MonkeyPatch) -> UserRepo:
    repo = make_repo()
    monkeypatch.setenv("HOOK_URL", f"{receiver.url}/hook")
    repo.write_spec(
        "specs/channel.yaml",
        """
        apiVersion: reconciler/v1
        kind: Notification
        metadata: {name: evals}
        spec:
          url: ${HOOK_URL}
          format: json
          events: [completed, failed, expired, cancelled, replaced]
        """,
    )
    return repo


def completed_notices(receiver: Receiver) -> list[str]:
    return [m["id"] for m in receiver.acknowledged if m["data"]["event"] == "completed"]


@pytest.fixture
def idle_window() -> Iterator[Callable[[Daemon, Sandbox], dict[str, float]]]:
    """Watches a daemon for a few seconds of its clock: what it asked the sandbox meanwhile."""

    def watch(daemon: Daemon, sandbox: Sandbox) -> dict[str, float]:
        passes = daemon.metric("reconciler_passes_total", result="ok")
        sandbox.reset_counts()
        stays(lambda: daemon.process.poll() is None, 4.0)
        counts = sandbox.request_counts()
        return {
            "passes": daemon.metric("reconciler_passes_total", result="ok") - passes,
            "lists": counts.get(LISTS, 0),
            "creates": counts.get(CREATES, 0),
        }

    yield watch


@pytest.mark.slow
@pytest.mark.parametrize(("change", "minute"), CASES)
def test_an_idle_daemon_crossing_a_clock_change_sleeps_and_announces_each_run_once(
    repo_with_channel: UserRepo,
    sandbox: Sandbox,
    run_cli: RunCli,
    receiver: Receiver,
    events_daemon: Callable[..., Daemon],
    idle_window: Callable[[Daemon, Sandbox], dict[str, float]],
    monkeypatch: pytest.MonkeyPatch,
    change: ClockChange,
    minute: int,
) -> None:
    repo = repo_with_channel
    use_sandbox(monkeypatch, sandbox, owner=DAEMON_OWNER)
    repo.write_job(JOB, schedule=f"{minute} {change.hour} * * *", timezone=change.zone)
    yesterday, today, _ = change.slots(minute)
    done = [yesterday] if not change.autumn else [yesterday, today]
    for slot in done:  # the daemon finds these runs finished
        monkeypatch.setenv("RECONCILER_NOW", now_env(slot + timedelta(seconds=10), 2))
        assert run_cli("reconcile", "--wait", "--timeout", "60", *repo.args()).exit_code == 0
    announced = wait_until(
        lambda: len(completed_notices(receiver)) == len(done) and completed_notices(receiver)
    )

    # Its clock starts two seconds before the slot's wall time comes again (autumn), or before
    # the gap (spring): it crosses it within the window.
    start = change.at + timedelta(minutes=minute if change.autumn else 0, seconds=-2)
    env = {"RECONCILER_NOW": now_env(start, 2), "HOOK_URL": f"{receiver.url}/hook"}
    daemon = events_daemon(repo, sandbox, env=env)
    seen = idle_window(daemon, sandbox)

    if change.autumn:  # nothing to do all through the repeated hour
        assert seen == {"passes": 0, "lists": 0, "creates": 0}
        assert completed_notices(receiver) == announced
    else:  # the skipped slot runs once the gap ends: one create, a few polls while it runs
        assert seen["creates"] == 1 and seen["passes"] <= 8 and seen["lists"] <= 8
        wait_until(lambda: len(completed_notices(receiver)) == 2)
    assert runs(sandbox) == [run_id(yesterday), run_id(today)]
    assert len(set(completed_notices(receiver))) == len(completed_notices(receiver)) == 2


def test_slots_are_instants_that_only_move_forward_across_every_clock_change() -> None:
    """The latest slot never goes back, is never after now, and the next is always ahead."""
    for change in CHANGES:
        for minute in (0, 30, 59):
            slot = Slot(f"{minute} {change.hour} * * *", change.zone)
            yesterday, today, tomorrow = change.slots(minute)
            seen: list[datetime] = []
            instant = change.at - timedelta(hours=3)
            while instant < change.at + timedelta(hours=3):
                found = slots_at(slot, instant)
                assert found.due is not None and found.next is not None
                assert found.due <= instant < found.next, (change.zone, minute, instant)
                if not seen or seen[-1] != found.due:
                    seen.append(found.due)
                instant += timedelta(seconds=30)
            assert seen == [yesterday, today], (change.zone, minute)
            assert slots_at(slot, change.at + timedelta(hours=3)).next == tomorrow
