"""`reconciler reconcile`: refresh, plan and apply without asking; record what was observed."""

from __future__ import annotations

import sys
import time
from collections.abc import Mapping

import click

from reconciler.api.client import ProviderApi
from reconciler.cli import render
from reconciler.cli.options import (
    Seconds,
    allow_over_budget_option,
    parallelism_option,
    planning_options,
    repo_options,
)
from reconciler.cli.render import WaitProgress, report_outcome
from reconciler.common.errors import UserError
from reconciler.engine.apply.effects import DEFAULT_PARALLELISM
from reconciler.engine.connect import open_clients
from reconciler.engine.converge import COMMAND, WaitOptions, converge_until_done, default_timeout
from reconciler.engine.events import EventLog, report_transitions
from reconciler.engine.notify.courier import NotifyBudget, announce
from reconciler.engine.workspace import Scope, Workspace, load_state, prepare
from reconciler.plans.changes import Plan
from reconciler.plans.wording import budget_warning
from reconciler.specs.repo import RepoPaths
from reconciler.state.file import new_state
from reconciler.state.model import State


def _listen_address(ctx: click.Context, param: click.Parameter, value: str | None) -> tuple[str, int] | None:
    from reconciler.daemon.web import parse_listen

    try:
        return parse_listen(value) if value is not None else None
    except ValueError as error:
        raise click.BadParameter(str(error)) from None


@click.command()
@repo_options
@planning_options
@allow_over_budget_option
@click.option(
    "--rebuild-state", is_flag=True, help="Set the state file aside and rebuild it from the live list."
)
@click.option("--wait", is_flag=True, help="Keep reconciling until every job's batches are finished.")
@click.option(
    "--timeout",
    type=Seconds(above=True),
    metavar="SECONDS",
    help="Seconds the whole command may take (with --wait, the waiting included).  "
    "[default: the longest completion_window of the jobs plus 1h: 25h]",
)
@parallelism_option(DEFAULT_PARALLELISM)
@click.option("--watch", is_flag=True, help="Keep running: converge on every file change, poll live status.")
@click.option(
    "--interval",
    default=30.0,
    show_default=True,
    type=Seconds(least=0.1),
    metavar="SECONDS",
    help="With --watch: resync at least this often while batches run.",
)
@click.option(
    "--log-format",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="With --watch: json prints one object per line, for log shippers.",
)
@click.option(
    "--health-port",
    metavar="[HOST:]PORT",
    callback=_listen_address,
    help="With --watch: serve /healthz and /metrics here (host defaults to 127.0.0.1).",
)
def command(
    paths: RepoPaths,
    owner: str | None,
    allow_empty: bool,
    allow_over_budget: bool,
    targets: tuple[str, ...],
    replace: tuple[str, ...],
    no_reuse: bool,
    rebuild_state: bool,
    wait: bool,
    timeout: float | None,
    parallelism: int,
    watch: bool,
    interval: float,
    log_format: str,
    health_port: tuple[str, int] | None,
) -> int:
    """Converge once: create what is missing, cancel what should not run, record status.

    With --watch, keep doing it: a daemon that converges within a second of a spec
    changing and records live status until stopped (SIGTERM/SIGINT exit 0)."""
    if watch or _given("interval", "log_format", "health_port"):
        return _watch(paths, owner)
    started = time.monotonic()  # --timeout bounds the whole command, each request included
    ws = prepare(paths, owner)
    timeout = default_timeout(ws.desired) if timeout is None else timeout
    ends_at = started + timeout
    before = new_state() if rebuild_state else load_state(ws)
    with open_clients(ws.repo, ws.providers(before), paths, ends_at=ends_at) as clients:
        scope = Scope.of(targets, replace, no_reuse=no_reuse)
        options = WaitOptions(
            wait, timeout, allow_empty, rebuild_state, parallelism, scope, allow_over_budget, ends_at
        )
        return _converge(ws, clients, before, options)


def _converge(ws: Workspace, apis: Mapping[str, ProviderApi], before: State, options: WaitOptions) -> int:
    previous, notify_budget = [before], NotifyBudget()  # one for every pass of the run
    with WaitProgress(EventLog("text", sys.stdout), live=options.wait and sys.stdout.isatty()) as progress:
        log = EventLog("text", sys.stdout)  # made here: a live bar routes stdout above itself

        def shown(plan: Plan, state: State) -> None:
            carried_out = [c for c in plan.pending if options.allow_over_budget or not c.over_budget]
            said = plan.notes or any(c.attention for c in plan.changes)  # e.g. a job left to a newer checkout
            first = previous[0] is before  # notes and refusals once, not on every pass of --wait
            if carried_out or (first and (plan.pending or said)):
                click.echo(render.plan_text(plan, colour=render.use_colour()))
            else:
                for warning in plan.warnings:  # a run past its budget, only reported
                    click.echo(f"! {budget_warning(warning)}")
            report_transitions(previous[0], state, log)
            if options.wait:
                progress.update(state, ws.desired)
            previous[0] = state
            announce(ws, log, COMMAND, notify_budget, patience=0.0)  # between passes: what is due now

        plan, total = converge_until_done(ws, apis, options, shown)
        announce(ws, log, COMMAND, notify_budget)
    return report_outcome(plan, total)


def _given(*names: str) -> bool:
    ctx = click.get_current_context()
    return any(ctx.get_parameter_source(n) is click.core.ParameterSource.COMMANDLINE for n in names)


def _watch(paths: RepoPaths, owner: str | None) -> int:
    params = click.get_current_context().params  # --repo/--specs as typed: re-resolved on each load
    if not params["watch"]:
        raise UserError("--interval, --log-format and --health-port apply only with --watch")
    for flag in ("wait", "rebuild_state", "targets", "replace", "no_reuse", "allow_over_budget"):
        if params[flag]:
            option = {"targets": "--target"}.get(flag, "--" + flag.replace("_", "-"))
            raise UserError(
                f"{option} does not combine with --watch; run `reconciler reconcile {option}` first"
            )
    from reconciler.daemon.service import (  # the one-shot path never pays for the daemon
        WatchOptions,
        run_watch,
    )

    options = WatchOptions(
        repo_arg=params["repo"],
        specs_arg=params["specs"],
        owner=owner,
        allow_empty=params["allow_empty"],
        parallelism=params["parallelism"],
        interval=params["interval"],
        log_format=params["log_format"],
        health=params["health_port"],
    )
    return run_watch(paths, options)
