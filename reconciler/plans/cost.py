"""What a change costs before it runs, and the budgets it must fit.  Pure: plain arithmetic, no I/O.

Tokens are estimated from the input and priced per model.  Input tokens are an estimate
(specs/inputs/tokens.py); output is an upper bound, the limits the requests set themselves
("up to"). A part or a retry takes its share of the job's figures in proportion to its
requests.

Budgets: each change whose estimate passes a budget is marked with why, so apply, reconcile
and the daemon refuse that change alone (unless --allow-over-budget) and carry out the rest; a
run whose actual cost passed its budget while running is reported, and cancelled when its spec
says `on_exceed: cancel`.  The repo-wide `budget.max_usd_per_plan` admits launching changes in
plan order (job name order) while they fit in what is left of it: a change that would pass it,
or whose cost cannot be told, is refused by name, and a later, smaller change may still fit.  A
change refused by its own job's budget takes nothing from the plan's.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from datetime import date
from typing import TypeVar

from reconciler.common.usage import TOKENS_PER_PRICE_UNIT
from reconciler.plans.changes import Action, Change, CostEstimate, DesiredJob, LiveBatch, Plan, TablePrices
from reconciler.plans.decide import live_by_job
from reconciler.plans.reasons import BudgetPassed, CostUnknown, OverBudget
from reconciler.specs.price_table import unpriced_reason
from reconciler.state.model import State

_Number = TypeVar("_Number", int, float)


def estimate(job: DesiredJob, requests: int) -> CostEstimate:
    """The cost of launching `requests` of `job`'s requests."""
    share = requests / job.requests if job.requests else 0.0
    input_tokens = job.estimated_tokens(requests)
    output_tokens: int | None = round(job.output_tokens * share)
    unbounded = -(-job.unbounded * requests // job.requests) if job.requests else 0
    prices = job.prices
    if unbounded:
        cap = prices.max_output_tokens if prices else None
        output_tokens = None if cap is None else (output_tokens or 0) + unbounded * cap
    if prices is None:
        return CostEstimate(input_tokens, output_tokens, None, None)
    output_usd = None if output_tokens is None else output_tokens * prices.output / TOKENS_PER_PRICE_UNIT
    return CostEstimate(
        input_tokens, output_tokens, input_tokens * prices.input / TOKENS_PER_PRICE_UNIT, output_usd
    )


def with_estimates(plan: Plan, desired: Mapping[str, DesiredJob]) -> Plan:
    """The plan with each launching change's estimate filled in."""
    changes = tuple(_estimated(c, desired[c.job]) if c.job in desired else c for c in plan.changes)
    return dataclasses.replace(plan, changes=changes)


def _estimated(change: Change, job: DesiredJob) -> Change:
    """Only what is sent is estimated (and budgeted); what the reused answers saved is said apart."""
    if change.launch_requests:
        change = dataclasses.replace(change, estimate=estimate(job, change.launch_requests))
    if change.reused is not None and change.reused.requests:
        change = dataclasses.replace(change, saved=estimate(job, change.reused.requests))
    return change


def with_table_prices(plan: Plan, desired: Mapping[str, DesiredJob], today: date) -> Plan:
    """The plan saying which launches were priced from the shipped table, and when its figures
    were taken: `today` is the reconciler's clock, against which they may be old."""
    models: dict[date, set[str]] = {}
    for change in plan.pending:
        job = desired.get(change.job)
        if change.estimate is not None and job is not None and job.price_taken is not None:
            models.setdefault(job.price_taken, set()).add(job.model)
    used = tuple(
        TablePrices(taken, tuple(sorted(names)), (today - taken).days)
        for taken, names in sorted(models.items())
    )
    return dataclasses.replace(plan, table_prices=used)


def plan_total(plan: Plan) -> CostEstimate | None:
    """Every launching change added up; None when nothing is launched."""
    estimates = [c.estimate for c in plan.pending if c.estimate is not None]
    if not estimates:
        return None
    return CostEstimate(
        sum(e.input_tokens for e in estimates),
        _sum_or_none([e.output_tokens for e in estimates]),
        _sum_or_none([e.input_usd for e in estimates]),
        _sum_or_none([e.output_usd for e in estimates]),
    )


def _sum_or_none(values: list[_Number | None]) -> _Number | None:
    """The sum, or None when any term is unknown."""
    known = [v for v in values if v is not None]
    return sum(known[1:], known[0]) if len(known) == len(values) and known else None


def cost_unknown(job: DesiredJob) -> CostUnknown:
    """Why a job's cost cannot be told."""
    if job.prices is None:
        return CostUnknown(job.model, left_out=unpriced_reason(job.model))
    return CostUnknown(job.model, unbounded=job.unbounded)


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
    warnings: list[BudgetPassed] = []
    by_job = live_by_job(live)
    for change in plan.changes:
        job = desired.get(change.job)
        if job is not None and job.budget_usd is not None:
            change = _job_budget(change, job, state, by_job.get(job.name, []), warnings)
        changes.append(change)
    if max_usd_per_plan is not None:
        changes = _plan_budget(changes, desired, max_usd_per_plan)
    return dataclasses.replace(plan, changes=tuple(changes), warnings=tuple(warnings))


def _job_budget(
    change: Change, job: DesiredJob, state: State, live: Sequence[LiveBatch], warnings: list[BudgetPassed]
) -> Change:
    """`live`: this job's batches."""
    assert job.budget_usd is not None
    budget = job.budget_usd
    recorded = state.jobs.get(job.name)
    spent = recorded.cost_usd if recorded and recorded.generation == job.generation else None
    running = [b.id for b in live if b.generation == job.generation and not b.terminal]
    if spent is not None and spent > budget and running and change.action is not Action.CANCEL:
        passed = BudgetPassed(job.name, spent, budget, job.budget_cancels)
        warnings.append(passed)
        if job.budget_cancels:
            return Change(
                job.name, Action.CANCEL, passed, job.provider, job.generation, cancel=tuple(running)
            )
    if change.estimate is None:
        return change
    upper = change.estimate.upper_usd
    if upper is None:
        return dataclasses.replace(change, over_budget=OverBudget("job", budget, unknown=cost_unknown(job)))
    so_far = spent if spent is not None and change.action is Action.RETRY else 0.0
    if so_far + upper > budget:
        return dataclasses.replace(change, over_budget=OverBudget("job", budget, upper, spent_usd=so_far))
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
        if upper is None:
            over = OverBudget("plan", limit, unknown=cost_unknown(desired[change.job]))
        elif admitted + upper > limit:
            over = OverBudget("plan", limit, upper, planned_usd=admitted)
        else:
            admitted += upper
            checked.append(change)
            continue
        checked.append(dataclasses.replace(change, over_budget=over))
    return checked


def refused(plan: Plan) -> dict[str, OverBudget]:
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
