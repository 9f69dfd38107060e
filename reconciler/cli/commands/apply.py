"""`reconciler apply [PLANFILE]`: carry out a fresh plan (after asking) or exactly a saved one.

Its first request is the list of batches, sent as soon as the specs and inputs are checked and
the owner's lock is held; the jobs are built, the state read and the rest of the pass's code
imported while the list is read (what a pass needs beyond the specs is imported inside the
functions below for that reason)."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import click

from reconciler.cli.options import (
    allow_over_budget_option,
    parallelism_option,
    planning_options,
    repo_options,
)
from reconciler.common.errors import PlanRefusedError, UserError
from reconciler.common.limits import DEFAULT_PARALLELISM
from reconciler.engine.connect import open_clients
from reconciler.engine.workspace import (
    Scope,
    check_specs,
    load_state,
    named_in_specs,
    providers_of,
    writer_locked,
)
from reconciler.specs.repo import RepoPaths

if TYPE_CHECKING:
    from reconciler.plans.changes import Plan


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
    saved = _load_plan(planfile) if planfile else None
    scope: Scope | None = None  # made once the list is sent: its stamp loads the planner's code
    if saved is not None:
        if targets or replace:
            raise UserError("a saved plan brings its own --target and --replace; give them to `plan --out`")
        scope = _saved_scope(saved, no_reuse)
    checked = check_specs(paths, owner)  # every mistake in the specs and inputs: nothing sent yet
    # The owner's lock, then the list: a list read before the lock could miss a batch another
    # writer of this owner makes meanwhile, and the pass would make a second one.
    with contextlib.ExitStack() as stack:
        backend = stack.enter_context(writer_locked(paths, checked.owner_tag, "reconciler apply"))
        clients = stack.enter_context(open_clients(checked.repo, providers_of(checked.repo), paths))
        named = (scope.targets or (), scope.replace) if scope else (targets, replace)
        if named_in_specs(checked.repo.jobs, *named):  # else a name only the state may know is checked first
            for api in clients.values():
                api.reader.start_listing()
        from reconciler.engine.converge import converge  # loads while the list is read

        scope = scope or Scope.of(targets, replace, no_reuse=no_reuse)
        ws = checked.workspace()
        recorded = ws.providers(load_state(ws, backend=backend)) - clients.keys()
        if recorded:  # a recorded job's provider no spec uses any more: its batches are listed too
            clients |= stack.enter_context(open_clients(ws.repo, recorded, paths))
        plan, _, outcome = converge(
            ws,
            clients,
            command="reconciler apply",
            allow_empty=allow_empty,
            parallelism=parallelism,
            confirm=_confirmation(saved, planfile, ws.owner_tag, auto_approve),
            allow_over_budget=allow_over_budget,
            scope=scope,
            early_leftovers=auto_approve or saved is not None,  # not when it may well be refused
            held=backend,
        )
    from reconciler.cli.render import report_outcome
    from reconciler.engine.events import EventLog
    from reconciler.engine.notify.courier import NotifyBudget, announce

    announce(ws, EventLog("text", sys.stdout), "reconciler apply", NotifyBudget())
    return report_outcome(plan, outcome)


def _load_plan(planfile: str) -> dict[str, Any]:
    from reconciler.cli.render import load_plan

    return load_plan(planfile)


def _saved_scope(saved: dict[str, Any], no_reuse: bool) -> Scope:
    from reconciler.plans.plan_document import saved_scope

    targets, replace, stamp = saved_scope(saved)
    if stamp is None:
        return Scope(targets, replace, no_reuse=no_reuse)
    return Scope(targets, replace, stamp, no_reuse=no_reuse)  # the runs the saved plan showed, whenever


def _confirmation(
    saved: dict[str, Any] | None, planfile: str | None, owner_tag: str, auto_approve: bool
) -> Callable[[Plan], None]:
    if saved is not None and planfile is not None:
        from reconciler.plans.plan_document import check_still_holds

        saved_plan, path = saved, planfile

        def confirm(plan: Plan) -> None:
            check_still_holds(saved_plan, plan, owner_tag=owner_tag, path=path)

        return confirm
    return _show if auto_approve else _ask if sys.stdin.isatty() else _refuse_changes


def _show(plan: Plan) -> None:
    from reconciler.cli import render

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
