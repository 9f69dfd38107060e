"""`reconciler status`: the recorded state as a table. Asks no provider."""

from __future__ import annotations

import click

from reconciler.cli import render
from reconciler.cli.options import repo_options
from reconciler.cli.render_status import status_json, status_table
from reconciler.engine.workspace import read_recorded
from reconciler.specs.paths import RepoPaths


@click.command()
@repo_options
@click.option("--json", "as_json", is_flag=True, help="Print the state as JSON.")
def command(paths: RepoPaths, as_json: bool) -> int:
    """Show each job's status, request counts, batch and file ids from the state file."""
    state = read_recorded(paths)
    if as_json:
        click.echo(status_json(state))
    else:
        click.echo(status_table(state, colour=render.use_colour()))
    return 0
