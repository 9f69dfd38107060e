"""How apply and reconcile tell the user what they did: one line per failure, one summary."""

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
    failed = outcome.failed_jobs
    done = [c for c in plan.changes if c.job not in failed]
    adopted = sum(len(c.adopt) for c in done)
    forgotten = sum(1 for c in done if c.action is Action.FORGET)
    click.echo(
        f"Applied: {outcome.created} created, {outcome.cancelled} cancelled, {adopted} adopted, "
        f"{forgotten} forgotten, {len(failed)} failed; {plural(len(plan.changes), 'job')}."
    )
    return 1 if outcome.failures else 0


def _order(failure: Failure) -> tuple[str, int, int]:
    return (failure.job or "", failure.part or 0, failure.attempt or 0)
