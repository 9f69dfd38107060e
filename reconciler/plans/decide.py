"""Desired specs + recorded state + live owned batches → the changes that converge them, job by job.

Pure: no I/O here, so every decision can be read and tested as data.  Observed fields
(status, counts, output ids) never make a change; a finished batch of the current
generation is finished work, not drift.

The decision for one job (`plan_job`): which batches to create, cancel, adopt, retry or
resume, and why (a reason code with its data, plans/reasons.py; plans/wording.py says it in
words, never this module).  Only the batches of the job's current run (runs.py) and
generation are its current work; running batches of other runs or generations are
superseded, unless a schedule's `concurrency_policy: allow` lets an earlier run go on.
What changed between two definitions of a job is named field by field, for a reviewer to
read (`spec_diff`).

The duplicate guard (`split_duplicates`): two live batches of ours for one unit (a job's
generation, run, part and retry) are one too many.  A writer without the shared lock, an older
reconciler or a create still in flight when its intent was sent again can each leave a second
batch for a unit.  The oldest (by creation time, then id) is the one kept and counted; the
younger ones are cancelled while they run (`! dedupe`) and never counted, in the plan, the
state (plans/record.py) or status.

A job whose spec is gone (`plan_removed`): its running batches are cancelled or left running,
each as the deletion policy written into its own metadata says, so an orphan stays orphaned
even after the job is forgotten and the state is lost.  A batch of ours with no policy in its
metadata and no state record to take one from is left running and reported, never cancelled
silently.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from reconciler.api.batch import START_FAILURES
from reconciler.common.errors import PlanRefusedError
from reconciler.plans.changes import (
    Action,
    Change,
    DesiredJob,
    InFlight,
    LiveBatch,
    Plan,
    PlanContext,
    Retryable,
    Unit,
)
from reconciler.plans.jobstatus import (
    attempts_by_part,
    attempts_used,
    job_status,
    requeue_owed,
    restart_owed,
    restart_reason,
    restart_waits,
)
from reconciler.plans.reasons import (
    Adopt,
    CreateInFlight,
    Dedupe,
    FieldChange,
    InputChange,
    InSync,
    IntentLost,
    LeftToNewer,
    NoBatchYet,
    NoDeletionPolicy,
    NotLive,
    Orphaned,
    PartsMissing,
    Reason,
    ReplaceRequested,
    Replacing,
    Requeue,
    Resume,
    Retry,
    Reused,
    RunChanged,
    ScheduledRun,
    SpecChanged,
    SpecDiff,
    SpecRemoved,
    Superseded,
    Suspended,
    Upcoming,
)
from reconciler.plans.runs import RunChoice, choose_runs, newest, run_base, slot_run
from reconciler.state.model import BatchRecord, IntentKey, JobState, State

Attempts = dict[int, list[BatchRecord]]  # a job's attempts of its current run by part (attempts_by_part)


def spec_diff(
    old: Mapping[str, Any] | None, new: Mapping[str, Any], by_custom_id: Mapping[str, Any] | None = None
) -> SpecDiff:
    """Each changed leaf of a job's definition; the input as request counts and digests, and
    with `by_custom_id` (specs/inputs/cache.compare) the requests added, removed and changed."""
    if not old:
        return SpecDiff()
    flat_old, flat_new = _flatten(old), _flatten(new)
    fields = tuple(
        FieldChange(key, flat_old.get(key), flat_new.get(key))
        for key in sorted(set(flat_old) | set(flat_new))
        if not key.startswith("input.") and flat_old.get(key) != flat_new.get(key)
    )
    return SpecDiff(fields, _input_change(old.get("input"), new.get("input"), by_custom_id))


def _input_change(old: Any, new: Any, by_custom_id: Mapping[str, Any] | None) -> InputChange | None:
    if not isinstance(old, dict) or not isinstance(new, dict) or old.get("sha256") == new.get("sha256"):
        return None
    before, after = old.get("requests"), new.get("requests")
    return InputChange(
        before if isinstance(before, int) else None,
        after if isinstance(after, int) else None,
        str(old.get("sha256")),
        str(new.get("sha256")),
        by_custom_id,
    )


def _flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            flat.update(_flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def plan_job(
    name: str,
    desired: DesiredJob | None,
    recorded: JobState | None,
    live: list[LiveBatch],
    retryable: Retryable,
    choice: RunChoice | None = None,
    in_flight: InFlight | None = None,
) -> Change | None:
    """`choice`: the run the pass converges for a desired job (plans/runs.choose_runs)."""
    running = [b for b in live if not b.terminal]
    if desired is None:
        return plan_removed(name, recorded, running)
    if desired.suspend:
        # The run it was on stays its run: what it did (counts, results) is still what it shows.
        run = recorded.run if recorded and recorded.run else newest(b.run for b in live)
        if running:
            return _change(
                desired, Action.CANCEL, Suspended(tuple(b.id for b in running)), cancel=running, run=run
            )
        return _change(desired, Action.NOOP, Suspended(), run=run)
    if choice is None:
        raise ValueError(f"{name}: planned without its run choice")
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
    attempts = attempts_by_part(b.record for b in current)  # once per job: read by each step below
    creates = firsts + _retries(desired, current, attempts, retryable)
    waiting = {u: _left(in_flight, desired, run, u) for u in creates if _left(in_flight, desired, run, u)}
    creates = [u for u in creates if u not in waiting]
    action, reason = _label(desired, recorded, choice, current, attempts, stale, adopt, creates)
    if action is Action.NOOP and _answered_by_reuse(desired, recorded, choice, current):
        action, reason = Action.CREATE, _create_reason(desired, recorded, choice, [], False)
    if waiting and action is Action.NOOP:
        unit, left = next(iter(waiting.items()))
        reason = CreateInFlight(unit.part, unit.retry, left)
    if doubled and action in (Action.ADOPT, Action.CANCEL, Action.NOOP):
        action, reason = Action.DEDUPE, dedupe_reason(current, doubled)
    change = _change(desired, action, reason, cancel=stale + doubled, adopt=adopt, creates=creates, run=run)
    if choice.edit_waits and action is Action.NOOP:  # an edit that does nothing yet is still news
        change = dataclasses.replace(change, attention=True)
    return dataclasses.replace(change, missed_slot=choice.missed) if choice.missed else change


def _answered_by_reuse(
    desired: DesiredJob, recorded: JobState | None, choice: RunChoice, current: list[LiveBatch]
) -> bool:
    """A new run whose every request is answered by earlier runs (spec.reuse): it starts, and
    completes, without a batch."""
    reuse = desired.reuse
    if reuse is None or reuse.reused < desired.requests or current or not choice.fresh:
        return False
    if recorded is None or recorded.run != choice.run or recorded.generation != desired.generation:
        return True
    return not recorded.all_reused


def _superseded(batch: LiveBatch, run: str | None, generation: str, choice: RunChoice) -> bool:
    if not choice.fresh:  # nothing new starts now: what runs is left alone
        return False
    if batch.run == run:
        return batch.generation != generation
    return choice.cancel_other_runs or batch.run in choice.supersedes


def _known(recorded: JobState | None, desired: DesiredJob, run: str | None) -> frozenset[str]:
    # A version-1 state's generation is the legacy one.
    if (
        recorded is None
        or not desired.made_from_this_spec(recorded.generation)
        or (recorded.run or run) != run
    ):
        return frozenset()
    return recorded.batch_ids


def _left(in_flight: InFlight | None, desired: DesiredJob, run: str | None, unit: Unit) -> float:
    key = IntentKey.of(desired.name, desired.generation, run, unit.part, unit.retry)
    return (in_flight or {}).get(key, 0.0)


def _missing_parts(desired: DesiredJob, current: list[LiveBatch]) -> list[Unit]:
    present = {b.part for b in current}
    return [Unit(p.index, 1, p.requests) for p in desired.part_specs if p.index not in present]


def _latest(current: list[LiveBatch]) -> dict[int, LiveBatch]:
    latest: dict[int, LiveBatch] = {}
    for batch in current:
        part = batch.part
        if part not in latest or batch.retry > latest[part].retry:
            latest[part] = batch
    return latest


def _retries(
    desired: DesiredJob, current: list[LiveBatch], attempts: Attempts, retryable: Retryable
) -> list[Unit]:
    units = []
    for part, batch in sorted(_latest(current).items()):
        count = retryable.get((desired.name, part), 0)
        # a resume, a restart, a requeue: none spends an attempt
        free = batch.status == "cancelled" or restart_owed(attempts[part]) or requeue_owed(attempts[part])
        if batch.terminal and count and (free or attempts_used(attempts[part]) < desired.max_attempts):
            units.append(Unit(part, batch.retry + 1, count))
    return units


def _label(
    desired: DesiredJob,
    recorded: JobState | None,
    choice: RunChoice,
    current: list[LiveBatch],
    attempts: Attempts,
    stale: list[LiveBatch],
    adopt: list[LiveBatch],
    creates: list[Unit],
) -> tuple[Action, Reason]:
    first = [u for u in creates if u.retry == 1]
    if first and stale:
        return Action.REPLACE, _replace_reason(desired, recorded, choice, first, stale[0])
    if first:
        return Action.CREATE, _create_reason(desired, recorded, choice, first, bool(current))
    if creates:
        total = sum(u.requests for u in creates)
        latest = _latest(current)
        if all(latest[u.part].status in START_FAILURES for u in creates):
            unit = creates[0]
            return Action.RETRY, restart_reason(attempts[unit.part], unit.part, total)
        if all(latest[u.part].status == "cancelled" for u in creates):
            return Action.RESUME, Resume(total)
        refusal = latest[creates[0].part].refusal
        if refusal is not None:
            return Action.RETRY, Requeue(total, creates[0].part, refusal.kind)
        return Action.RETRY, Retry(total, creates[0].retry)
    if adopt:
        also = stale[0].id if stale else None  # the same change cancels it
        return Action.ADOPT, Adopt(adopt[0].id, desired.generation, also)
    if stale:
        return Action.CANCEL, _superseded_by(desired, choice, stale[0])
    return Action.NOOP, _in_sync(choice, current, attempts)


def _superseded_by(desired: DesiredJob, choice: RunChoice, cancelled: LiveBatch) -> Superseded:
    """What takes a cancelled batch's place: a new generation, or a later run of its own."""
    if cancelled.generation != desired.generation or choice.run is None:
        return Superseded(cancelled.id, generation=desired.generation)
    timezone = desired.schedule.timezone if desired.schedule else "UTC"
    return Superseded(cancelled.id, run=choice.run, timezone=timezone)


