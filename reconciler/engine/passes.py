"""One pass: observe → plan → apply → collect results → record.

`plan`, `apply`, `reconcile` and the daemon are this pass with different endings.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime

from reconciler.api.batch import LiveBatch
from reconciler.api.client import BatchClient
from reconciler.engine.apply import DEFAULT_PARALLELISM, Effects, Outcome, apply_plan
from reconciler.engine.finish import finish_jobs
from reconciler.engine.observe import observe
from reconciler.engine.retries import prepare_retries
from reconciler.engine.workspace import Workspace, load_state, prepare
from reconciler.plans.changes import Plan, Retryable
from reconciler.plans.plan import make_plan
from reconciler.plans.record import record
from reconciler.state.file import state_lock, write_state
from reconciler.state.model import State

__all__ = [
    "Workspace",
    "converge",
    "load_state",
    "observe_and_record",
    "prepare",
    "refresh_and_plan",
    "utc_now",
]


def refresh_and_plan(
    ws: Workspace, clients: Mapping[str, BatchClient], state: State, *, allow_empty: bool = False
) -> tuple[list[LiveBatch], Plan]:
    live = observe(clients, ws.owner_tag, ws.desired, state)
    retryable = _retryable(ws, clients, live)
    return live, make_plan(ws.desired, state, live, retryable=retryable, allow_empty=allow_empty)


def _retryable(ws: Workspace, clients: Mapping[str, BatchClient], live: list[LiveBatch]) -> Retryable:
    counts: dict[tuple[str, int], int] = {}
    for job in ws.desired.values():
        if job.max_attempts > 1 and not job.suspend:
            counts |= prepare_retries(job, live, clients[job.provider], ws.work_dir, job.retry_on)
    return counts


def converge(
    ws: Workspace,
    clients: Mapping[str, BatchClient],
    *,
    command: str,
    allow_empty: bool = False,
    rebuild: bool = False,
    parallelism: int = DEFAULT_PARALLELISM,
    confirm: Callable[[Plan], None] | None = None,
) -> tuple[Plan, State, Outcome]:
    """Under the state lock: refresh, plan, let `confirm` veto (raise), apply, record."""
    with state_lock(ws.paths.state, command):
        state = load_state(ws, rebuild=rebuild)
        live, plan = refresh_and_plan(ws, clients, state, allow_empty=allow_empty)
        if confirm is not None:
            confirm(plan)
        fx = Effects(clients, ws.owner_tag, _writer(ws), utc_now, ws.source_for, parallelism)
        state, outcome = apply_plan(plan, ws.desired, live, state, fx)
        state = finish_jobs(ws, clients, state, outcome)
    return plan, state, outcome


def observe_and_record(ws: Workspace, clients: Mapping[str, BatchClient], command: str) -> State:
    """Refreshes observed status only: no change is planned or made."""
    with state_lock(ws.paths.state, command):
        state = load_state(ws)
        live = observe(clients, ws.owner_tag, ws.desired, state)
        return write_state(ws.paths.state, record(ws.desired, state, live, now=utc_now()))


def _writer(ws: Workspace) -> Callable[[State], State]:
    return lambda state: write_state(ws.paths.state, state)


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
