"""Creates exactly once, without a server-side key.

Every create's attempt id is written to the state before its POST; a create whose answer is
lost stays pending and is resolved from the live list by the next pass instead of being
sent again blindly.  Uploads a killed pass left behind are reused (leftovers.py).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor

from reconciler.api.batch import Batch, LiveBatch
from reconciler.common import ownership
from reconciler.common.errors import ReconcilerError
from reconciler.common.ownership import DEFAULT_RUN
from reconciler.engine.apply.effects import Effects, Outcome
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
    if not creates:
        return state
    intents = {c.job: _intents_for(desired[c.job], c.creates, state, c.run) for c in creates}
    state = fx.write(with_pending(state, desired, intents, fx.now()))
    work = [(desired[job], intent) for job, pending in intents.items() for intent in pending]

    def create(item: tuple[DesiredJob, PendingCreate]) -> tuple[PendingCreate, Batch | str]:
        job, intent = item
        client = fx.apis[job.provider].writer
        try:
            if intent.input_file_id is None:
                unit = Unit(intent.part, intent.retry, intent.requests, intent.run or DEFAULT_RUN)
                source = fx.source_for(job, unit)
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