def _in_sync(choice: RunChoice, current: list[LiveBatch], attempts: Attempts) -> Reason:
    if choice.waits is not None and not choice.fresh:
        return choice.waits
    waiting = restart_waits(attempts)  # a failed start, restarted when its wait is over
    if waiting:
        return waiting
    records = tuple(b.record for b in current)
    return InSync(job_status(records, ()) if current else None)


def _create_reason(
    desired: DesiredJob, recorded: JobState | None, choice: RunChoice, units: list[Unit], partial: bool
) -> Reason:
    requests, parts = sum(u.requests for u in units), len(units)
    started = _started(desired, choice, units)
    if started is not None:
        return started
    if partial:
        return PartsMissing(requests, tuple(u.part for u in units))
    if recorded is None or (recorded.status == "queued" and not recorded.batches):  # waited in a queue
        return NoBatchYet(requests, parts)
    if any(p.generation == desired.generation for p in recorded.pending):
        return IntentLost(requests, parts, tuple(p.attempt for p in recorded.pending))
    if recorded.generation != desired.generation:
        return SpecChanged(requests, parts, _what_changed(desired, recorded, recorded.generation))
    if recorded.run and choice.run and run_base(recorded.run) != run_base(choice.run):
        diff = _what_changed(desired, recorded)
        return RunChanged(requests, parts, choice.run, recorded.run, diff)
    return NotLive(requests, parts, desired.generation)


