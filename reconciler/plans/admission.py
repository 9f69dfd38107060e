"""Queue-aware admission: which of a plan's creates go now, and which wait for room in their
model's batch queue at their provider.  Pure: the state's queue book, the live list and the
plan in; the plan with what waits held back, and the book to record, out.

A provider caps the prompt tokens (and for some models the requests) that an organisation's
unfinished batches of one model may hold; a batch past the cap is accepted, then fails
(`token_limit_exceeded`).  So each pass counts, per provider and model, what our admitted
batches that have not finished hold (`enqueued`: each one's estimate recorded when it was
planned, corrected by the request count the provider reports; creates that may still be in
flight count too), and admits the plan's units in queue order while they fit; the rest are
held: the change says where its job stands (`Queued`), and the next pass admits them as
batches finish.

The limit is the Provider's `limits` for the model (or `"*"`), else the one a refusal's message
named (`learn`).  A refusal of a batch we admitted under a known limit means someone else uses
the same queue (another tool of the organisation): like TCP's congestion control, the usable
limit is halved (multiplicative decrease, down to an eighth; once per round: refusals of
batches sent before the last lowering are the same congestion) and grows back linearly to all
of it over RECOVERY_SECONDS, instead of sending into a full queue again and again.

Queue order: `spec.priority`, higher first; then turns, part by part (a job's k-th unit in the
queue, counting its batches already enqueued, goes before any job's k+1-th), so a long backfill
does not hold the queue while a three-part nightly eval waits; then the schedule slot of the
run, or when the spec first appeared; then the job's name.  Admission stops at the first unit
that does not fit (no smaller unit overtakes it), except that a queue holding nothing of ours
always takes the head unit if it fits the whole limit, and a unit larger than the whole limit
(a learnt one: split-to-fit cuts parts to a declared one) is set aside, never sent.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from reconciler.plans.changes import Action, Change, DesiredJob, LiveBatch, Plan, QueueLimit, Unit
from reconciler.plans.reasons import Queued
from reconciler.state.model import (
    Admitted,
    IntentKey,
    IntentState,
    QueueBook,
    QueueLearning,
    QueuePlace,
    State,
)

RECOVERY_SECONDS = 600.0  # a lowered limit grows back to all of it over this long
LOWEST_FLOOR = 0.125  # halving stops here
MAY_BE_LIVE = frozenset({IntentState.SENT, IntentState.QUARANTINED})
Model = tuple[str, str]  # provider, model


def unit_key(key: IntentKey) -> str:
    return "|".join((key.job, key.generation, key.run, str(key.part), str(key.retry)))


@dataclass(frozen=True)
class Load:
    tokens: int = 0
    requests: int = 0

    def plus(self, tokens: int, requests: int) -> Load:
        return Load(self.tokens + tokens, self.requests + requests)


@dataclass(frozen=True)
class Candidate:
    change: int  # index in the plan
    unit: Unit
    job: DesiredJob
    tokens: int
    rank: tuple[int, int, float, str, int]


def admit(
    plan: Plan, desired: Mapping[str, DesiredJob], live: Sequence[LiveBatch], state: State, now: float
) -> Plan:
    """The plan with each create that does not fit its model's queue held back (its change
    says where it stands), and `queue_book` the book this pass records."""
    book = learn(state.queue, live, desired, state, now)
    order = {**{name: now for name in desired if name not in book.order}, **book.order}
    order = {name: when for name, when in order.items() if name in desired or name in state.jobs}
    enqueued, per_job = _enqueued(live, desired, state, book)
    candidates = _candidates(plan, desired, order, per_job)
    held: dict[int, list[Candidate]] = {}
    never: set[int] = set()
    by_model: dict[Model, list[Candidate]] = {}
    for candidate in sorted(candidates, key=lambda c: c.rank):
        by_model.setdefault((candidate.job.provider, candidate.job.model), []).append(candidate)
    places: dict[str, QueuePlace] = {}
    reasons: dict[int, Queued] = {}
    for model, queue in by_model.items():
        limit, learnt = usable_limit(model, desired, book, now)
        whole, _ = usable_limit(model, desired, book, now, lowered=False)
        load = enqueued.get(model, Load())
        waiting: list[Candidate] = []
        blocked = False
        for candidate in queue:
            requests = candidate.unit.requests
            if limit is None or whole is None:
                continue
            if _over(whole, candidate.tokens, requests):
                never.add(candidate.change)
                waiting.append(candidate)
            elif not blocked and (_fits(limit, load, candidate.tokens, requests) or load == Load()):
                load = load.plus(candidate.tokens, requests)
            else:
                blocked = True
                waiting.append(candidate)
        for candidate in waiting:
            held.setdefault(candidate.change, []).append(candidate)
        if limit is not None:
            _place(waiting, model, load, limit, learnt, live, desired, now, places, reasons, never)
    changes = tuple(_held_back(c, held.get(i, []), reasons.get(i)) for i, c in enumerate(plan.changes))
    planned = {c.job for c in plan.changes}  # a job outside --target keeps its place
    kept = {name: place for name, place in book.places.items() if name not in planned and name in desired}
    book = book.model_copy(update={"order": order, "places": kept | places})
    return dataclasses.replace(plan, changes=changes, queue_book=book)


def _over(limit: QueueLimit, tokens: int, requests: int) -> bool:
    return (limit.tokens is not None and tokens > limit.tokens) or (
        limit.requests is not None and requests > limit.requests
    )


def _fits(limit: QueueLimit, load: Load, tokens: int, requests: int) -> bool:
    return not _over(limit, load.tokens + tokens, load.requests + requests)


def usable_limit(
    model: Model, desired: Mapping[str, DesiredJob], book: QueueBook, now: float, *, lowered: bool = True
) -> tuple[QueueLimit | None, bool]:
    """(the limit admission uses for a model now, whether it was learnt); None: no limit known.
    A declared limit wins over a learnt one."""
    declared = declared_limit(model, desired)
    learning = book.learnt.get(model[0], {}).get(model[1])
    limit = declared
    if limit is None and learning is not None and (learning.tokens or learning.requests):
        limit = QueueLimit(learning.tokens, learning.requests)
    if limit is None:
        return None, False
    share = congestion_share(learning, now) if lowered else 1.0
    return (
        QueueLimit(_share(limit.tokens, share), _share(limit.requests, share)),
        declared is None,
    )


def declared_limit(model: Model, desired: Mapping[str, DesiredJob]) -> QueueLimit | None:
    """The limit the Provider declares for the model (or its `"*"`), as its jobs carry it."""
    return next(
        (j.queue_limit for j in desired.values() if (j.provider, j.model) == model and j.queue_limit), None
    )


def congestion_share(learning: QueueLearning | None, now: float) -> float:
    """The share of a model's limit in use: lowered after a refusal despite our count, then
    growing back linearly over RECOVERY_SECONDS."""
    if learning is None or learning.lowered_at is None:
        return 1.0
    grown = min(max(now - learning.lowered_at, 0.0) / RECOVERY_SECONDS, 1.0)
    return learning.floor + (1.0 - learning.floor) * grown


def _share(value: int | None, share: float) -> int | None:
    return None if value is None else max(1, math.floor(value * share))


def learn(
    book: QueueBook, live: Sequence[LiveBatch], desired: Mapping[str, DesiredJob], state: State, now: float
) -> QueueBook:
    """The book after what refusals in the live list say: each limit a message names is learnt;
    a refusal of a batch admitted under a known limit lowers the usable share (congestion).
    Each refused batch is read once: its admitted estimate is then dropped."""
    learnt = {provider: dict(models) for provider, models in book.learnt.items()}
    admitted = dict(book.admitted)
    for batch in live:
        refusal = batch.refusal
        if refusal is None:  # most batches: read no further
            continue
        key = unit_key(batch.unit)
        model = _model_of(batch, desired, state, admitted.get(key))
        if model is None:
            continue
        entry = admitted.pop(key, None)
        before = learnt.get(batch.provider, {}).get(model)
        learning = before or QueueLearning()
        if refusal.limit is not None:
            field = "tokens" if refusal.kind == "token" else "requests"
            if getattr(learning, field) != refusal.limit:
                stamp = datetime.fromtimestamp(now).astimezone().isoformat(timespec="seconds")
                learning = learning.model_copy(update={field: refusal.limit, "learnt_at": stamp})
        # Our count said it fitted: someone else uses the queue.  Once per round, as TCP halves
        # once per window: a batch sent before the last lowering is the same congestion.
        made = batch.created_at or now
        earlier = learning.lowered_at is not None and made <= learning.lowered_at
        if entry is not None and entry.limited and not earlier:
            share = congestion_share(learning, now) / 2
            learning = learning.model_copy(update={"floor": max(share, LOWEST_FLOOR), "lowered_at": now})
        if learning != before:
            learnt.setdefault(batch.provider, {})[model] = learning
    return book.model_copy(update={"learnt": learnt, "admitted": admitted})


def _model_of(
    batch: LiveBatch, desired: Mapping[str, DesiredJob], state: State, entry: Admitted | None
) -> str | None:
    if entry is not None:
        return entry.model
    job = desired.get(batch.job)
    if job is not None:
        return job.model or None
    recorded = state.jobs.get(batch.job)
    given = (recorded.definition or {}).get("input") if recorded else None
    model = given.get("model") if isinstance(given, dict) else None
    return model if isinstance(model, str) else None


def _enqueued(
    live: Sequence[LiveBatch], desired: Mapping[str, DesiredJob], state: State, book: QueueBook
) -> tuple[dict[Model, Load], dict[str, int]]:
    """What our unfinished batches (and creates that may be in flight) hold of each model's
    queue; and how many units each job has in a queue."""
    loads: dict[Model, Load] = {}
    per_job: dict[str, int] = {}
    seen: set[str] = set()
    for batch in live:
        if batch.terminal:
            continue
        key = unit_key(batch.unit)
        seen.add(batch.attempt or "")
        entry = book.admitted.get(key)
        model = _model_of(batch, desired, state, entry)
        if model is None:
            continue
        tokens, requests = _batch_load(batch, desired.get(batch.job), entry)
        loads[(batch.provider, model)] = loads.get((batch.provider, model), Load()).plus(tokens, requests)
        per_job[batch.job] = per_job.get(batch.job, 0) + 1
    for name, job in state.jobs.items():
        for intent in job.pending:
            if intent.state in MAY_BE_LIVE and intent.attempt not in seen:
                entry = book.admitted.get(unit_key(IntentKey.of_intent(name, intent)))
                if entry is not None:
                    queue = (entry.provider, entry.model)
                    loads[queue] = loads.get(queue, Load()).plus(entry.tokens, entry.requests)
                    per_job[name] = per_job.get(name, 0) + 1
    return loads, per_job


def _batch_load(batch: LiveBatch, job: DesiredJob | None, entry: Admitted | None) -> tuple[int, int]:
    """A live batch's tokens and requests: its recorded estimate, scaled to the request count the
    provider reports; without one, the estimate its job's spec gives."""
    reported = (batch.record.request_counts or {}).get("total") or None
    if entry is not None:
        if reported is None or not entry.requests:
            return entry.tokens, entry.requests
        return entry.tokens * reported // entry.requests, reported
    if job is None or batch.generation != job.generation:
        return 0, reported or 0
    part = next((p for p in job.part_specs if p.index == batch.part), None)
    requests = reported or (part.requests if part else 0)
    return job.unit_tokens(batch.part, requests), requests


