"""Desired specs + recorded state + live owned batches → the changes that converge them, job by job.

Pure: no I/O here, so every decision can be read and tested as data.  Observed fields
(status, counts, output ids) never make a change; a finished batch of the current
generation is finished work, not drift.

The decision for one job (`plan_job`): which batches to create, cancel, adopt, retry or
resume, and why.  Only the batches of the job's current run (runs.py) and generation are its
current work; running batches of other runs or generations are superseded, unless a
schedule's `concurrency_policy: allow` lets an earlier run go on.  What changed between two
definitions of a job is named field by field, for a reviewer to read (`changed_fields`).

A job whose spec is gone (`plan_removed`): its running batches are cancelled or left running,
each as the deletion policy written into its own metadata says, so an orphan stays orphaned
even after the job is forgotten and the state is lost.  A batch of ours with no policy in its
metadata and no state record to take one from is left running and reported, never cancelled
silently.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

from reconciler.api.batch import START_FAILURES, LiveBatch
from reconciler.common.errors import PlanRefusedError
from reconciler.common.ownership import DEFAULT_RUN
from reconciler.plans.changes import Action, Change, DesiredJob, InFlight, Plan, PlanContext, Retryable, Unit
from reconciler.plans.duplicates import dedupe_reason, split_duplicates
from reconciler.plans.jobstatus import (
    attempts_by_part,
    attempts_used,
    job_status,
    restart_note,
    restart_owed,
    restart_reason,
)
from reconciler.plans.runs import RunChoice, choose_run, newest, run_base, shown_run, slot_run, successor
from reconciler.state.model import BatchRecord, JobState, State

MAX_SHOWN_CHARS = 40


def changed_fields(
    old: Mapping[str, Any] | None, new: Mapping[str, Any], by_custom_id: Mapping[str, Any] | None = None
) -> list[str]:
    """`endpoint: /v1/completions → /v1/chat/completions`, one per changed leaf; the input as
    request counts and a short digest, and with `by_custom_id` (specs/inputs/cache.compare)
    the requests added, removed and changed."""
    if not old:
        return []
    flat_old, flat_new = _flatten(old), _flatten(new)
    lines = []
    for key in sorted(set(flat_old) | set(flat_new)):
        if key.startswith("input.") or flat_old.get(key) == flat_new.get(key):
            continue
        lines.append(f"{key}: {_show(flat_old.get(key))} → {_show(flat_new.get(key))}")
    lines += _input_change(old.get("input"), new.get("input"), by_custom_id)
    return lines


def _input_change(old: Any, new: Any, by_custom_id: Mapping[str, Any] | None) -> list[str]:
    if not isinstance(old, dict) or not isinstance(new, dict) or old.get("sha256") == new.get("sha256"):
        return []
    before, after = _count(old.get("requests")), _count(new.get("requests"))
    counts = f"{after} requests" if before == after else f"{before} → {after} requests"
    digests = f"sha256 {str(old.get('sha256'))[:8]}… → {str(new.get('sha256'))[:8]}…"
    return [f"input: {counts}, {digests}" + _by_custom_id(by_custom_id)]


def _by_custom_id(summary: Mapping[str, Any] | None) -> str:
    """` (1 added: req-41; 2 changed: req-3, req-7 … by custom_id)`."""
    if not summary:
        return ""
    examples = summary.get("examples") or {}
    parts = []
    for kind in ("added", "removed", "changed"):
        if summary.get(kind):
            ids = ", ".join(_show(i) for i in examples.get(kind, []))
            more = " …" if summary[kind] > len(examples.get(kind, [])) else ""
            parts.append(f"{summary[kind]:,} {kind}" + (f": {ids}{more}" if ids else ""))
    return f" ({'; '.join(parts)} by custom_id)" if parts else " (the same requests, by custom_id)"


def _count(value: Any) -> str:
    return f"{value:,}" if isinstance(value, int) else "?"


def _flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            flat.update(_flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def _show(value: Any) -> str:
    if value is None:
        return "(none)"
    text = str(value)
    return text if len(text) <= MAX_SHOWN_CHARS else text[: MAX_SHOWN_CHARS - 1] + "…"


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
        # The run it was on stays its run: what it did (counts, results) is still what it shows.
        run = recorded.run if recorded and recorded.run else newest(b.run for b in live)
        if running:
            return _change(desired, Action.CANCEL, "suspended; cancelling what runs", cancel=running, run=run)
        return _change(desired, Action.NOOP, "suspended", run=run)
    choice = choose_run(desired, live, recorded.pending if recorded else (), ctx or PlanContext())
    run = choice.run
    current, extra = split_duplicates(b for b in live if b.run == run and b.generation == desired.generation)
    doubled = [b for b in extra if not b.terminal]  # a finished duplicate is only never counted
    # A superseded batch already cancelling is left to end: its cancel is not sent again.
    stale = [
        b for b in running if b.status != "cancelling" and _superseded(b, run, desired.generation, choice)
    ]
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


def plan_removed(name: str, recorded: JobState | None, running: list[LiveBatch]) -> Change | None:
    provider = recorded.provider if recorded else (running[0].provider if running else "")
    generation = recorded.generation if recorded else None
    policies = {
        b.id: b.batch.deletion_policy or (recorded.deletion_policy if recorded else None) for b in running
    }
    cancel = tuple(b.id for b in running if policies[b.id] == "cancel")
    orphans = [b.id for b in running if policies[b.id] == "orphan"]
    unknown = [b.id for b in running if policies[b.id] is None]
    if cancel:
        reason = f"spec removed; deletion_policy cancel stops {_ids(list(cancel))}"
        if orphans:
            reason += f"; deletion_policy orphan leaves {_ids(orphans)} running"
        return Change(name, Action.CANCEL, reason, provider, generation, cancel=cancel)
    if recorded is not None:
        reason = (
            f"spec removed; deletion_policy orphan leaves {_ids(orphans + unknown)} running"
            if running
            else "spec removed; its batches are finished"
        )
        return Change(name, Action.FORGET, reason, provider, generation)
    if unknown:
        reason = (
            f"no spec, no state record and no deletion policy in its metadata: {_ids(unknown)} "
            "left running; cancel it by hand if it should stop"
        )
        return Change(name, Action.NOOP, reason, provider, generation, attention=True)
    if orphans:
        return Change(name, Action.NOOP, f"orphaned: {_ids(orphans)} left running", provider, generation)
    return None


def _ids(ids: list[str]) -> str:
    return ids[0] if len(ids) == 1 else f"{ids[0]} and {len(ids) - 1} more"


def live_by_job(live: Sequence[LiveBatch]) -> dict[str, list[LiveBatch]]:
    """Live batches grouped by job (batches of no job under ""), in list order: looking up one
    job's batches must not scan every batch (10,000 jobs by 10,000 batches)."""
    by_job: dict[str, list[LiveBatch]] = {}
    for batch in live:
        by_job.setdefault(batch.batch.job or "", []).append(batch)
    return by_job