def _replace_reason(
    desired: DesiredJob, recorded: JobState | None, choice: RunChoice, units: list[Unit], old: LiveBatch
) -> Reason:
    requests, parts = sum(u.requests for u in units), len(units)
    counts = old.record.request_counts or {}
    progress = (counts.get("completed", 0), counts["total"]) if counts.get("total") else (None, None)
    replacing = Replacing(old.id, old.status, *progress)
    started = _started(desired, choice, units, replacing)
    if started is not None:
        return started
    if old.generation != desired.generation:
        diff = _what_changed(desired, recorded, old.generation)
        return SpecChanged(requests, parts, diff, replacing)
    diff = _what_changed(desired, recorded)
    return RunChanged(requests, parts, choice.run or "", old.run, diff, replacing)


def _started(
    desired: DesiredJob, choice: RunChoice, units: list[Unit], replacing: Replacing | None = None
) -> Reason | None:
    """A run this pass starts for a schedule's slot or for --replace; None for any other."""
    requests, parts = sum(u.requests for u in units), len(units)
    slot, run = desired.schedule, choice.run or ""
    if choice.started_by == "schedule" and slot is not None:
        policy = slot.concurrency_policy
        return ScheduledRun(
            requests, parts, run, slot.expression, slot.timezone, choice.alongside, policy, replacing
        )
    if choice.started_by == "replace":
        return ReplaceRequested(requests, parts, run, slot.timezone if slot else "UTC", replacing)
    return None


def _what_changed(
    desired: DesiredJob, recorded: JobState | None, old_generation: str | None = None
) -> SpecDiff:
    """The changed fields; without a recorded definition (an older state), the generations."""
    definition = recorded.definition if recorded else None
    diff = spec_diff(definition, desired.definition, desired.input_changes)
    if diff.named:
        return diff
    return SpecDiff(generation_before=old_generation, generation_after=desired.generation)