def _candidates(
    plan: Plan, desired: Mapping[str, DesiredJob], order: Mapping[str, float], per_job: Mapping[str, int]
) -> list[Candidate]:
    found = []
    for index, change in enumerate(plan.changes):
        job = desired.get(change.job)
        if job is None or not change.mutates or not change.creates:
            continue
        when = order.get(job.name, 0.0)
        if change.run and job.schedule is not None:
            when = _slot_time(change.run, when)
        ahead = per_job.get(job.name, 0)
        for turn, unit in enumerate(sorted(change.creates, key=lambda u: (u.part, u.retry))):
            rank = (-job.priority, ahead + turn, when, job.name, unit.part)
            found.append(Candidate(index, unit, job, job.unit_tokens(unit.part, unit.requests), rank))
    return found


def _slot_time(run: str, fallback: float) -> float:
    try:
        return datetime.strptime(run.partition("+")[0], "%Y-%m-%dT%H:%M:%SZ").timestamp()
    except ValueError:
        return fallback


def _place(
    waiting: list[Candidate],
    model: Model,
    load: Load,
    limit: QueueLimit,
    learnt: bool,
    live: Sequence[LiveBatch],
    desired: Mapping[str, DesiredJob],
    now: float,
    places: dict[str, QueuePlace],
    reasons: dict[int, Queued],
    never: set[int],
) -> None:
    """Where each job with held units stands: its position among them, and what is ahead."""
    ahead = load.tokens
    drains = _drains(live, model, desired, now)
    position = 0
    for candidate in waiting:
        name = candidate.job.name
        if name in places:
            ahead += candidate.tokens
            continue
        position += 1
        mine = [c for c in waiting if c.job.name == name]
        tokens = sum(c.tokens for c in mine)
        start = _estimated_start(drains, ahead + candidate.tokens - (limit.tokens or 0), limit, now)
        fits_never = candidate.change in never
        places[name] = QueuePlace(
            provider=model[0],
            model=model[1],
            position=position,
            parts=len(mine),
            tokens=tokens,
            tokens_ahead=ahead,
            estimated_start=None if fits_never else start,
            never_fits=fits_never,
        )
        reasons[candidate.change] = Queued(
            model[0],
            model[1],
            position,
            len(mine),
            sum(c.unit.requests for c in mine),
            tokens,
            ahead,
            limit.tokens,
            limit.requests,
            learnt,
            fits_never,
            places[name].estimated_start,
        )
        ahead += candidate.tokens


