"""`reconciler reconcile`: refresh, plan and apply without asking; record what was observed."""

from __future__ import annotations

import itertools
import time

import click

from reconciler import render
from reconciler.apply import DEFAULT_PARALLELISM, Outcome
from reconciler.batches import is_terminal
from reconciler.commands.report import report_outcome
from reconciler.connect import open_clients
from reconciler.errors import UserError
from reconciler.options import RepoPaths, allow_empty_option, owner_option, repo_options
from reconciler.reconcile import Workspace, converge, load_state, prepare
from reconciler.state import State

WAIT_POLL_SECONDS = 1.0


@click.command()
@repo_options
@owner_option
@allow_empty_option
@click.option(
    "--rebuild-state", is_flag=True, help="Set the state file aside and rebuild it from the live list."
)
@click.option("--wait", is_flag=True, help="Keep reconciling until every job's batches are finished.")
@click.option(
    "--timeout", default=3600.0, show_default=True, type=click.FloatRange(0), help="Seconds --wait waits."
)
@click.option("--parallelism", default=DEFAULT_PARALLELISM, show_default=True, type=click.IntRange(1, 256))
def command(
    paths: RepoPaths,
    owner: str | None,
    allow_empty: bool,
    rebuild_state: bool,
    wait: bool,
    timeout: float,
    parallelism: int,
) -> int:
    """Converge once: create what is missing, cancel what should not run, record status."""
    ws = prepare(paths, owner)
    providers = {j.provider for j in ws.desired.values()} if rebuild_state else ws.providers(load_state(ws))
    deadline = time.monotonic() + timeout
    total = Outcome()
    with open_clients(ws.repo, providers, paths) as clients:
        for attempt in itertools.count():
            plan, state, outcome = converge(
                ws,
                clients,
                command="reconciler reconcile",
                allow_empty=allow_empty,
                rebuild=rebuild_state and attempt == 0,
                parallelism=parallelism,
            )
            if plan.pending:
                click.echo(render.plan_text(plan, colour=render.use_colour()))
            total.created += outcome.created
            total.cancelled += outcome.cancelled
            total.failures = outcome.failures  # only what still fails at the end counts
            waiting = _unfinished(ws, state)
            if not wait or not waiting:
                break
            if time.monotonic() >= deadline:
                raise UserError(f"--wait timed out after {timeout:g}s; still running: {', '.join(waiting)}")
            time.sleep(WAIT_POLL_SECONDS)
    return report_outcome(plan, total)


def _unfinished(ws: Workspace, state: State) -> list[str]:
    return sorted(
        name
        for name, job in ws.desired.items()
        if not job.suspend and name in state.jobs and not is_terminal(state.jobs[name].status)
    )