def _change(
    desired: DesiredJob,
    action: Action,
    reason: Reason,
    *,
    cancel: Sequence[LiveBatch] = (),
    adopt: Sequence[LiveBatch] = (),
    creates: Sequence[Unit] = (),
    run: str | None = None,
) -> Change:
    launched = sum(u.requests for u in creates)
    reuse, starts = desired.reuse, action in (Action.CREATE, Action.REPLACE)
    reused = (
        Reused(reuse.reused, desired.requests, reuse.from_run, reuse.from_several)
        if reuse and starts
        else None
    )
    slot = desired.schedule
    upcoming = None
    if slot is not None and slot.next is not None:
        upcoming = Upcoming(slot_run(slot.next), slot.timezone, slot.expression)
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
        reused=reused,
    )


def plan_removed(name: str, recorded: JobState | None, running: list[LiveBatch]) -> Change | None:
    provider = recorded.provider if recorded else (running[0].provider if running else "")
    generation = recorded.generation if recorded else None
    policies = {b.id: b.deletion_policy or (recorded.deletion_policy if recorded else None) for b in running}
    cancel = tuple(b.id for b in running if policies[b.id] == "cancel")
    orphans = [b.id for b in running if policies[b.id] == "orphan"]
    unknown = [b.id for b in running if policies[b.id] is None]
    if cancel:
        reason: Reason = SpecRemoved(stopped=cancel, left_running=tuple(orphans))
        return Change(name, Action.CANCEL, reason, provider, generation, cancel=cancel)
    if recorded is not None:
        reason = SpecRemoved(left_running=tuple(orphans + unknown))
        return Change(name, Action.FORGET, reason, provider, generation)
    if unknown:
        reason = NoDeletionPolicy(tuple(unknown))
        return Change(name, Action.NOOP, reason, provider, generation, attention=True)
    if orphans:
        return Change(name, Action.NOOP, Orphaned(tuple(orphans)), provider, generation)
    return None


def unit_of(batch: LiveBatch) -> IntentKey:
    """A batch's unit: the `IntentKey` of the one create meant for it."""
    return batch.unit


def split_duplicates(batches: Iterable[LiveBatch]) -> tuple[list[LiveBatch], list[LiveBatch]]:
    """(the batch kept for each unit, the younger duplicates), each in the order given."""
    live = list(batches)
    if len(live) < 2:  # most jobs: one batch, nothing to compare
        return live, []
    oldest: dict[IntentKey, LiveBatch] = {}
    for batch in live:
        unit = unit_of(batch)
        if unit not in oldest or _age_key(batch) < _age_key(oldest[unit]):
            oldest[unit] = batch
    kept_ids = {b.id for b in oldest.values()}
    kept: list[LiveBatch] = []
    extra: list[LiveBatch] = []
    for batch in live:
        (kept if batch.id in kept_ids else extra).append(batch)
    return kept, extra


def _age_key(batch: LiveBatch) -> tuple[int, str]:
    created = batch.created_at
    return (created if created is not None else 2**62, batch.id)


def dedupe_reason(current: list[LiveBatch], doubled: list[LiveBatch]) -> Dedupe:
    kept = {unit_of(b): b for b in current}[unit_of(doubled[0])]
    younger = tuple(b.id for b in doubled if unit_of(b) == unit_of(kept))
    return Dedupe(kept.part, kept.retry, kept.id, younger, len(doubled) - len(younger))


def live_by_job(live: Sequence[LiveBatch]) -> dict[str, list[LiveBatch]]:
    """Live batches grouped by job (batches of no job under ""), in list order: looking up one
    job's batches must not scan every batch (10,000 jobs by 10,000 batches)."""
    by_job: dict[str, list[LiveBatch]] = {}
    for batch in live:
        by_job.setdefault(batch.job, []).append(batch)
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
    runs: Mapping[str, RunChoice] | None = None,
) -> Plan:
    """`runs`: each desired job's run choice, as the pass made it once (plans/runs.choose_runs);
    made here when not given."""
    ctx = context or PlanContext()
    by_job = live_by_job(live)
    names = sorted(set(desired) | set(state.jobs) | set(by_job) - {""})
    if ctx.targets is not None:
        names = [name for name in names if name in ctx.targets]
    if runs is None:
        runs = choose_runs({n: desired[n] for n in names if n in desired}, by_job, state, ctx)
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
                runs.get(name),
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


def left_to_newer(plan: Plan, reasons: Mapping[str, LeftToNewer]) -> Plan:
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
