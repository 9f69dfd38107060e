"""The planner as a pure function: each action of the design page, with its reason as a code and
its data (the words are pinned once, in tests/test_plan_wording.py)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Literal

import pytest

from reconciler.api.batch import Batch
from reconciler.common import ownership
from reconciler.common.errors import PlanRefusedError
from reconciler.plans.changes import Action, Change, DesiredJob, LiveBatch
from reconciler.plans.decide import make_plan
from reconciler.plans.reasons import (
    IntentLost,
    NoBatchYet,
    NoDeletionPolicy,
    Orphaned,
    Retry,
    ScheduledRun,
    SlotMissed,
    SlotWaits,
    SpecChanged,
    SpecDiff,
    SpecRemoved,
    Superseded,
    Suspended,
    Upcoming,
)
from reconciler.specs.slices import PartSpec
from reconciler.state.model import BatchRecord, IntentState, JobState, PendingCreate, State

OWNER = "owner-tag"


def live(
    batch_id: str, job: str, generation: str, status: str, attempt: str = "a1", **extra: str
) -> LiveBatch:
    metadata = {
        ownership.KEY_JOB: job,
        ownership.KEY_GENERATION: generation,
        ownership.KEY_OWNER: OWNER,
        ownership.KEY_ATTEMPT: attempt,
        **extra,
    }
    return LiveBatch.of("sandbox", Batch(id=batch_id, status=status, metadata=metadata))


def recorded(
    generation: str,
    *batch_ids: str,
    pending: tuple[PendingCreate, ...] = (),
    deletion_policy: Literal["cancel", "orphan"] = "cancel",
) -> JobState:
    batches = tuple(BatchRecord(batch_id=b, status="in_progress") for b in batch_ids)
    return JobState(
        generation=generation,
        provider="sandbox",
        status="in_progress",
        batches=batches,
        pending=pending,
        deletion_policy=deletion_policy,
    )


def desired(name: str = "eval", generation: str = "g2", **fields: Any) -> dict[str, DesiredJob]:
    """One desired job; `fields` replace DesiredJob's defaults (suspend=True, parts=...)."""
    return {name: replace(DesiredJob(name=name, generation=generation, provider="sandbox"), **fields)}


def state(**jobs: JobState) -> State:
    return State(lineage="l", jobs=jobs)


def only(plan_changes: tuple[Change, ...]) -> Change:
    assert len(plan_changes) == 1
    return plan_changes[0]


def test_a_new_spec_is_created() -> None:
    change = only(make_plan(desired(), state(), []).changes)
    assert (change.action, change.reason) == (Action.CREATE, NoBatchYet(requests=0, parts=1))


def test_a_recorded_running_batch_of_the_current_generation_is_a_noop() -> None:
    plan = make_plan(desired(), state(eval=recorded("g2", "b1")), [live("b1", "eval", "g2", "in_progress")])
    assert only(plan.changes).action is Action.NOOP
    assert plan.pending == ()


@pytest.mark.parametrize("status", ["completed", "failed", "expired", "cancelled"])
def test_a_finished_batch_of_the_current_generation_is_not_recreated(status: str) -> None:
    plan = make_plan(desired(), state(eval=recorded("g2", "b1")), [live("b1", "eval", "g2", status)])
    assert only(plan.changes).action is Action.NOOP


def test_a_changed_spec_with_an_older_batch_running_is_replaced() -> None:
    plan = make_plan(desired(), state(eval=recorded("g1", "b1")), [live("b1", "eval", "g1", "in_progress")])
    change = only(plan.changes)
    assert change.action is Action.REPLACE and change.cancel == ("b1",)
    assert isinstance(change.reason, SpecChanged) and change.reason.replacing is not None
    assert change.reason.diff == SpecDiff(generation_before="g1", generation_after="g2")
    assert (change.reason.replacing.batch, change.reason.replacing.status) == ("b1", "in_progress")


def test_a_changed_spec_whose_old_batch_finished_is_created_not_replaced() -> None:
    plan = make_plan(desired(), state(eval=recorded("g1", "b1")), [live("b1", "eval", "g1", "completed")])
    change = only(plan.changes)
    assert change.action is Action.CREATE and change.cancel == ()


def test_a_live_batch_missing_from_the_state_is_adopted_not_created() -> None:
    plan = make_plan(desired(), state(), [live("b9", "eval", "g2", "validating")])
    change = only(plan.changes)
    assert change.action is Action.ADOPT and change.adopt == ("b9",)


def test_a_pending_create_found_in_the_live_list_is_adopted() -> None:
    pending = (
        PendingCreate(attempt="a7", generation="g2", input_file_id="file-1", state=IntentState.UPLOADED),
    )
    plan = make_plan(
        desired(), state(eval=recorded("g2", pending=pending)), [live("b7", "eval", "g2", "validating", "a7")]
    )
    assert only(plan.changes).action is Action.ADOPT


