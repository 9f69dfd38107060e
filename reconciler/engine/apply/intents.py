"""The exactly-once create protocol, without a server-side key: each create is an intent that
moves planned → uploaded → sent → resolved | quarantined, and each state is written to the state
before the effect that leaves it.  The write order is the protocol:

  1. planned: every create's intent (its attempt id) is written before any upload;
  2. uploaded, sent: their input file ids and send time are written before any POST (nothing
     happens between the two moves, so one write holds both);
  3. the POSTs: a batch resolves its intent, an error answer moves it back to uploaded, no
     answer quarantines it; the pass's one write (engine/converge.py) records that.

The states and their moves are `state/model.PendingCreate`; ARCHITECTURE.md draws the table.
A later pass finds an intent in the state: one whose batch is live is resolved
(plans/record.py); a sent or quarantined one with no batch yet waits a quarantine, counted from
its POST, during which passes only look for it in the live list (`in_flight`), and is then sent
again with the same attempt id: the duplicate guard (plans/decide.py) cancels a late
arrival.  Uploads a killed pass left behind are reused (leftovers.py).
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Literal

from reconciler.api.batch import Batch
from reconciler.common import ownership
from reconciler.common.errors import OutcomeUnknownError, ReconcilerError, UserError
from reconciler.common.limits import parse_seconds
from reconciler.common.ownership import DEFAULT_RUN
from reconciler.engine.apply.effects import Effects, Outcome
from reconciler.engine.apply.failures import Failure
from reconciler.engine.apply.leftovers import Leftovers
from reconciler.plans.changes import Change, DesiredJob, InFlight, LiveBatch, Unit
from reconciler.plans.record import with_intents
from reconciler.state.model import IntentKey, IntentState, PendingCreate, State

QUARANTINE_ENV = "RECONCILER_CREATE_QUARANTINE"
DEFAULT_QUARANTINE_SECONDS = 120.0  # four times the client's 30 s read timeout
# A create in these states may still be under way at the server, which can take longer than our
# timeout to make the batch: sending its intent again at once is how one attempt became two.
MAY_BE_IN_FLIGHT = frozenset({IntentState.SENT, IntentState.QUARANTINED})

Intent = tuple[DesiredJob, PendingCreate]


def quarantine_seconds() -> float:
    raw = os.environ.get(QUARANTINE_ENV)
    try:
        return parse_seconds(raw) if raw else DEFAULT_QUARANTINE_SECONDS
    except ValueError as error:
        raise UserError(f"${QUARANTINE_ENV}={raw!r} {error}") from None


def in_flight(state: State, live: Sequence[LiveBatch], now: float, quarantine: float) -> InFlight:
    """Seconds left, for each intent still in quarantine: sent without an answer and not in the
    live list yet.  The planner creates none of these units meanwhile."""
    seen = {b.attempt for b in live}
    waiting = {}
    for name, job in state.jobs.items():
        for intent in job.pending:
            if intent.state in MAY_BE_IN_FLIGHT and intent.attempt not in seen:
                left = (intent.sent_at or 0) + quarantine - now
                if left > 0:
                    waiting[IntentKey.of_intent(name, intent)] = left
    return waiting


def create_all(
    creates: Sequence[Change],
    desired: Mapping[str, DesiredJob],
    state: State,
    fx: Effects,
    pool: ThreadPoolExecutor,
    outcome: Outcome,
    leftovers: Leftovers,
) -> State:
    """The state with every create's intent as far as it got; written up to its POSTs, the rest
    for the pass to write.  What failed is in `outcome.failures`, one per part and attempt."""
    if not creates:
        return state
    planned = [
        (desired[c.job], i) for c in creates for i in _intents_for(desired[c.job], c.creates, state, c.run)
    ]
    state = _persist(state, desired, planned, fx)
    uploaded = _upload_all(planned, fx, pool, outcome, leftovers)
    at = int(time.time())
    sent = [(job, intent.sent(at)) for job, intent in uploaded]
    if sent:  # in flight from here: a pass that finds no batch later must wait the quarantine
        state = _persist(state, desired, sent, fx)
    answered = _post_all(sent, fx, pool, outcome)
    # Uploaded file ids stay in the intents, so a create sent again reuses its upload.
    return with_intents(state, desired, _by_job(answered), fx.now())


def _persist(
    state: State, desired: Mapping[str, DesiredJob], intents: Sequence[Intent], fx: Effects
) -> State:
    return fx.write(with_intents(state, desired, _by_job(intents), fx.now()))


def _upload_all(
    planned: Sequence[Intent], fx: Effects, pool: ThreadPoolExecutor, outcome: Outcome, leftovers: Leftovers
) -> list[Intent]:
    """planned → uploaded; an intent an earlier pass uploaded keeps its upload."""

    def upload(item: Intent) -> PendingCreate | Failure:
        job, intent = item
        if intent.state is not IntentState.PLANNED:
            return intent
        try:
            source = fx.source_for(
                job, Unit(intent.part, intent.retry, intent.requests, intent.run or DEFAULT_RUN)
            )
            file_id = leftovers.reuse(job.provider, source) or fx.writer(job.provider).upload_file(
                source, leftover=lambda: leftovers.suspect(job.provider)
            )
        except (ReconcilerError, OSError) as error:
            return _failure(error, job, intent, "upload")
        return intent.uploaded(file_id)

    results = list(pool.map(upload, planned))
    outcome.failures += [result for result in results if isinstance(result, Failure)]
    return [(job, r) for (job, _), r in zip(planned, results, strict=True) if not isinstance(r, Failure)]


def _post_all(
    sent: Sequence[Intent], fx: Effects, pool: ThreadPoolExecutor, outcome: Outcome
) -> list[Intent]:
    """sent → resolved (a batch), quarantined (no answer: it may still be made) or uploaded (an
    error answer: nothing in flight)."""

    def post(item: Intent) -> tuple[PendingCreate, Batch | Failure]:
        job, intent = item
        try:
            batch = fx.writer(job.provider).create_batch(
                input_file_id=str(intent.input_file_id),
                endpoint=job.endpoint,
                completion_window=job.completion_window,
                metadata=_metadata(job, intent, fx.owner_tag),
                output_expires_after=job.output_expires_after,
            )
        except OutcomeUnknownError as error:
            answer = intent.quarantined() if error.in_flight else intent.refused()
            return answer, _failure(error, job, intent, "create")
        except (ReconcilerError, OSError) as error:
            return intent.refused(), _failure(error, job, intent, "create")
        return intent.resolved(), batch

    answered: list[Intent] = []
    for (job, _), (intent, result) in zip(sent, pool.map(post, sent), strict=True):
        answered.append((job, intent))
        if isinstance(result, Failure):
            outcome.failures.append(result)
        else:
            outcome.touched.append(LiveBatch.of(job.provider, result))
            outcome.created += 1
    return answered


def _failure(
    error: Exception, job: DesiredJob, intent: PendingCreate, step: Literal["upload", "create"]
) -> Failure:
    return Failure.of(
        error, job=job.name, step=step, part=intent.part, attempt=intent.retry, provider=job.provider
    )


def _by_job(items: Sequence[Intent]) -> dict[str, tuple[PendingCreate, ...]]:
    grouped: dict[str, list[PendingCreate]] = {}
    for job, intent in items:
        grouped.setdefault(job.name, []).append(intent)
    return {name: tuple(intents) for name, intents in grouped.items()}


def _intents_for(
    job: DesiredJob, units: Sequence[Unit], state: State, run: str | None
) -> tuple[PendingCreate, ...]:
    """An intent per unit: the one an earlier pass left for that unit, or a new one (planned)."""
    previous = state.jobs.get(job.name)
    earlier = {IntentKey.of_intent(job.name, p): p for p in (previous.pending if previous else ())}
    keys = [(IntentKey.of(job.name, job.generation, run, u.part, u.retry), u.requests) for u in units]
    return tuple(
        earlier.get(key) or PendingCreate.planned(uuid.uuid4().hex[:12], key, requests)
        for key, requests in keys
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