def _drains(
    live: Sequence[LiveBatch], model: Model, desired: Mapping[str, DesiredJob], now: float
) -> list[tuple[float, int, float]]:
    """(when it should finish, the tokens it frees, how long it runs) of each running batch of
    the model whose progress tells, soonest first: from its request counts since in_progress_at."""
    found = []
    for batch in live:
        job = desired.get(batch.job)
        if batch.terminal or batch.provider != model[0] or job is None or job.model != model[1]:
            continue
        counts, began = batch.record.request_counts or {}, batch.record.in_progress_at
        done, total = counts.get("completed", 0) + counts.get("failed", 0), counts.get("total", 0)
        if not total or not began:
            continue
        tokens, _ = _batch_load(batch, job, None)
        if not done:  # no pace yet: look again once it has run twice as long (a bound, not an end)
            look = now + max(now - began, 1.0)
            found.append((look, 0, look - (batch.created_at or began)))
            continue
        # Whole seconds and whole requests, both rounded down: their midpoints are the unbiased
        # reading (an early `in_progress_at` and a low count would each put the end too late).
        elapsed = now - began - 0.5
        rate = (done + 0.5) / elapsed if elapsed > 0 else 0.0
        if rate <= 0:
            continue
        end = now + max(total - done - 0.5, 0.0) / rate
        found.append((end, tokens, end - (batch.created_at or began)))
    return sorted(found)


