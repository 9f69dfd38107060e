"""The decision for one job: which batches to create, cancel, adopt, retry or resume, and why.

Only the batches of the job's current run (runs.py) and generation are its current work;
running batches of other runs or generations are superseded, unless a schedule's
`concurrency_policy: allow` lets an earlier run go on.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from reconciler.api.batch import START_FAILURES, LiveBatch
from reconciler.common.ownership import DEFAULT_RUN
from reconciler.plans.changes import Action, Change, DesiredJob, InFlight, PlanContext, Retryable, Unit
from reconciler.plans.diff import changed_fields
from reconciler.plans.duplicates import dedupe_reason, split_duplicates
from reconciler.plans.jobstatus import attempts_by_part, attempts_used, job_status
from reconciler.plans.removed import plan_removed
from reconciler.plans.restarts import restart_note, restart_owed, restart_reason
from reconciler.plans.runs import RunChoice, choose_run, run_base, shown_run, slot_run, successor
from reconciler.state.model import BatchRecord, JobState


def plan_job(
    name: str,
    desired: DesiredJob | None,
    recorded: JobState | None,
    live: list[LiveBatch],
    retryable: Retryable,
    ctx: PlanContext | None = None,
    in_flight: InFlight | None = None,
) -> Change | None:
    running = [b for b in live if not b.terminal]
    if desired is None:
        return plan_removed(name, recorded, running)
    if desired.suspend:
        if running:
            return _change(desired, Action.CANCEL, "suspended; cancelling what runs", cancel=running)
        return _change(desired, Action.NOOP, "suspended")
    choice = choose_run(desired, live, recorded.pending if recorded else (), ctx or PlanContext())
    run = choice.run
    current, extra = split_duplicates(b for b in live if b.run == run and b.generation == desired.generation)
    doubled = [b for b in extra if not b.terminal]  # a finished duplicate is only never counted
    stale = [b for b in running if _superseded(b, run, desired.generation, choice)]
    known = _known(recorded, desired, run)
    adopt = [b for b in current if b.id not in known]
    firsts = _missing_parts(desired, current) if run is not None and choice.fresh else []
    creates = firsts + _retries(desired, current, retryable)
    waiting = {u: _left(in_flight, desired, run, u) for u in creates if _left(in_flight, desired, run, u)}
    creates = [u for u in creates if u not in waiting]
    action, reason = _label(desired, recorded, choice, current, stale, adopt, creates)
    if waiting and action is Action.NOOP:
        unit, left = next(iter(waiting.items()))
        reason = (
            f"the create of part {unit.part} attempt {unit.retry} got no answer and may still be "
            f"in flight: looking for it in the live list, sending it again in {left:.0f}s at most"
        )
    if doubled and action in (Action.ADOPT, Action.CANCEL, Action.NOOP):
        action, reason = Action.DEDUPE, dedupe_reason(current, doubled)
    change = _change(desired, action, reason, cancel=stale + doubled, adopt=adopt, creates=creates, run=run)
    if choice.edit_waits and action is Action.NOOP:  # an edit that does nothing yet is still news
        change = dataclasses.replace(change, attention=True)
    return dataclasses.replace(change, missed_slot=choice.missed) if choice.missed else change


def _superseded(batch: LiveBatch, run: str | None, generation: str, choice: RunChoice) -> bool:
    if not choice.fresh:  # nothing new starts now: what runs is left alone
        return False
    if batch.run == run:
        return batch.generation != generation
    return choice.cancel_other_runs or batch.run in choice.supersedes


def _known(recorded: JobState | None, desired: DesiredJob, run: str | None) -> frozenset[str]:
    generations = (desired.generation, desired.legacy_generation)  # a version-1 state's is the legacy one
    if recorded is None or recorded.generation not in generations or (recorded.run or run) != run:
        return frozenset()
    return recorded.batch_ids


def _left(in_flight: InFlight | None, desired: DesiredJob, run: str | None, unit: Unit) -> float:
    key = (desired.name, desired.generation, run or DEFAULT_RUN, unit.part, unit.retry)
    return (in_flight or {}).get(key, 0.0)


def _missing_parts(desired: DesiredJob, current: list[LiveBatch]) -> list[Unit]:
    present = {b.batch.part for b in current}
    return [Unit(p.index, 1, p.requests) for p in desired.part_specs if p.index not in present]


def _latest(current: list[LiveBatch]) -> dict[int, LiveBatch]:
    latest: dict[int, LiveBatch] = {}
    for batch in current:
        part = batch.batch.part
        if part not in latest or batch.batch.retry > latest[part].batch.retry:
            latest[part] = batch
    return latest


def _retries(desired: DesiredJob, current: list[LiveBatch], retryable: Retryable) -> list[Unit]:
    units = []
    attempts = _attempts(current)
    for part, batch in sorted(_latest(current).items()):
        count = retryable.get((desired.name, part), 0)
        free = batch.status == "cancelled" or restart_owed(attempts[part])  # a resume, a restart
        if batch.terminal and count and (free or attempts_used(attempts[part]) < desired.max_attempts):
            units.append(Unit(part, batch.batch.retry + 1, count))
    return units


def _attempts(current: list[LiveBatch]) -> dict[int, list[BatchRecord]]:
    return attempts_by_part(BatchRecord.from_batch(b.batch) for b in current)


def _label(
    desired: DesiredJob,
    recorded: JobState | None,
    choice: RunChoice,
    current: list[LiveBatch],
    stale: list[LiveBatch],
    adopt: list[LiveBatch],
    creates: list[Unit],
) -> tuple[Action, str]:
    first = [u for u in creates if u.retry == 1]
    if first and stale:
        return Action.REPLACE, _replace_reason(desired, recorded, choice, stale)
    if first:
        return Action.CREATE, _create_reason(desired, recorded, choice, first, bool(current))
    if creates:
        total = sum(u.requests for u in creates)
        latest = _latest(current)
        if all(latest[u.part].status in START_FAILURES for u in creates):
            unit = creates[0]
            return Action.RETRY, restart_reason(_attempts(current)[unit.part], unit.part, total)
        if all(latest[u.part].status == "cancelled" for u in creates):
            return Action.RESUME, f"{total:,} requests without a final answer are sent again"
        return Action.RETRY, f"attempt {creates[0].retry}, {total:,} requests did not succeed"
    if adopt:
        also = f"; cancelling {stale[0].id}, superseded" if stale else ""  # the same change cancels it
        return (
            Action.ADOPT,
            f"{adopt[0].id} of generation {desired.generation} is live but not in the state{also}",
        )
    if stale:
        return (
            Action.CANCEL,
            f"superseded by {successor(desired, choice, stale[0])}; cancelling {stale[0].id}",
        )
    return Action.NOOP, _in_sync(desired, choice, current)


def _in_sync(desired: DesiredJob, choice: RunChoice, current: list[LiveBatch]) -> str:
    if choice.note and not choice.fresh:
        return choice.note
    waiting = restart_note(_attempts(current))  # a failed start, restarted when its wait is over
    if waiting:
        return waiting
    records = tuple(BatchRecord.from_batch(b.batch) for b in current)
    return f"in sync ({job_status(records, ())})" if current else "in sync"


def _new_run(desired: DesiredJob, choice: RunChoice) -> str:
    """`run 2026-12-01T02:00:00+01:00 (schedule 0 2 * * *)`, or `run x (--replace)`; else ''."""
    slot = desired.schedule
    shown = shown_run(choice.run or "", slot.timezone if slot else "UTC")
    if choice.started_by == "schedule" and slot is not None:
        extra = f"; {choice.note}" if choice.note else ""
        return f"run {shown} (schedule {slot.expression}{extra})"
    if choice.started_by == "replace":
        return f"run {shown} (--replace)"
    return ""


def _create_reason(
    desired: DesiredJob, recorded: JobState | None, choice: RunChoice, units: list[Unit], partial: bool
) -> str:
    size = f"{len(units)} parts, " if len(units) > 1 else ""
    size += f"{sum(u.requests for u in units):,} requests"
    new_run = _new_run(desired, choice)
    if new_run:
        return f"{new_run}: {size}"
    if partial:
        return f"{size}: parts {', '.join(str(u.part) for u in units)} have no batch yet"
    if recorded is None:
        return f"{size}: no batch yet"
    if any(p.generation == desired.generation for p in recorded.pending):
        attempts = ", ".join(p.attempt for p in recorded.pending)
        return f"{size}: attempt {attempts} left no batch in the live list; creating it"
    if recorded.generation != desired.generation:
        return f"{size}: spec changed ({_what_changed(desired, recorded)})"
    if recorded.run and choice.run and run_base(recorded.run) != run_base(choice.run):
        return (
            f"{size}: new run {choice.run} ({_what_changed(desired, recorded, f'last run {recorded.run}')})"
        )
    return f"{size}: no batch of generation {desired.generation} is live"


def _replace_reason(
    desired: DesiredJob, recorded: JobState | None, choice: RunChoice, stale: list[LiveBatch]
) -> str:
    old = stale[0]
    counts = old.batch.request_counts
    progress = f" at {counts.completed:,}/{counts.total:,}" if counts and counts.total else ""
    thrown = f"{old.id} is {old.status}{progress}"
    new_run = _new_run(desired, choice)
    if new_run:
        return f"{new_run}: cancelling {thrown}"
    if old.generation != desired.generation:
        return f"spec changed ({_what_changed(desired, recorded, old.generation)}) while {thrown}"
    return f"new run {choice.run} ({_what_changed(desired, recorded, f'last run {old.run}')}) while {thrown}"


def _what_changed(desired: DesiredJob, recorded: JobState | None, otherwise: str | None = None) -> str:
    """The changed fields; without a recorded definition (an older state), the generations."""
    definition = recorded.definition if recorded else None
    fields = changed_fields(definition, desired.definition, desired.input_changes)
    if fields:
        return "; ".join(fields)
    if otherwise and otherwise.startswith("last run"):
        return otherwise
    old = otherwise or (recorded.generation if recorded else "?")
    return f"{old} → {desired.generation}"


def _change(
    desired: DesiredJob,
    action: Action,
    reason: str,
    *,
    cancel: Sequence[LiveBatch] = (),
    adopt: Sequence[LiveBatch] = (),
    creates: Sequence[Unit] = (),
    run: str | None = None,
) -> Change:
    launched = sum(u.requests for u in creates)
    slot = desired.schedule
    upcoming = None
    if slot is not None and slot.next is not None:
        upcoming = f"{shown_run(slot_run(slot.next), slot.timezone)} (schedule {slot.expression})"
    return Change(
        job=desired.name,
        action=action,
        reason=reason,
        provider=desired.provider,
        generation=desired.generation,
        cancel=tuple(b.id for b in cancel),
        adopt=tuple(b.id for b in adopt),
        creates=tuple(creates),
        requests=desired.requests,
        model=desired.model,
        launch_requests=launched,
        launch_tokens=desired.estimated_tokens(launched),
        run=run,
        next_run=upcoming,
    )
