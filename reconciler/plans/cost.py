"""What a change costs before it runs: tokens estimated from the input, priced per model.

Input tokens are an estimate (specs/inputs/tokens.py); output is an upper bound, the limits the
requests set themselves ("up to"). A part or a retry takes its share of the job's figures in
proportion to its requests. Plain arithmetic: no I/O.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from datetime import date
from typing import TypeVar

from reconciler.common.usage import TOKENS_PER_PRICE_UNIT
from reconciler.plans.changes import CostEstimate, DesiredJob, Plan, TablePrices
from reconciler.specs.prices import unpriced_reason

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
    changes = tuple(
        dataclasses.replace(c, estimate=estimate(desired[c.job], c.launch_requests))
        if c.launch_requests and c.job in desired
        else c
        for c in plan.changes
    )
    return dataclasses.replace(plan, changes=changes)


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


def unknown_reason(job: DesiredJob) -> str:
    """Why a job's cost cannot be told."""
    if job.prices is None:
        why = unpriced_reason(job.model)
        left_out = f" (the shipped price table leaves it out: {why})" if why else ""
        return f"no price for {job.model or 'its model'}{left_out}; add it to the Provider's pricing"
    return (
        f"{job.unbounded:,} requests set no max_tokens and {job.model}'s output cap is unknown; "
        "set max_tokens, or max_output_tokens in the Provider's pricing"
    )


def usd(amount: float) -> str:
    """$1.84; an amount under ten cents keeps two significant digits, to be told from zero."""
    if amount >= 0.1 or amount == 0:
        return f"${amount:,.2f}"
    if amount < 1e-6:
        return "<$0.000001"
    return f"${float(f'{amount:.2g}'):.7f}".rstrip("0")


def cost_text(estimate: CostEstimate) -> str:
    """`~$1.84 (input) + up to $3.10 (output)`, or why a part of it cannot be told."""
    if estimate.input_usd is None:
        return "no price"
    text = f"~{usd(estimate.input_usd)} (input)"
    if estimate.output_usd is None:
        return f"{text} + output unbounded"
    return f"{text} + up to {usd(estimate.output_usd)} (output)" if estimate.output_tokens else text
