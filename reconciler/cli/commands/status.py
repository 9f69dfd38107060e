"""`reconciler status [JOB…]`: each job's status, sync and progress; `status JOB` for one in detail,
with its runs."""

from __future__ import annotations

import time

import click

from reconciler.cli import render
from reconciler.cli.options import complete_jobs, owner_option, repo_options, target_options
from reconciler.cli.render_status import (
    LIVE_SECONDS,
    Reading,
    only,
    status_detail,
    status_json,
    status_table,
    status_view,
)
from reconciler.common.errors import UserError
from reconciler.specs.repo import RepoPaths


@click.command()
@repo_options
@owner_option
@target_options
@click.argument("jobs", nargs=-1, metavar="[JOB]...", shell_complete=complete_jobs)
@click.option("--json", "as_json", is_flag=True, help="Print the state as JSON.")
@click.option(
    "--offline",
    is_flag=True,
    help="Show the state as recorded, asking the provider nothing.",
)
@click.option(
    "--refresh",
    is_flag=True,
    help="Wait for the live batch list however long the provider takes, and fail without it "
    f"(by default status waits {LIVE_SECONDS:.0f}s, then shows the recorded figures with a note).",
)
@click.option("--save", is_flag=True, help="Also record what was observed in the state file.")
def command(
    paths: RepoPaths,
    owner: str | None,
    targets: tuple[str, ...],
    jobs: tuple[str, ...],
    as_json: bool,
    offline: bool,
    refresh: bool,
    save: bool,
) -> int:
    """Show each job's status, sync with its spec, progress and results; JOB for the detail.

    Live: the state with the provider's batch list observed over it, read-only (nothing is
    written but with --save).  JOB shows its batches and its runs; --target limits the table to
    some jobs."""
    if offline and (refresh or save):
        raise UserError(
            f"--offline asks the provider nothing; drop it or {'--save' if save else '--refresh'}"
        )
    reading: Reading = "offline" if offline else "save" if save else "refresh" if refresh else "live"
    view = only(status_view(paths, reading=reading, owner_flag=owner, named=jobs, targets=targets), targets)
    if as_json:
        click.echo(status_json(view.state, jobs))
    elif jobs:
        now = time.time()
        click.echo("\n\n".join(status_detail(view, name, now) for name in jobs))
    else:
        click.echo(status_table(view, colour=render.use_colour()))
    if view.note:
        click.echo(f"note: {view.note}", err=True)
    return 0
