"""One pass: observe → plan → apply → collect results → record.

`plan`, `apply`, `reconcile` and the daemon are this pass with different endings.  Observing
and planning only read from the provider; only apply/ writes.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from reconciler.api.batch import LiveBatch
from reconciler.api.client import ProviderApi
from reconciler.api.reader import BatchReader
from reconciler.engine.apply.effects import DEFAULT_PARALLELISM, Effects, Outcome
from reconciler.engine.apply.run import apply_plan
from reconciler.engine.finish import finish_jobs
from reconciler.engine.inflight import in_flight, quarantine_seconds
from reconciler.engine.observe import observe
from reconciler.engine.retries import PartRetry, find_retries
from reconciler.engine.sources import UploadSources
from reconciler.engine.workspace import Workspace, load_state, open_state
from reconciler.plans.changes import Plan
from reconciler.plans.plan import make_plan
from reconciler.plans.record import record
from reconciler.state.model import State


@dataclass(frozen=True)
class Refreshed:
    """What a read-only refresh found, and the plan made from it."""

    live: list[LiveBatch]
    retries: Mapping[tuple[str, int], PartRetry]
    plan: Plan


def refresh_and_plan(
    ws: Workspace, readers: Mapping[str, BatchReader], state: State, *, allow_empty: bool = False
) -> Refreshed:
    live = observe(readers, ws.owner_tag, ws.desired, state)
    retries = find_retries(ws.desired, live, readers, ws.work_dir)
    counts = {key: retry.count for key, retry in retries.items()}
    waiting = in_flight(state, live, time.time(), quarantine_seconds())
    plan = make_plan(ws.desired, state, live, retryable=counts, allow_empty=allow_empty, in_flight=waiting)
    return Refreshed(live, retries, plan)


def converge(
    ws: Workspace,
    apis: Mapping[str, ProviderApi],
    *,
    command: str,
    allow_empty: bool = False,
    rebuild: bool = False,
    parallelism: int = DEFAULT_PARALLELISM,
    confirm: Callable[[Plan], None] | None = None,
) -> tuple[Plan, State, Outcome]:
    """Under the owner's writer lock, for the whole pass: refresh, plan, let `confirm` veto
    (raise), apply, record.  No other writer of this owner plans or writes meanwhile."""
    with open_state(ws) as backend, backend.writer_lock(command):
        state = load_state(ws, rebuild=rebuild, backend=backend)
        found = refresh_and_plan(ws, readers_of(apis), state, allow_empty=allow_empty)
        if confirm is not None:
            confirm(found.plan)
        sources = UploadSources(ws.work_dir, ws.owner_tag, found.retries)
        fx = Effects(apis, ws.owner_tag, backend.write, utc_now, sources, parallelism)
        state, outcome = apply_plan(found.plan, ws.desired, found.live, state, fx)
        finished = finish_jobs(ws.desired, apis, state, outcome, ws.work_dir)
        if finished is not state:
            state = backend.write(finished)
    return found.plan, state, outcome


def observe_and_record(ws: Workspace, readers: Mapping[str, BatchReader], command: str) -> State:
    """Refreshes observed status only: no change is planned or made."""
    with open_state(ws) as backend, backend.writer_lock(command):
        state = load_state(ws, backend=backend)
        live = observe(readers, ws.owner_tag, ws.desired, state)
        return backend.write(record(ws.desired, state, live, now=utc_now()))


def readers_of(apis: Mapping[str, ProviderApi]) -> dict[str, BatchReader]:
    return {name: api.reader for name, api in apis.items()}


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
