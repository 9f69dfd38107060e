"""`reconciler plan`: refresh live state and show the changes, sending nothing that mutates."""

from __future__ import annotations

import click

from reconciler.cli import render
from reconciler.cli.options import planning_options, repo_options
from reconciler.cli.render import save_plan
from reconciler.common.errors import UserError
from reconciler.engine.connect import open_clients
from reconciler.engine.converge import readers_of, refresh_and_plan
from reconciler.engine.workspace import Scope, load_state, prepare
from reconciler.plans.cost import refused
from reconciler.plans.reasons import OverBudget
from reconciler.plans.wording import over_budget_words
from reconciler.specs.repo import RepoPaths


@click.command()
@repo_options
@planning_options
@click.option("--json", "as_json", is_flag=True, help="Print the plan as one JSON document.")
@click.option(
    "--format",
    "output_format",
    type=click.Choice(["text", "json", "markdown"]),
    default="text",
    show_default=True,
    help="markdown suits a pull-request comment or $GITHUB_STEP_SUMMARY.",
)
@click.option("--out", metavar="FILE", help="Save the plan for `reconciler apply FILE`.")
@click.option(
    "--detailed-exitcode",
    is_flag=True,
    help="Exit 2 when there are changes, 0 when none, 1 when apply would refuse one over a budget.",
)
@click.option("-v", "--verbose", is_flag=True, help="List jobs in sync too.")
def command(
    paths: RepoPaths,
    owner: str | None,
    allow_empty: bool,
    targets: tuple[str, ...],
    replace: tuple[str, ...],
    no_reuse: bool,
    as_json: bool,
    output_format: str,
    out: str | None,
    detailed_exitcode: bool,
    verbose: bool,
) -> int:
    """Show what apply would do. Read-only: no batch is created or cancelled."""
    if as_json and output_format not in ("text", "json"):
        raise UserError(f"--json and --format {output_format} ask for two formats; pass one of them")
    ws = prepare(paths, owner)
    state = load_state(ws)
    scope = Scope.of(targets, replace, no_reuse=no_reuse)
    with open_clients(ws.repo, ws.providers(state), paths) as apis:
        plan = refresh_and_plan(
            ws, readers_of(apis), state, allow_empty=allow_empty, scope=scope, read_only=True
        ).plan
    if as_json or output_format == "json":
        click.echo(
            render.plan_json(
                plan,
                owner_tag=ws.owner_tag,
                lineage=state.lineage,
                targets=scope.targets,
                replace=scope.replace,
                stamp=scope.stamp,
            )
        )
    elif output_format == "markdown":
        click.echo(render.plan_markdown(plan), nl=False)
    else:
        click.echo(render.plan_text(plan, colour=render.use_colour(), verbose=verbose))
    if out:
        save_plan(
            out,
            plan,
            owner_tag=ws.owner_tag,
            lineage=state.lineage,
            targets=scope.targets,
            replace=scope.replace,
            stamp=scope.stamp,
        )
    if detailed_exitcode:
        return _detailed_exit(refused(plan), bool(plan.pending))
    return 0


def _detailed_exit(over_budget: dict[str, OverBudget], changes: bool) -> int:
    """2 means "changes, all of which apply carries out": a plan apply would partly refuse is a
    failed check (1), not a green one."""
    for job, over in sorted(over_budget.items()):
        click.echo(f"error: {job}: over budget, apply would refuse it: {over_budget_words(over)}", err=True)
    if over_budget:
        return 1
    return 2 if changes else 0
