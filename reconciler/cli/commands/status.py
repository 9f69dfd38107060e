"""`reconciler status [JOB…]`: each job's status, sync and progress; `status JOB` for one in detail,
with its runs."""

from __future__ import annotations

import time

import click

from reconciler.cli import render
from reconciler.cli.options import complete_jobs, owner_option, repo_options, target_options
from reconciler.cli.render_status import only, status_detail, status_json, status_table, status_view
from reconciler.common.errors import UserError
from reconciler.specs.repo import RepoPaths


@click.command()
@repo_options
@owner_option
@target_options
@click.argument("jobs", nargs=-1, metavar="[JOB]...", shell_complete=complete_jobs)
@click.option("--json", "as_json", is_flag=True, help="Print the state as JSON.")
@click.option(
    "--refresh",
    is_flag=True,
    help="Observe the live batch list first (read-only; the state file is not written).",
)
@click.option("--save", is_flag=True, help="With --refresh: also record what was observed in the state file.")
def command(
    paths: RepoPaths,
    owner: str | None,
    targets: tuple[str, ...],
    jobs: tuple[str, ...],
    as_json: bool,
    refresh: bool,
    save: bool,
) -> int:
    """Show each job's status, sync with its spec, progress and results; JOB for the detail.

    JOB shows its batches and its runs; --target limits the table to some jobs.  Reads the
    state file and the specs; with --refresh, the provider's live list too."""
    if save and not refresh:
        raise UserError("--save applies only with --refresh")
    view = only(status_view(paths, refresh=refresh, save=save, owner_flag=owner), targets)
    if as_json:
        click.echo(status_json(view.state, jobs))
    elif jobs:
        now = time.time()
        click.echo("\n\n".join(status_detail(view, name, now) for name in jobs))
    else:
        click.echo(status_table(view, colour=render.use_colour()))
    return 0
