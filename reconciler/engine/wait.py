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
from reconciler.common.errors import UserError
from reconciler.engine.apply.effects import DEFAULT_PARALLELISM, Outcome
from reconciler.engine.apply.failures import Failure
from reconciler.engine.passes import converge
from reconciler.engine.scope import Scope
from reconciler.engine.workspace import Workspace
from reconciler.plans.changes import Plan
from reconciler.state.model import JobState, State

WAIT_POLL_SECONDS = 1.0
COMMAND = "reconciler reconcile"


@dataclass(frozen=True)
class WaitOptions:
    wait: bool = False
    timeout: float = 3600.0
    allow_empty: bool = False
    rebuild: bool = False
    parallelism: int = DEFAULT_PARALLELISM
    scope: Scope = field(default_factory=Scope)
    allow_over_budget: bool = False


def converge_until_done(
    ws: Workspace,
    apis: Mapping[str, ProviderApi],
    options: WaitOptions,
    shown: Callable[[Plan, State], None],
) -> tuple[Plan, Outcome]:
    """One pass, or with `wait` passes until done; the last plan and the summed outcome."""
    deadline = time.monotonic() + options.timeout
    total = Outcome()
    for attempt in itertools.count():
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
        if time.monotonic() >= deadline:
            raise UserError(
                f"--wait timed out after {options.timeout:g}s; still running: {', '.join(waiting)}"
            )
        time.sleep(WAIT_POLL_SECONDS)
    raise AssertionError("unreachable")


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
