"""What runs used and cost, as `status` shows it: a job's cells and a line per provider."""

from __future__ import annotations

from reconciler.common.usage import TokenUsage
from reconciler.plans.cost import usd
from reconciler.state.model import JobState, State


def usage_cells(job: JobState) -> tuple[str, str]:
    """(tokens in/out, cost) of the job's current run; `-` before any batch has finished."""
    if not job.usage:
        return "-", "-"
    total = job.total_usage
    return f"{_short(total.input)}/{_short(total.output)}", _cost(job.cost_usd, total)


def usage_lines(state: State) -> list[str]:
    """One line per provider: its jobs' current runs added up."""
    by_provider: dict[str, tuple[TokenUsage, float | None]] = {}
    for job in state.jobs.values():
        if job.usage:
            usage, cost = by_provider.get(job.provider, (TokenUsage(), 0.0))
            job_cost = job.cost_usd
            total = None if cost is None or job_cost is None else cost + job_cost
            by_provider[job.provider] = (usage.plus(job.total_usage), total)
    return [
        f"Usage {provider}: {u.input:,} input tokens ({u.cached_input:,} cached), "
        f"{u.output:,} output ({u.reasoning:,} reasoning), {u.requests:,} requests: {_cost(cost, u)}"
        for provider, (u, cost) in sorted(by_provider.items())
    ]


def _cost(cost: float | None, usage: TokenUsage) -> str:
    if cost is None:
        return "no price"
    return f"≥{usd(cost)}" if usage.unread else usd(cost)


def _short(count: int) -> str:
    for suffix, size in (("M", 1_000_000), ("k", 1_000)):
        if count >= size:
            return f"{count / size:.1f}{suffix}"
    return str(count)