def test_a_pending_create_missing_from_the_live_list_is_created_again_with_a_reason() -> None:
    pending = (
        PendingCreate(attempt="a7", generation="g2", input_file_id="file-1", state=IntentState.UPLOADED),
    )
    change = only(make_plan(desired(), state(eval=recorded("g2", pending=pending)), []).changes)
    assert (change.action, change.reason) == (
        Action.CREATE,
        IntentLost(requests=0, parts=1, attempts=("a7",)),
    )


def test_a_removed_spec_with_a_running_batch_is_cancelled() -> None:
    plan = make_plan(
        desired("other"), state(eval=recorded("g1", "b1")), [live("b1", "eval", "g1", "in_progress")]
    )
    change = next(c for c in plan.changes if c.job == "eval")
    assert change.action is Action.CANCEL and change.cancel == ("b1",)


def test_a_removed_spec_with_policy_orphan_is_forgotten_and_left_running() -> None:
    job = recorded("g1", "b1", deletion_policy="orphan")
    plan = make_plan(desired("other"), state(eval=job), [live("b1", "eval", "g1", "in_progress")])
    change = next(c for c in plan.changes if c.job == "eval")
    assert change.action is Action.FORGET and change.cancel == ()
    assert change.reason == SpecRemoved(stopped=(), left_running=("b1",))


def test_a_removed_spec_whose_batches_finished_is_forgotten() -> None:
    plan = make_plan(
        desired("other"), state(eval=recorded("g1", "b1")), [live("b1", "eval", "g1", "completed")]
    )
    assert next(c for c in plan.changes if c.job == "eval").action is Action.FORGET


def test_a_suspended_job_cancels_what_runs_and_creates_nothing() -> None:
    plan = make_plan(
        desired(suspend=True), state(eval=recorded("g2", "b1")), [live("b1", "eval", "g2", "in_progress")]
    )
    change = only(plan.changes)
    assert change.action is Action.CANCEL and change.cancel == ("b1",)
    assert change.reason == Suspended(cancelling=("b1",))
    idle = only(make_plan(desired(suspend=True), state(), []).changes)
    assert (idle.action, idle.reason) == (Action.NOOP, Suspended())


def test_an_unknown_status_counts_as_running_and_is_never_recreated() -> None:
    plan = make_plan(
        desired(), state(eval=recorded("g2", "b1")), [live("b1", "eval", "g2", "file_upload_pending")]
    )
    assert only(plan.changes).action is Action.NOOP


def test_an_empty_desired_set_that_would_cancel_everything_is_refused() -> None:
    jobs = state(eval=recorded("g1", "b1"))
    running = [live("b1", "eval", "g1", "in_progress")]
    with pytest.raises(PlanRefusedError, match="--allow-empty"):
        make_plan({}, jobs, running)
    assert only(make_plan({}, jobs, running, allow_empty=True).changes).action is Action.CANCEL


def part_live(batch_id: str, part: int, retry: int, status: str) -> LiveBatch:
    extra = {ownership.KEY_PART: str(part), ownership.KEY_RETRY: str(retry)}
    return live(batch_id, "eval", "g2", status, **extra)


def split_job(max_attempts: int = 1) -> dict[str, DesiredJob]:
    parts = tuple(PartSpec(index=i, requests=50 if i < 2 else 20) for i in range(3))
    return desired(parts=parts, requests=120, max_attempts=max_attempts)


def test_a_split_job_creates_one_batch_per_part_and_says_how_many() -> None:
    change = only(make_plan(split_job(), state(), []).changes)
    assert change.action is Action.CREATE
    assert [(u.part, u.retry, u.requests) for u in change.creates] == [(0, 1, 50), (1, 1, 50), (2, 1, 20)]
    assert change.reason == NoBatchYet(requests=120, parts=3)


def test_a_split_job_missing_one_part_creates_only_that_part() -> None:
    batches = [part_live("b0", 0, 1, "in_progress"), part_live("b1", 1, 1, "in_progress")]
    change = only(make_plan(split_job(), state(eval=recorded("g2", "b0", "b1")), batches).changes)
    assert change.action is Action.CREATE and [u.part for u in change.creates] == [2]


def test_a_finished_part_with_unfinished_requests_is_retried_while_attempts_remain() -> None:
    batches = [part_live(f"b{i}", i, 1, "expired" if i == 1 else "completed") for i in range(3)]
    jobs = state(eval=recorded("g2", "b0", "b1", "b2"))
    change = only(make_plan(split_job(max_attempts=2), jobs, batches, retryable={("eval", 1): 7}).changes)
    assert change.action is Action.RETRY
    assert [(u.part, u.retry, u.requests) for u in change.creates] == [(1, 2, 7)]
    assert change.reason == Retry(requests=7, attempt=2)


