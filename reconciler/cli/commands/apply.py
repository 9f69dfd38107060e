"""`reconciler apply [PLANFILE]`: carry out a fresh plan (after asking) or exactly a saved one."""

from __future__ import annotations

import sys
from collections.abc import Callable

import click

from reconciler.cli import render
from reconciler.cli.options import (
    allow_over_budget_option,
    parallelism_option,
    planning_options,
    repo_options,
)
from reconciler.cli.render import load_plan, report_outcome
from reconciler.common.errors import PlanRefusedError, UserError
from reconciler.engine.apply.effects import DEFAULT_PARALLELISM
from reconciler.engine.connect import open_clients
from reconciler.engine.converge import converge
from reconciler.engine.events import EventLog
from reconciler.engine.notify.courier import NotifyBudget, announce
from reconciler.engine.workspace import Scope, load_state, prepare
from reconciler.plans.changes import Plan
from reconciler.plans.plan_document import check_still_holds, saved_scope
from reconciler.specs.repo import RepoPaths


@click.command()
@repo_options
@planning_options
@allow_over_budget_option
@click.argument("planfile", required=False)
@click.option("--auto-approve", is_flag=True, help="Do not ask before applying.")
@parallelism_option(DEFAULT_PARALLELISM)
def command(
    paths: RepoPaths,
    owner: str | None,
    allow_empty: bool,
    allow_over_budget: bool,
    targets: tuple[str, ...],
    replace: tuple[str, ...],
    no_reuse: bool,
    planfile: str | None,
    auto_approve: bool,
    parallelism: int,
) -> int:
    """Create and cancel batches so the provider matches the specs."""
    saved = load_plan(planfile) if planfile else None
    scope = Scope.of(targets, replace, no_reuse=no_reuse)
    if saved is not None:
        if targets or replace:
            raise UserError("a saved plan brings its own --target and --replace; give them to `plan --out`")
        targets_then, replace_then, stamp = saved_scope(saved)
        scope = Scope(targets_then, replace_then, no_reuse=no_reuse)
        if stamp is not None:  # the runs the saved plan showed, whenever it is applied
            scope = Scope(targets_then, replace_then, stamp, no_reuse=no_reuse)
    ws = prepare(paths, owner)
    confirm: Callable[[Plan], None]
    if saved is not None and planfile is not None:
        saved_plan, path = saved, planfile

        def confirm(plan: Plan) -> None:
            check_still_holds(saved_plan, plan, owner_tag=ws.owner_tag, path=path)
    else:
        confirm = _show if auto_approve else _ask if sys.stdin.isatty() else _refuse_changes
    with open_clients(ws.repo, ws.providers(load_state(ws)), paths) as clients:
        plan, _, outcome = converge(
            ws,
            clients,
            command="reconciler apply",
            allow_empty=allow_empty,
            parallelism=parallelism,
            confirm=confirm,
            allow_over_budget=allow_over_budget,
            scope=scope,
            early_leftovers=auto_approve or saved is not None,  # not when it may well be refused
        )
    announce(ws, EventLog("text", sys.stdout), "reconciler apply", NotifyBudget())
    return report_outcome(plan, outcome)


def _show(plan: Plan) -> None:
    click.echo(render.plan_text(plan, colour=render.use_colour()))


def _refuse_changes(plan: Plan) -> None:
    """Off a terminal nobody can answer: a plan with changes is refused, one without is done."""
    _show(plan)
    if plan.pending:
        raise UserError("apply asks before changing anything: pass --auto-approve, or a saved plan file")


def _ask(plan: Plan) -> None:
    _show(plan)
    if plan.pending and not click.confirm("Apply these changes?", default=False):
        raise PlanRefusedError("apply cancelled; nothing was changed")
