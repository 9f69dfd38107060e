"""Budgets: a plan whose estimate passes one is marked, so apply, reconcile and the daemon refuse
it (unless --allow-over-budget); a run whose actual cost passed its budget while running is
reported, and cancelled when its spec says `on_exceed: cancel`. Pure: no I/O.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

from reconciler.api.batch import LiveBatch
from reconciler.plans.changes import Action, Change, DesiredJob, Plan
from reconciler.plans.cost import plan_total, unknown_reason, usd
from reconciler.plans.plan import live_by_job
from reconciler.state.model import State


def check_budgets(
    plan: Plan,
    desired: Mapping[str, DesiredJob],
    state: State,
    live: Sequence[LiveBatch],
    max_usd_per_plan: float | None,
) -> Plan:
    """The plan with every budget it passes named, and runs past their budget reported or cancelled."""
    changes: list[Change] = []
    warnings: list[str] = []
    by_job = live_by_job(live)
    for change in plan.changes:
        job = desired.get(change.job)
        if job is not None and job.budget_usd is not None:
            change = _job_budget(change, job, state, by_job.get(job.name, []), warnings)
        changes.append(change)
    checked = dataclasses.replace(plan, changes=tuple(changes), warnings=tuple(warnings))
    over = [f"{c.job}: {c.over_budget}" for c in checked.pending if c.over_budget]
    if max_usd_per_plan is not None:
        over += _plan_budget(checked, desired, max_usd_per_plan)
    return dataclasses.replace(checked, over_budget=tuple(over))


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


def _plan_budget(plan: Plan, desired: Mapping[str, DesiredJob], limit: float) -> list[str]:
    total = plan_total(plan)
    if total is None:
        return []
    upper = total.upper_usd
    if upper is None:
        unknown = sorted({c.job for c in plan.pending if c.estimate and c.estimate.upper_usd is None})
        reasons = "; ".join(f"{name}: {unknown_reason(desired[name])}" for name in unknown if name in desired)
        return [f"budget.max_usd_per_plan {usd(limit)} cannot be checked: {reasons}"]
    if upper > limit:
        return [
            f"the plan launches up to {usd(upper)}, "
            f"over budget.max_usd_per_plan {usd(limit)} (reconciler.yaml)"
        ]
    return []
