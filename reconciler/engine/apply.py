"""Carries out a plan: the only code that changes anything at a provider.

Exactly-once creation without a server-side key: every create's attempt id is written to
the state before its POST; a create whose answer is lost stays pending and is resolved
from the live list by the next pass instead of being sent again blindly.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from reconciler.api.batch import Batch, LiveBatch
from reconciler.api.client import BatchClient
from reconciler.api.uploads import UploadSource
from reconciler.common import ownership
from reconciler.common.errors import ApiError, ApiStatusError, ReconcilerError
from reconciler.engine.leftovers import Leftovers
from reconciler.plans.changes import Action, Change, DesiredJob, Plan, Unit
from reconciler.plans.record import record, with_pending
from reconciler.state.model import PendingCreate, State

DEFAULT_PARALLELISM = 16

# What to upload for one unit of a job; retries need a file of just the unfinished requests.
SourceFor = Callable[[DesiredJob, Unit], UploadSource]


@dataclass
class Outcome:
    """What happened: a line per failed job, and the batches the pass created or cancelled."""

    failures: dict[str, str] = field(default_factory=dict)
    touched: list[LiveBatch] = field(default_factory=list)
    created: int = 0
    cancelled: int = 0


@dataclass(frozen=True)
class Effects:
    clients: Mapping[str, BatchClient]
    owner_tag: str
    write: Callable[[State], State]  # persists a state; the caller holds the lock
    now: Callable[[], str]
    source_for: SourceFor
    parallelism: int = DEFAULT_PARALLELISM


def apply_plan(
    plan: Plan, desired: Mapping[str, DesiredJob], live: Sequence[LiveBatch], state: State, fx: Effects
) -> tuple[State, Outcome]:
    outcome = Outcome()
    leftovers = Leftovers.after(state, fx.clients, fx.owner_tag)
    with ThreadPoolExecutor(max_workers=fx.parallelism, thread_name_prefix="apply") as pool:
        cancel_failed = _cancel_all(plan, {b.id: b for b in live}, fx, pool, outcome)
        creates = [c for c in plan.pending if c.creates and c.job not in cancel_failed]
        state = _create_all(creates, desired, state, fx, pool, outcome, leftovers)
    merged = {b.id: b for b in live} | {b.id: b for b in outcome.touched}
    forgotten = [c.job for c in plan.pending if c.action is Action.FORGET]
    state = fx.write(record(desired, state, list(merged.values()), forgotten=forgotten, now=fx.now()))
    outcome.failures |= leftovers.sweep_all(desired, list(merged.values()), state)
    return state, outcome


def _cancel_all(
    plan: Plan, by_id: Mapping[str, LiveBatch], fx: Effects, pool: ThreadPoolExecutor, outcome: Outcome
) -> set[str]:
    targets = [(c.job, by_id[i]) for c in plan.pending for i in c.cancel if i in by_id]

    def cancel(target: tuple[str, LiveBatch]) -> tuple[str, LiveBatch | str]:
        job, live = target
        try:
            batch = fx.clients[live.provider].cancel_batch(live.id)
        except ApiStatusError as error:
            if error.status == 409:  # finished meanwhile: nothing left to stop
                return job, live
            return job, f"cancel {live.id}: {error}"
        except ApiError as error:
            return job, f"cancel {live.id}: {error}"
        return job, LiveBatch(provider=live.provider, batch=batch)

    failed: set[str] = set()
    for job, result in pool.map(cancel, targets):
        if isinstance(result, str):
            outcome.failures[job] = result
            failed.add(job)
        else:
            outcome.touched.append(result)
            outcome.cancelled += 1
    return failed


def _create_all(
    creates: Sequence[Change],
    desired: Mapping[str, DesiredJob],
    state: State,
    fx: Effects,
    pool: ThreadPoolExecutor,
    outcome: Outcome,
    leftovers: Leftovers,
) -> State:
    if not creates:
        return state
    intents = {c.job: _intents_for(desired[c.job], c.creates, state) for c in creates}
    state = fx.write(with_pending(state, desired, intents, fx.now()))
    work = [(desired[job], intent) for job, pending in intents.items() for intent in pending]

    def create(item: tuple[DesiredJob, PendingCreate]) -> tuple[PendingCreate, Batch | str]:
        job, intent = item
        client = fx.clients[job.provider]
        try:
            if intent.input_file_id is None:
                source = fx.source_for(job, Unit(intent.part, intent.retry, intent.requests))
                file_id = leftovers.reuse(job.provider, source) or client.upload_file(source)
                intent = intent.model_copy(update={"input_file_id": file_id})
            batch = client.create_batch(
                input_file_id=str(intent.input_file_id),
                endpoint=job.endpoint,
                completion_window=job.completion_window,
                metadata=_metadata(job, intent, fx.owner_tag),
            )
        except (ReconcilerError, OSError) as error:
            return intent, f"create part {intent.part} attempt {intent.retry}: {error}"
        return intent, batch

    updated: dict[str, list[PendingCreate]] = {}
    for (job, _), (intent, result) in zip(work, pool.map(create, work), strict=True):
        updated.setdefault(job.name, []).append(intent)
        if isinstance(result, str):
            outcome.failures[job.name] = result
        else:
            outcome.touched.append(LiveBatch(provider=job.provider, batch=result))
            outcome.created += 1
    # Keep uploaded file ids in the intents, so a create sent again reuses its upload.
    return with_pending(state, desired, {k: tuple(v) for k, v in updated.items()}, fx.now())


def _intents_for(job: DesiredJob, units: Sequence[Unit], state: State) -> tuple[PendingCreate, ...]:
    previous = state.jobs.get(job.name)
    earlier = {(p.generation, p.part, p.retry): p for p in (previous.pending if previous else ())}
    return tuple(
        earlier.get((job.generation, u.part, u.retry))
        or PendingCreate(
            attempt=uuid.uuid4().hex[:12],
            generation=job.generation,
            part=u.part,
            retry=u.retry,
            requests=u.requests,
        )
        for u in units
    )


def _metadata(job: DesiredJob, intent: PendingCreate, owner_tag: str) -> dict[str, str]:
    ours = {
        ownership.KEY_JOB: job.name,
        ownership.KEY_GENERATION: job.generation,
        ownership.KEY_OWNER: owner_tag,
        ownership.KEY_ATTEMPT: intent.attempt,
        ownership.KEY_PART: str(intent.part),
        ownership.KEY_RETRY: str(intent.retry),
    }
    return {**ours, **job.metadata}