def test_no_retry_once_a_part_has_had_max_attempts_batches() -> None:
    batches = [part_live(f"b{i}", i, 1, "completed") for i in range(3)] + [part_live("r1", 1, 2, "expired")]
    jobs = state(eval=recorded("g2", "b0", "b1", "b2", "r1"))
    plan = make_plan(split_job(max_attempts=2), jobs, batches, retryable={("eval", 1): 3})
    assert only(plan.changes).action is Action.NOOP


def scheduled(
    policy: str = "forbid", deadline: int | None = None, now: str = "2026-12-01T02:00:05"
) -> dict[str, DesiredJob]:
    from datetime import UTC, datetime

    from reconciler.plans.changes import Slot

    moment = datetime.fromisoformat(now).replace(tzinfo=UTC)
    slot = Slot(
        "0 * * * *",
        concurrency_policy=policy,
        starting_deadline=deadline,
        now=moment,
        due=moment.replace(minute=0, second=0),
        next=moment.replace(hour=moment.hour + 1, minute=0, second=0),
    )
    return desired(schedule=slot)


def run_batch(batch_id: str, run: str, status: str, **extra: str) -> LiveBatch:
    return live(batch_id, "eval", "g2", status, **{ownership.KEY_RUN: run, **extra})


@pytest.mark.parametrize(
    ("policy", "action", "cancel"),
    [("forbid", Action.NOOP, ()), ("replace", Action.REPLACE, ("b1",)), ("allow", Action.CREATE, ())],
)
def test_a_due_slot_while_the_last_run_runs_follows_the_concurrency_policy(
    policy: str, action: Action, cancel: tuple[str, ...]
) -> None:
    running = [run_batch("b1", "2026-12-01T01:00:00Z", "in_progress")]
    change = only(make_plan(scheduled(policy), state(eval=recorded("g2", "b1")), running).changes)
    assert (change.action, change.cancel) == (action, cancel)
    if action is Action.NOOP:
        assert change.reason == SlotWaits("2026-12-01T02:00:00Z", ("2026-12-01T01:00:00Z",), "UTC")
    else:
        assert change.run == "2026-12-01T02:00:00Z" and isinstance(change.reason, ScheduledRun)
        assert change.reason.concurrency_policy == policy
        assert change.reason.still_running == ("2026-12-01T01:00:00Z",)


def test_a_slot_missed_past_its_deadline_is_a_noop_that_says_so() -> None:
    change = only(make_plan(scheduled(deadline=60, now="2026-12-01T02:30:00"), state(), []).changes)
    missed = SlotMissed("2026-12-01T02:00:00Z", 1800.0, 60, "2026-12-01T03:00:00Z", "UTC")
    assert (change.action, change.reason) == (Action.NOOP, missed)
    assert change.missed_slot == "2026-12-01T02:00:00Z"


def test_a_slot_whose_run_is_live_is_not_created_again() -> None:
    done = [run_batch("b2", "2026-12-01T02:00:00Z", "completed")]
    change = only(make_plan(scheduled(), state(eval=recorded("g2", "b2")), done).changes)
    assert change.action is Action.NOOP and change.next_run == Upcoming(
        "2026-12-01T03:00:00Z", "UTC", "0 * * * *"
    )


def test_an_orphan_policy_in_the_metadata_outlives_the_state() -> None:
    orphan = run_batch("b1", "default", "in_progress", **{ownership.KEY_DELETION_POLICY: "orphan"})
    change = only(make_plan({}, state(), [orphan], allow_empty=True).changes)
    assert change.action is Action.NOOP and change.cancel == ()
    assert change.reason == Orphaned(batches=("b1",))


def test_a_batch_with_no_policy_and_no_record_is_left_running_and_flagged() -> None:
    change = only(make_plan({}, state(), [live("b1", "eval", "g1", "in_progress")], allow_empty=True).changes)
    assert change.action is Action.NOOP and change.attention
    assert change.reason == NoDeletionPolicy(batches=("b1",))


def test_a_run_cancelled_for_a_later_run_of_its_own_generation_is_said_to_be_superseded_by_that_run() -> None:
    older = run_batch("b1", "2026-12-01T01:00:00Z", "in_progress")
    current = run_batch("b2", "2026-12-01T02:00:00Z", "in_progress")
    change = only(make_plan(scheduled("replace"), state(eval=recorded("g2", "b2")), [older, current]).changes)
    assert (change.action, change.cancel) == (Action.CANCEL, ("b1",))
    assert change.reason == Superseded("b1", run="2026-12-01T02:00:00Z", timezone="UTC")


def test_a_superseded_batch_already_cancelling_is_not_cancelled_again() -> None:
    older = run_batch("b1", "2026-12-01T01:00:00Z", "cancelling")
    current = run_batch("b2", "2026-12-01T02:00:00Z", "in_progress")
    change = only(make_plan(scheduled("replace"), state(eval=recorded("g2", "b2")), [older, current]).changes)
    assert (change.action, change.cancel) == (Action.NOOP, ())
