"""`reconcile` and `reconcile --wait`: passes until every job's batches have finished.

Each pass is `converge`; between passes it sleeps a fixed poll.  What a pass did is handed
to `shown` (the CLI prints plans and transitions), so this loop stays free of rendering.
A job waited for that ends failed, expired or cancelled (its retries spent) is a failure of
the wait: one line each, and a non-zero exit.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from reconciler.api.batch import is_terminal
from reconciler.api.client import ProviderApi
from reconciler.api.responses import CommandTimeoutError
from reconciler.common.errors import UserError
from reconciler.engine.apply.effects import DEFAULT_PARALLELISM, Outcome
from reconciler.engine.apply.failures import Failure
from reconciler.engine.passes import converge
from reconciler.engine.scope import Scope
from reconciler.engine.workspace import Workspace
from reconciler.plans.changes import DesiredJob, Plan
from reconciler.plans.runs import duration
from reconciler.state.model import JobState, State

WAIT_POLL_SECONDS = 1.0
COMMAND = "reconciler reconcile"
# `--timeout` unless given: a batch may take its whole completion window, then results are
# collected; an hour on top covers finalizing, downloads and notifications.
TIMEOUT_MARGIN_SECONDS = 3600.0
_WINDOW_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def default_timeout(desired: Mapping[str, DesiredJob]) -> float:
    """The longest completion window of the jobs (24h when there are none) plus the margin."""
    windows = [_seconds(job.completion_window) for job in desired.values()]
    return max(windows, default=_seconds("24h")) + TIMEOUT_MARGIN_SECONDS


def _seconds(window: str) -> float:
    return float(window[:-1]) * _WINDOW_UNITS[window[-1]]


@dataclass(frozen=True)
class WaitOptions:
    wait: bool = False
    timeout: float = _seconds("24h") + TIMEOUT_MARGIN_SECONDS
    allow_empty: bool = False
    rebuild: bool = False
    parallelism: int = DEFAULT_PARALLELISM
    scope: Scope = field(default_factory=Scope)
    allow_over_budget: bool = False
    ends_at: float | None = None  # monotonic: when the command began, plus `timeout`


def converge_until_done(
    ws: Workspace,
    apis: Mapping[str, ProviderApi],
    options: WaitOptions,
    shown: Callable[[Plan, State], None],
) -> tuple[Plan, Outcome]:
    """One pass, or with `wait` passes until done; the last plan and the summed outcome."""
    deadline = options.ends_at if options.ends_at is not None else time.monotonic() + options.timeout
    total = Outcome()
    waiting: list[str] = []
    for attempt in itertools.count():
        try:
            plan, state, outcome = converge(
                ws,
                apis,
                command=COMMAND,
                allow_empty=options.allow_empty,
                rebuild=options.rebuild and attempt == 0,
                parallelism=options.parallelism,
                scope=options.scope,
                allow_over_budget=options.allow_over_budget,
            )
        except CommandTimeoutError as error:
            raise UserError(timed_out(options.timeout, waiting, during=str(error))) from None
        shown(plan, state)
        total.created += outcome.created
        total.cancelled += outcome.cancelled
        total.failures = outcome.failures  # only what still fails at the end counts
        total.over_budget = outcome.over_budget
        waiting = unfinished(ws, state, options.scope.targets)
        if not options.wait or not waiting:
            if options.wait:
                total.failures = ended_badly(ws, state, options.scope.targets) + total.failures
            return plan, total
        if time.monotonic() + WAIT_POLL_SECONDS >= deadline:  # no pass starts only to be cut off
            raise UserError(timed_out(options.timeout, waiting))
        time.sleep(WAIT_POLL_SECONDS)
    raise AssertionError("unreachable")


def timed_out(timeout: float, waiting: list[str], during: str = "") -> str:
    """The command's own limit ended it, not the provider: what ran on, and how to wait longer."""
    running = f"; still running: {', '.join(waiting)}" if waiting else ""
    return (
        f"{during or '--timeout ran out while waiting'}{running}; nothing is lost, the next "
        f"reconcile picks up from here; to wait longer, raise --timeout (it was {duration(timeout)}; "
        "by default the longest completion_window plus 1h)"
    )


def waited_for(ws: Workspace, state: State, targets: frozenset[str] | None) -> dict[str, JobState]:
    return {
        name: state.jobs[name]
        for name, job in ws.desired.items()
        if not job.suspend and name in state.jobs and (targets is None or name in targets)
    }


def unfinished(ws: Workspace, state: State, targets: frozenset[str] | None = None) -> list[str]:
    """Jobs with something still running or owed (a create pending, results to collect)."""
    jobs = waited_for(ws, state, targets)
    return sorted(name for name, job in jobs.items() if job.status != "none" and not is_terminal(job.status))


def ended_badly(ws: Workspace, state: State, targets: frozenset[str] | None) -> list[Failure]:
    """`nightly-eval: ended expired (3/29/32)` for each job waited for that did not complete."""
    ended = []
    for name, job in waited_for(ws, state, targets).items():
        if is_terminal(job.status) and job.status != "completed":
            counts = job.request_counts
            done = f"{counts.get('completed', 0)}/{counts.get('failed', 0)}/{counts.get('total', 0)}"
            message = f"ended {job.status} ({done} done/failed/total)"
            ended.append(Failure(job=name, step="run", message=message, provider=job.provider, api=False))
    return ended
