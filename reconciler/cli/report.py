"""How apply and reconcile tell the user what they did: one line per failure or change refused
over its budget, one summary."""

from __future__ import annotations

import click

from reconciler.cli.render import plural
from reconciler.engine.apply.effects import Outcome
from reconciler.engine.apply.failures import Failure, describe
from reconciler.plans.changes import Action, Plan


def report_outcome(plan: Plan, outcome: Outcome) -> int:
    """An `error:` line per failure (every part of a job), then the summary; the exit code."""
    for failure in sorted(outcome.failures, key=_order):
        click.echo(f"error: {describe(failure)}", err=True)
    for job, reason in sorted(outcome.over_budget.items()):
        click.echo(f"error: {job}: over budget, not sent: {reason}", err=True)
    if outcome.over_budget:
        them = "them" if len(outcome.over_budget) > 1 else "it"
        click.echo(f"error: pass --allow-over-budget to send {them} anyway", err=True)
    failed = outcome.failed_jobs
    done = [c for c in plan.changes if c.job not in failed and c.job not in outcome.over_budget]
    adopted = sum(len(c.adopt) for c in done)
    forgotten = sum(1 for c in done if c.action is Action.FORGET)
    refused = f", {len(outcome.over_budget)} refused over budget" if outcome.over_budget else ""
    click.echo(
        f"Applied: {outcome.created} created, {outcome.cancelled} cancelled, {adopted} adopted, "
        f"{forgotten} forgotten, {len(failed)} failed{refused}; {plural(len(plan.changes), 'job')}."
    )
    return 1 if outcome.failures or outcome.over_budget else 0


def _order(failure: Failure) -> tuple[str, int, int]:
    return (failure.job or "", failure.part or 0, failure.attempt or 0)