def _estimated_start(
    drains: list[tuple[float, int, float]], needed: int, limit: QueueLimit, now: float
) -> float | None:
    """When `needed` tokens will have left the queue: as the running batches finish, then a
    round of the same length for each further queue-full."""
    if not drains:
        return None
    if needed <= 0:  # the tokens fit: what holds it is ahead of it, or the request count
        return drains[0][0]
    freed = 0
    for end, tokens, _ in drains:
        if not tokens:  # a batch with no pace yet: nothing later can be told before then
            return end
        freed += tokens
        if freed >= needed:
            return end
    rounds = math.ceil((needed - freed) / max(limit.tokens or 1, 1))
    longest = max(length for _, _, length in drains)
    return drains[-1][0] + rounds * longest


def _held_back(change: Change, held: list[Candidate], reason: Queued | None) -> Change:
    if not held:
        return change
    out = {(c.unit.part, c.unit.retry) for c in held}
    creates = tuple(u for u in change.creates if (u.part, u.retry) not in out)
    launched = sum(u.requests for u in creates)
    queued = reason or _later(change, held)
    if creates or change.cancel or change.adopt:
        tokens = max(change.launch_tokens - sum(c.tokens for c in held), 0)
        return dataclasses.replace(
            change, creates=creates, launch_requests=launched, launch_tokens=tokens, queued=queued
        )
    return dataclasses.replace(
        change,
        action=Action.NOOP,
        reason=queued,
        creates=(),
        launch_requests=0,
        launch_tokens=0,
        queued=queued,
        attention=True,
    )


