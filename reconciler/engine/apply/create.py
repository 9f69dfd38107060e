"""Creates exactly once, without a server-side key.

Every create's attempt id is written to the state before its upload, and its upload's file
id and send time before its POST; a create whose answer is lost stays pending and is resolved
from the live list by the next pass instead of being sent again blindly, and one that got no
answer at all waits out a quarantine first (engine/inflight.py).  Uploads a killed pass left
behind are reused (leftovers.py).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Literal

from reconciler.api.batch import Batch, LiveBatch
from reconciler.common import ownership
from reconciler.common.errors import OutcomeUnknownError, ReconcilerError
from reconciler.common.ownership import DEFAULT_RUN
from reconciler.engine.apply.effects import Effects, Outcome
from reconciler.engine.apply.failures import Failure
from reconciler.engine.apply.leftovers import Leftovers
from reconciler.plans.changes import Change, DesiredJob, Unit
from reconciler.plans.record import with_pending
from reconciler.state.model import PendingCreate, State


def create_all(
    creates: Sequence[Change],
    desired: Mapping[str, DesiredJob],
    state: State,
    fx: Effects,
    pool: ThreadPoolExecutor,
    outcome: Outcome,
    leftovers: Leftovers,
) -> State:
    """Intents written, then uploads, then (their file ids and send time written) the POSTs."""
    if not creates:
        return state
    intents = {c.job: _intents_for(desired[c.job], c.creates, state, c.run) for c in creates}
    state = fx.write(with_pending(state, desired, intents, fx.now()))
    work = [(desired[job], intent) for job, pending in intents.items() for intent in pending]

    def upload(item: tuple[DesiredJob, PendingCreate]) -> PendingCreate | Failure:
        job, intent = item
        if intent.input_file_id is not None:
            return intent
        try:
            unit = Unit(intent.part, intent.retry, intent.requests, intent.run or DEFAULT_RUN)
            source = fx.source_for(job, unit)
            file_id = leftovers.reuse(job.provider, source) or fx.apis[job.provider].writer.upload_file(
                source, leftover=lambda: leftovers.suspect(job.provider)
            )
        except (ReconcilerError, OSError) as error:
            return _failure(error, job, intent, "upload")
        return intent.model_copy(update={"input_file_id": file_id})

    uploaded = list(pool.map(upload, work))
    sent_at = int(time.time())
    ready = [
        (job, result.model_copy(update={"sent_at": sent_at}))
        for (job, _), result in zip(work, uploaded, strict=True)
        if not isinstance(result, Failure)
    ]
    outcome.failures += [result for result in uploaded if isinstance(result, Failure)]
    if ready:  # in flight from here: a pass that finds no batch later must wait the quarantine
        state = fx.write(with_pending(state, desired, _by_job(ready), fx.now()))

    def create(item: tuple[DesiredJob, PendingCreate]) -> tuple[PendingCreate, Batch | Failure]:
        job, intent = item
        try:
            batch = fx.apis[job.provider].writer.create_batch(
                input_file_id=str(intent.input_file_id),
                endpoint=job.endpoint,
                completion_window=job.completion_window,
                metadata=_metadata(job, intent, fx.owner_tag),
                output_expires_after=job.output_expires_after,
            )
        except OutcomeUnknownError as error:
            settled = intent if error.in_flight else intent.model_copy(update={"sent_at": None})
            return settled, _failure(error, job, intent, "create")
        except (ReconcilerError, OSError) as error:
            return intent.model_copy(update={"sent_at": None}), _failure(error, job, intent, "create")
        return intent, batch

    updated: list[tuple[DesiredJob, PendingCreate]] = []
    for (job, _), (intent, result) in zip(ready, pool.map(create, ready), strict=True):
        updated.append((job, intent))
        if isinstance(result, Failure):
            outcome.failures.append(result)
        else:
            outcome.touched.append(LiveBatch(provider=job.provider, batch=result))
            outcome.created += 1
    # Keep uploaded file ids in the intents, so a create sent again reuses its upload.
    return with_pending(state, desired, _by_job(updated), fx.now())


def _failure(
    error: Exception, job: DesiredJob, intent: PendingCreate, step: Literal["upload", "create"]
) -> Failure:
    return Failure.of(
        error, job=job.name, step=step, part=intent.part, attempt=intent.retry, provider=job.provider
    )


def _by_job(items: Sequence[tuple[DesiredJob, PendingCreate]]) -> dict[str, tuple[PendingCreate, ...]]:
    grouped: dict[str, list[PendingCreate]] = {}
    for job, intent in items:
        grouped.setdefault(job.name, []).append(intent)
    return {name: tuple(intents) for name, intents in grouped.items()}


def _intents_for(
    job: DesiredJob, units: Sequence[Unit], state: State, run: str | None
) -> tuple[PendingCreate, ...]:
    previous = state.jobs.get(job.name)
    run = run or DEFAULT_RUN
    earlier = {
        (p.generation, p.run or DEFAULT_RUN, p.part, p.retry): p
        for p in (previous.pending if previous else ())
    }
    return tuple(
        earlier.get((job.generation, run, u.part, u.retry))
        or PendingCreate(
            attempt=uuid.uuid4().hex[:12],
            generation=job.generation,
            run=run,
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
        ownership.KEY_RUN: intent.run or DEFAULT_RUN,
        # Written at create time, so the policy outlives the job's spec and state record.
        ownership.KEY_DELETION_POLICY: job.deletion_policy,
    }
    return {**ours, **job.metadata}
