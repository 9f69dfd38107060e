"""`reconciler status [JOB]`: the state file as a table, or one job and its runs. Reads no network."""

from __future__ import annotations

import click

from reconciler.cli import render
from reconciler.cli.options import repo_options, target_options
from reconciler.cli.render_status import job_detail, status_json, status_table
from reconciler.common.errors import UserError
from reconciler.specs.paths import RepoPaths
from reconciler.state.file import read_state


@click.command()
@repo_options
@target_options
@click.argument("job", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print the state as JSON.")
def command(paths: RepoPaths, targets: tuple[str, ...], job: str | None, as_json: bool) -> int:
    """Show each job's status, request counts, batch and file ids from the state file;
    with JOB, that job's current run and its run history."""
    state = read_state(paths.state)
    wanted = {*targets, *([job] if job else [])}
    for name in sorted(wanted - set(state.jobs)):
        raise UserError(f"{name}: no job of that name in the state; `reconciler status` lists them")
    if wanted:
        state = state.with_jobs({name: state.jobs[name] for name in wanted})
    if as_json:
        click.echo(status_json(state))
    elif job is not None and not targets:
        click.echo(job_detail(job, state.jobs[job], colour=render.use_colour()))
    else:
        click.echo(status_table(state, colour=render.use_colour()))
    return 0