def _later(change: Change, held: list[Candidate]) -> Queued:
    """A job's later held units, whose first held one is placed by another change: never, as
    a job has one change; kept so a change is never left without its place."""
    first = held[0]
    tokens = sum(c.tokens for c in held)
    requests = sum(c.unit.requests for c in held)
    return Queued(first.job.provider, first.job.model, 0, len(held), requests, tokens, 0, None, None)


def with_admitted(state: State, plan: Plan, desired: Mapping[str, DesiredJob], now: float) -> State:
    """The state with the estimate of each create the plan sends, recorded before its intent
    is (one write holds both): what it holds of its model's queue until it finishes."""
    book = plan.queue_book or state.queue
    admitted = dict(book.admitted)
    limited: dict[Model, bool] = {}  # per model, once: its declared limit is looked for in every job
    for change in plan.pending:
        job = desired.get(change.job)
        if job is None or not change.creates:  # an adopt or a cancel holds no new room
            continue
        model = (job.provider, job.model)
        if model not in limited:
            limited[model] = usable_limit(model, desired, book, now)[0] is not None
        for unit in change.creates:
            key = unit_key(IntentKey.of(job.name, job.generation, change.run, unit.part, unit.retry))
            tokens = job.unit_tokens(unit.part, unit.requests)
            admitted[key] = Admitted(
                provider=job.provider,
                model=job.model,
                tokens=tokens,
                requests=unit.requests,
                limited=limited[model],
            )
    return state.model_copy(update={"queue": book.model_copy(update={"admitted": admitted})})


def with_queue(state: State, plan: Plan, live: Iterable[LiveBatch]) -> State:
    """The state after the pass: the book's places and learnt limits, the estimates of batches
    that finished (or never came) dropped, and each job with held parts and nothing running
    `queued`."""
    book = plan.queue_book
    if book is None:
        return state
    running = {unit_key(b.unit) for b in live if not b.terminal}
    pending = {
        unit_key(IntentKey.of_intent(name, intent))
        for name, job in state.jobs.items()
        for intent in job.pending
    }
    admitted = {k: v for k, v in state.queue.admitted.items() if k in running or k in pending}
    book = book.model_copy(update={"admitted": admitted})
    jobs = dict(state.jobs)
    for name in book.places:
        job = jobs.get(name)
        if job is not None and job.status in QUEUED_FROM:
            jobs[name] = job.model_copy(update={"status": "queued"})
    return state.with_jobs(jobs).model_copy(update={"queue": book})


def as_booked(observed: State, recorded: State) -> State:
    """`observed` (a read that plans nothing: live `status`, an observe-only pass) with each job
    the book holds a place for, recorded `queued`, still `queued` while the live list shows no
    batch of it the state has not recorded (one admitted since speaks for itself): from its
    batches alone it would read as not started, or finished with parts still to send."""
    jobs = dict(observed.jobs)
    for name in recorded.queue.places:
        before, now = recorded.jobs.get(name), observed.jobs.get(name)
        if before is None or now is None or before.status != "queued" or now.status not in QUEUED_FROM:
            continue
        if {b.batch_id for b in now.batches} <= {b.batch_id for b in before.batches}:
            jobs[name] = now.model_copy(update={"status": "queued"})
    return observed.with_jobs(jobs)


# A job with parts held back is `queued` while nothing of it runs: its status would otherwise
# say it had not started, or had finished with parts still to send.
QUEUED_FROM = frozenset(
    {"none", "pending", "completed", "failed", "expired", "cancelled", "collecting", "queued"}
)
