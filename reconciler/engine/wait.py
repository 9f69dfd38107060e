"""`reconcile` and `reconcile --wait`: passes until every job's batches have finished.

Each pass is `converge`; between passes it sleeps a fixed poll.  What a pass did is handed
to `shown` (the CLI prints plans and transitions), so this loop stays free of rendering.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from reconciler.api.batch import is_terminal
from reconciler.api.client import ProviderApi
from reconciler.common.errors import UserError
from reconciler.engine.apply.effects import DEFAULT_PARALLELISM, Outcome
from reconciler.engine.passes import converge
from reconciler.engine.workspace import Workspace
from reconciler.plans.changes import Plan
from reconciler.state.model import State

WAIT_POLL_SECONDS = 1.0
COMMAND = "reconciler reconcile"


@dataclass(frozen=True)
class WaitOptions:
    wait: bool = False
    timeout: float = 3600.0
    allow_empty: bool = False
    rebuild: bool = False
    parallelism: int = DEFAULT_PARALLELISM
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
            allow_over_budget=options.allow_over_budget,
        )
        shown(plan, state)
        total.created += outcome.created
        total.cancelled += outcome.cancelled
        total.failures = outcome.failures  # only what still fails at the end counts
        waiting = unfinished(ws, state)
        if not options.wait or not waiting:
            return plan, total
        if time.monotonic() >= deadline:
            raise UserError(
                f"--wait timed out after {options.timeout:g}s; still running: {', '.join(waiting)}"
            )
        time.sleep(WAIT_POLL_SECONDS)
    raise AssertionError("unreachable")


def unfinished(ws: Workspace, state: State) -> list[str]:
    return sorted(
        name
        for name, job in ws.desired.items()
        if not job.suspend and name in state.jobs and not is_terminal(state.jobs[name].status)
    )
