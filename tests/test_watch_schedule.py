"""The daemon's decisions as data: when to look again, when it is unhealthy, what wakes it."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from watchfiles import Change

from reconciler.daemon.timing import Cadence, earliest, next_poll, retry_delay, watched_statuses
from reconciler.daemon.watch import RelevantChanges, targets_for
from reconciler.daemon.web import healthy, parse_listen
from reconciler.state.model import BatchRecord, JobState, State

CADENCE = Cadence(interval=30.0)


@pytest.mark.parametrize("status", ["validating", "finalizing", "cancelling", "pending", "collecting"])
def test_transitional_statuses_are_polled_fast(status: str) -> None:
    assert next_poll(["completed", "in_progress", status], CADENCE) == 2.0


def test_long_running_batches_are_polled_at_the_interval() -> None:
    assert next_poll(["in_progress", "completed"], CADENCE) == 30.0


def test_a_status_nobody_knows_is_polled_like_a_running_one() -> None:
    assert next_poll(["batch_start_pending"], CADENCE) == 30.0


def test_finished_work_is_not_polled_at_all() -> None:
    finished = ["completed", "failed", "expired", "cancelled", "file_upload_failed", "none"]
    assert next_poll(finished, CADENCE) is None
    assert next_poll([], CADENCE) is None


def test_fast_polling_never_waits_longer_than_the_interval() -> None:
    assert next_poll(["validating"], Cadence(interval=0.5)) == 0.5


def _job(status: str, *batch_statuses: str) -> JobState:
    batches = tuple(
        BatchRecord(batch_id=f"batch_{i}", status=s, part=i) for i, s in enumerate(batch_statuses)
    )
    return JobState(generation="g1", provider="sandbox", status=status, batches=batches)


def test_a_part_still_validating_counts_though_the_job_shows_in_progress() -> None:
    state = State(lineage="l", jobs={"split": _job("in_progress", "in_progress", "validating")})
    assert next_poll(watched_statuses(state), CADENCE) == 2.0


def test_jobs_whose_action_failed_are_left_to_the_retry_backoff() -> None:
    state = State(lineage="l", jobs={"broken": _job("pending"), "done": _job("completed", "completed")})
    assert next_poll(watched_statuses(state, skip=["broken"]), CADENCE) is None


def test_retry_backoff_grows_and_stops_at_its_cap() -> None:
    rng = random.Random(7)
    delays = [retry_delay(n, None, rng) for n in range(1, 13)]
    assert delays[0] <= 1.0
    assert delays[4] > delays[0]
    assert max(delays) <= 300.0
    assert retry_delay(12, None, rng, cap=30.0) <= 30.0


def test_retry_after_from_the_server_wins_over_the_backoff_and_the_cap() -> None:
    assert retry_delay(1, 45.0, random.Random(1), cap=30.0) == 45.0
    assert retry_delay(1, 10_000.0, random.Random(1)) == 3600.0  # a day's wait is looked at hourly


def test_earliest_ignores_what_is_not_due() -> None:
    assert earliest(None, 3.0, 2.0) == 2.0
    assert earliest(None, None) is None


def test_healthz_turns_unhealthy_only_after_three_intervals_without_success() -> None:
    assert healthy(now=100.0, started=0.0, last_success=20.0, last_ok=False, interval=30.0)
    assert not healthy(now=111.0, started=0.0, last_success=20.0, last_ok=False, interval=30.0)
    assert not healthy(now=91.0, started=0.0, last_success=None, last_ok=None, interval=30.0)


def test_an_idle_daemon_whose_last_pass_succeeded_stays_healthy() -> None:
    assert healthy(now=100_000.0, started=0.0, last_success=5.0, last_ok=True, interval=30.0)


def test_health_port_binds_loopback_unless_a_host_is_given() -> None:
    assert parse_listen("9090") == ("127.0.0.1", 9090)
    assert parse_listen("0.0.0.0:9090") == ("0.0.0.0", 9090)
    assert parse_listen("[::]:8080") == ("::", 8080)
    with pytest.raises(ValueError, match="PORT"):
        parse_listen("localhost:http")


def test_watch_covers_the_specs_and_the_folder_of_every_input(tmp_path: Path) -> None:
    specs, data, shared = tmp_path / "specs", tmp_path / "data", tmp_path / "data" / "shared"
    for folder in (specs, shared):
        folder.mkdir(parents=True)
    targets = targets_for(specs, [data / "a.jsonl", shared / "b.jsonl"])
    assert targets.roots == {specs, data}  # data/shared is inside data: one recursive watch


def test_a_specs_folder_not_yet_created_is_watched_through_its_parent(tmp_path: Path) -> None:
    targets = targets_for(tmp_path / "later" / "specs", [])
    assert targets.roots == {tmp_path}


def test_only_specs_and_referenced_inputs_wake_the_daemon(tmp_path: Path) -> None:
    specs, data = tmp_path / "specs", tmp_path / "data"
    relevant = RelevantChanges(targets_for(specs, [data / "a.jsonl"]))
    assert relevant(Change.modified, str(specs / "team" / "job.yaml"))
    assert relevant(Change.added, str(data / "a.jsonl"))
    assert not relevant(Change.modified, str(data / "other.jsonl"))
    assert not relevant(Change.modified, str(tmp_path / ".reconciler" / "state.json"))
    assert not relevant(Change.modified, str(specs / ".job.yaml.swp"))  # editor droppings
