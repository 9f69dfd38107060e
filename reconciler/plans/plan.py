"""Desired specs + recorded state + live owned batches → the changes that converge them.

Pure: no I/O here, so every decision can be read and tested as data.  Observed fields
(status, counts, output ids) never make a change; a finished batch of the current
generation is finished work, not drift.  The per-job decision lives in `decide.py`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

from reconciler.api.batch import LiveBatch
from reconciler.common.errors import PlanRefusedError
from reconciler.plans.changes import Action, DesiredJob, InFlight, Plan, PlanContext, Retryable
from reconciler.plans.decide import plan_job
from reconciler.state.model import State


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
    is behind the commit that last changed the job (engine/checkouts.py) shows why, and does
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
