"""Budgets: each change whose estimate passes a budget is marked with why, so apply, reconcile and
the daemon refuse that change alone (unless --allow-over-budget) and carry out the rest; a run
whose actual cost passed its budget while running is reported, and cancelled when its spec says
`on_exceed: cancel`.  Pure: no I/O.

The repo-wide `budget.max_usd_per_plan` admits launching changes in plan order (job name order)
while they fit in what is left of it: a change that would pass it, or whose cost cannot be told,
is refused by name, and a later, smaller change may still fit.  A change refused by its own
job's budget takes nothing from the plan's.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

from reconciler.api.batch import LiveBatch
from reconciler.plans.changes import Action, Change, DesiredJob, Plan
from reconciler.plans.cost import unknown_reason, usd
from reconciler.plans.plan import live_by_job
from reconciler.state.model import State

PLAN_BUDGET = "budget.max_usd_per_plan"


def check_budgets(
    plan: Plan,
    desired: Mapping[str, DesiredJob],
    state: State,
    live: Sequence[LiveBatch],
    max_usd_per_plan: float | None,
) -> Plan:
    """The plan with each change over a budget marked (`over_budget`), and runs past their
    budget reported or cancelled."""
    changes: list[Change] = []
    warnings: list[str] = []
    by_job = live_by_job(live)
    for change in plan.changes:
        job = desired.get(change.job)
        if job is not None and job.budget_usd is not None:
            change = _job_budget(change, job, state, by_job.get(job.name, []), warnings)
        changes.append(change)
    if max_usd_per_plan is not None:
        changes = _plan_budget(changes, desired, max_usd_per_plan)
    over = tuple(f"{c.job}: {c.over_budget}" for c in changes if c.mutates and c.over_budget)
    return dataclasses.replace(plan, changes=tuple(changes), warnings=tuple(warnings), over_budget=over)


def _job_budget(
    change: Change, job: DesiredJob, state: State, live: Sequence[LiveBatch], warnings: list[str]
) -> Change:
    """`live`: this job's batches."""
    assert job.budget_usd is not None
    budget = usd(job.budget_usd)
    recorded = state.jobs.get(job.name)
    spent = recorded.cost_usd if recorded and recorded.generation == job.generation else None
    running = [b.id for b in live if b.generation == job.generation and not b.terminal]
    if spent is not None and spent > job.budget_usd and running and change.action is not Action.CANCEL:
        warnings.append(
            f"{job.name}: run cost {usd(spent)} passed spec.budget.max_usd {budget} while running"
        )
        if job.budget_cancels:
            reason = f"run cost {usd(spent)} passed spec.budget.max_usd {budget}; on_exceed: cancel"
            return Change(
                job.name, Action.CANCEL, reason, job.provider, job.generation, cancel=tuple(running)
            )
    if change.estimate is None:
        return change
    upper = change.estimate.upper_usd
    if upper is None:
        return dataclasses.replace(
            change, over_budget=f"spec.budget.max_usd {budget} cannot be checked: {unknown_reason(job)}"
        )
    so_far = spent if spent is not None and change.action is Action.RETRY else 0.0
    if so_far + upper > job.budget_usd:
        spent_text = f"{usd(so_far)} spent + " if so_far else ""
        return dataclasses.replace(
            change, over_budget=f"{spent_text}up to {usd(upper)} exceeds spec.budget.max_usd {budget}"
        )
    return change


def _plan_budget(changes: list[Change], desired: Mapping[str, DesiredJob], limit: float) -> list[Change]:
    """First fit, in plan order: each launching change is admitted while it fits in what is left."""
    admitted = 0.0
    checked: list[Change] = []
    for change in changes:
        if not change.mutates or change.estimate is None or change.over_budget:
            checked.append(change)
            continue
        upper = change.estimate.upper_usd
        where = f"{PLAN_BUDGET} {usd(limit)} (reconciler.yaml)"
        if upper is None:
            reason = f"{where} cannot be checked: {unknown_reason(desired[change.job])}"
        elif admitted + upper > limit:
            reason = f"up to {usd(upper)} does not fit in {where}: {usd(admitted)} of it already planned"
        else:
            admitted += upper
            checked.append(change)
            continue
        checked.append(dataclasses.replace(change, over_budget=reason))
    return checked


def refused(plan: Plan) -> dict[str, str]:
    """Job → why its change is over a budget: what apply leaves out unless --allow-over-budget."""
    return {c.job: c.over_budget for c in plan.pending if c.over_budget}


def without_refused(plan: Plan) -> Plan:
    """The plan with each refused change turned into a noop: nothing sent for it, and the job is
    still recorded as observed."""
    changes = tuple(
        dataclasses.replace(c, action=Action.NOOP, cancel=(), adopt=(), creates=(), launch_requests=0)
        if c.mutates and c.over_budget
        else c
        for c in plan.changes
    )
    return dataclasses.replace(plan, changes=changes)
