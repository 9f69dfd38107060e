"""The decision for one job: which batches to create, cancel, adopt or retry, and why."""

from __future__ import annotations

from collections.abc import Sequence

from reconciler.api.batch import LiveBatch
from reconciler.plans.changes import Action, Change, DesiredJob, InFlight, Retryable, Unit
from reconciler.plans.duplicates import split_duplicates, unit_of
from reconciler.state.model import JobState


def plan_job(
    name: str,
    desired: DesiredJob | None,
    recorded: JobState | None,
    live: list[LiveBatch],
    retryable: Retryable,
    in_flight: InFlight | None = None,
) -> Change | None:
    running = [b for b in live if not b.terminal]
    if desired is None:
        return _plan_removed(name, recorded, running)
    if desired.suspend:
        if running:
            return _change(desired, Action.CANCEL, "suspended; cancelling what runs", cancel=running)
        return _change(desired, Action.NOOP, "suspended")
    current, extra = split_duplicates(b for b in live if b.generation == desired.generation)
    doubled = [b for b in extra if not b.terminal]  # a finished duplicate is only never counted
    stale = [b for b in running if b.generation != desired.generation]
    known = recorded.batch_ids if recorded and recorded.generation == desired.generation else frozenset()
    adopt = [b for b in current if b.id not in known]
    creates = _missing_parts(desired, current) + _retries(desired, current, retryable)
    waiting = {u: _left(in_flight, desired, u) for u in creates if _left(in_flight, desired, u)}
    creates = [u for u in creates if u not in waiting]
    action, reason = _label(desired, recorded, current, stale, adopt, creates)
    if waiting and action is Action.NOOP:
        unit, left = next(iter(waiting.items()))
        reason = (
            f"the create of part {unit.part} attempt {unit.retry} got no answer and may still be "
            f"in flight: looking for it in the live list, sending it again in {left:.0f}s at most"
        )
    if doubled and action in (Action.ADOPT, Action.CANCEL, Action.NOOP):
        action, reason = Action.DEDUPE, _dedupe_reason(current, doubled)
    return _change(desired, action, reason, cancel=stale + doubled, adopt=adopt, creates=creates)


def _left(in_flight: InFlight | None, desired: DesiredJob, unit: Unit) -> float:
    return (in_flight or {}).get((desired.name, desired.generation, unit.part, unit.retry), 0.0)


def _dedupe_reason(current: list[LiveBatch], doubled: list[LiveBatch]) -> str:
    kept = {unit_of(b): b for b in current}[unit_of(doubled[0])]
    younger = ", ".join(b.id for b in doubled if unit_of(b) == unit_of(kept))
    part, retry = kept.batch.part, kept.batch.retry
    more = len(doubled) - len(younger.split(", "))
    also = f" (and {more} more)" if more else ""
    return (
        f"part {part} attempt {retry} has more than one batch: keeping the oldest {kept.id}, "
        f"cancelling {younger}{also}"
    )


def _missing_parts(desired: DesiredJob, current: list[LiveBatch]) -> list[Unit]:
    present = {b.batch.part for b in current}
    return [Unit(p.index, 1, p.requests) for p in desired.part_specs if p.index not in present]


def _retries(desired: DesiredJob, current: list[LiveBatch], retryable: Retryable) -> list[Unit]:
    latest: dict[int, LiveBatch] = {}
    for batch in current:
        part = batch.batch.part
        if part not in latest or batch.batch.retry > latest[part].batch.retry:
            latest[part] = batch
    units = []
    for part, batch in sorted(latest.items()):
        count = retryable.get((desired.name, part), 0)
        if batch.terminal and count and batch.batch.retry < desired.max_attempts:
            units.append(Unit(part, batch.batch.retry + 1, count))
    return units


def _label(
    desired: DesiredJob,
    recorded: JobState | None,
    current: list[LiveBatch],
    stale: list[LiveBatch],
    adopt: list[LiveBatch],
    creates: list[Unit],
) -> tuple[Action, str]:
    first = [u for u in creates if u.retry == 1]
    if first and stale:
        old = stale[0]
        return (
            Action.REPLACE,
            f"spec changed ({old.generation} → {desired.generation}) while {old.id} is {old.status}",
        )
    if first:
        return Action.CREATE, _create_reason(desired, recorded, first, bool(current))
    if creates:
        unit = creates[0]
        total = sum(u.requests for u in creates)
        return Action.RETRY, f"attempt {unit.retry}, {total:,} requests did not succeed"
    if adopt:
        return Action.ADOPT, f"{adopt[0].id} of generation {desired.generation} is live but not in the state"
    if stale:
        return Action.CANCEL, f"superseded by generation {desired.generation}; cancelling {stale[0].id}"
    return Action.NOOP, f"in sync ({current[-1].status})" if current else "in sync"


def _create_reason(desired: DesiredJob, recorded: JobState | None, units: list[Unit], partial: bool) -> str:
    size = f"{len(units)} parts, " if len(units) > 1 else ""
    size += f"{sum(u.requests for u in units):,} requests"
    if partial:
        return f"{size}: parts {', '.join(str(u.part) for u in units)} have no batch yet"
    if recorded is None:
        return f"{size}: no batch yet"
    if any(p.generation == desired.generation for p in recorded.pending):
        attempts = ", ".join(p.attempt for p in recorded.pending)
        return f"{size}: attempt {attempts} left no batch in the live list; creating it"
    if recorded.generation != desired.generation:
        return f"{size}: spec changed ({recorded.generation} → {desired.generation})"
    return f"{size}: no batch of generation {desired.generation} is live"


def _plan_removed(name: str, recorded: JobState | None, running: list[LiveBatch]) -> Change | None:
    policy = recorded.deletion_policy if recorded else "cancel"
    provider = recorded.provider if recorded else (running[0].provider if running else "")
    generation = recorded.generation if recorded else None
    if running and policy == "cancel":
        ids = tuple(b.id for b in running)
        reason = f"spec removed; deletion_policy cancel stops {ids[0]}"
        return Change(name, Action.CANCEL, reason, provider, generation, cancel=ids)
    if recorded is None:
        return None
    reason = (
        f"spec removed; deletion_policy orphan leaves {running[0].id} running"
        if running
        else "spec removed; its batches are finished"
    )
    return Change(name, Action.FORGET, reason, provider, generation)


def _change(
    desired: DesiredJob,
    action: Action,
    reason: str,
    *,
    cancel: Sequence[LiveBatch] = (),
    adopt: Sequence[LiveBatch] = (),
    creates: Sequence[Unit] = (),
) -> Change:
    launched = sum(u.requests for u in creates)
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
    )
