"""Carries out a plan: cancels, then creates, then records; apply/ is the only code that
changes anything at a provider (intents.py, cleanup.py and leftovers.py are the rest of it).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor

from reconciler.common.errors import ApiError, ApiStatusError
from reconciler.engine.apply.effects import Effects, Outcome
from reconciler.engine.apply.failures import Failure
from reconciler.engine.apply.intents import create_all
from reconciler.engine.apply.leftovers import Leftovers
from reconciler.plans.changes import Action, DesiredJob, LiveBatch, Plan
from reconciler.plans.record import record, with_applied_from
from reconciler.state.model import AppliedFrom, State


def apply_plan(
    plan: Plan,
    desired: Mapping[str, DesiredJob],
    live: Sequence[LiveBatch],
    state: State,
    fx: Effects,
    untouched: Collection[str] = (),
    behind: Collection[str] = (),
    commit: AppliedFrom | None = None,
) -> tuple[State, Outcome]:
    """The state to record after the plan, not yet written: the pass writes it once, after
    finishing (a crash before that loses nothing: create intents were written before their
    POST).  `untouched`: jobs outside --target, recorded as they were; `behind`: jobs left to a
    newer checkout, only observed; `commit`: where the changes made here are recorded as from."""
    outcome = Outcome()
    leftovers = fx.leftovers or Leftovers.after(state, fx.apis, fx.owner_tag)
    workers = workers_for(plan, fx.parallelism)
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="apply") as pool:
        by_id = {b.id: b for b in live}  # once: at 100,000 batches each copy is a share of a small pass
        cancel_failed = _cancel_all(plan, by_id, fx, pool, outcome)
        creates = [c for c in plan.pending if c.creates and c.job not in cancel_failed]
        state = create_all(creates, desired, state, fx, pool, outcome, leftovers)
    merged = by_id | {b.id: b for b in outcome.touched}
    forgotten = [c.job for c in plan.pending if c.action is Action.FORGET]
    runs = {c.job: c.run for c in plan.changes}
    missed = {c.job: c.missed_slot for c in plan.changes if c.missed_slot}
    observed = list(merged.values())
    now = fx.now()
    state = record(
        desired,
        state,
        observed,
        forgotten=forgotten,
        now=now,
        runs=runs,
        untouched=untouched,
        missed=missed,
        observed_only=behind,
    )
    changed = [c.job for c in plan.pending if c.action is not Action.FORGET]
    state = with_applied_from(state, changed, forgotten, commit)
    outcome.failures += leftovers.sweep_all(desired, observed, state)
    return state, outcome


def workers_for(plan: Plan, parallelism: int) -> int:
    """Threads for the pool: one per cancel or create to send, up to `parallelism`."""
    requests = sum(len(change.cancel) + len(change.creates) for change in plan.pending)
    return max(1, min(parallelism, requests))


def _cancel_all(
    plan: Plan, by_id: Mapping[str, LiveBatch], fx: Effects, pool: ThreadPoolExecutor, outcome: Outcome
) -> set[str]:
    targets = [(c.job, by_id[i]) for c in plan.pending for i in c.cancel if i in by_id]

    def cancel(target: tuple[str, LiveBatch]) -> tuple[str, LiveBatch | Failure]:
        job, live = target
        try:
            batch = fx.writer(live.provider).cancel_batch(live.id)
        except ApiError as error:
            if isinstance(error, ApiStatusError) and error.status == 409:
                return job, live  # finished meanwhile: nothing left to stop
            return job, Failure.of(
                error,
                job=job,
                step="cancel",
                part=live.part,
                attempt=live.retry,
                batch_id=live.id,
                provider=live.provider,
            )
        return job, LiveBatch.of(live.provider, batch)

    failed: set[str] = set()
    for job, result in pool.map(cancel, targets):
        if isinstance(result, Failure):
            outcome.failures.append(result)
            failed.add(job)
        else:
            outcome.touched.append(result)
            outcome.cancelled += 1
    return failed
