"""How apply and reconcile tell the user what they did: one line per failure, one summary."""

from __future__ import annotations

import click

from reconciler.cli.render import plural
from reconciler.engine.apply.effects import Outcome
from reconciler.plans.changes import Action, Plan


def report_outcome(plan: Plan, outcome: Outcome) -> int:
    for job, reason in sorted(outcome.failures.items()):
        click.echo(f"error: {job}: {reason}", err=True)
    done = [c for c in plan.changes if c.job not in outcome.failures]
    adopted = sum(len(c.adopt) for c in done)
    forgotten = sum(1 for c in done if c.action is Action.FORGET)
    click.echo(
        f"Applied: {outcome.created} created, {outcome.cancelled} cancelled, {adopted} adopted, "
        f"{forgotten} forgotten, {len(outcome.failures)} failed; {plural(len(plan.changes), 'job')}."
    )
    return 1 if outcome.failures else 0