def make_plan(
    desired: Mapping[str, DesiredJob],
    state: State,
    live: Sequence[LiveBatch],
    *,
    retryable: Retryable | None = None,
    allow_empty: bool = False,
    context: PlanContext | None = None,
    in_flight: InFlight | None = None,
) -> Plan:
    ctx = context or PlanContext()
    by_job = live_by_job(live)
    names = sorted(set(desired) | set(state.jobs) | set(by_job) - {""})
    if ctx.targets is not None:
        names = [name for name in names if name in ctx.targets]
    changes = [
        change
        for name in names
        if (
            change := plan_job(
                name,
                desired.get(name),
                state.jobs.get(name),
                by_job.get(name, []),
                retryable or {},
                ctx,
                in_flight or {},
            )
        )
    ]
    if not desired and not allow_empty and any(c.action is Action.CANCEL for c in changes):
        raise PlanRefusedError(
            "no specs found, and the plan would cancel every running job; check --specs, "
            "or pass --allow-empty to really cancel them all"
        )
    return Plan(tuple(changes))


def left_to_newer(plan: Plan, reasons: Mapping[str, str]) -> Plan:
    """The plan with the changes to each job in `reasons` taken back: a writer whose checkout
    is behind the commit that last changed the job (engine/workspace.py) shows why, and does
    nothing to it."""
    changes = tuple(
        dataclasses.replace(
            change,
            action=Action.NOOP,
            reason=reasons[change.job],
            cancel=(),
            adopt=(),
            creates=(),
            launch_requests=0,
            launch_tokens=0,
            attention=True,
            missed_slot=None,
        )
        if change.mutates and change.job in reasons
        else change
        for change in plan.changes
    )
    return dataclasses.replace(plan, changes=changes)
