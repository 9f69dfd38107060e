"""One daemon pass: the core's `converge`, guarded while some specs do not validate.

When the specs are broken, a change to any job that is not clean (see watch_load) is
refused as a whole and the pass only observes: an invalid spec set must never cancel,
forget or re-create anything. The clients stay open between passes and are reopened
only when the providers in use, or their definitions, change.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from reconciler.api.client import ProviderApi
from reconciler.common.errors import PlanRefusedError
from reconciler.common.limits import SANDBOX
from reconciler.daemon.load import Loaded
from reconciler.daemon.schedule import REQUEST_BACKOFF
from reconciler.engine.apply.effects import Outcome
from reconciler.engine.connect import open_clients
from reconciler.engine.converge import converge, observe_and_record, readers_of
from reconciler.plans.changes import Plan
from reconciler.state.model import State

COMMAND = "reconciler reconcile --watch"


@dataclass(frozen=True)
class PassResult:
    before: State
    after: State
    plan: Plan = field(default_factory=Plan)
    outcome: Outcome = field(default_factory=Outcome)
    held_back: str | None = None  # why the pass only observed


def run_pass(
    loaded: Loaded,
    clients: Mapping[str, ProviderApi],
    before: State,
    *,
    allow_empty: bool,
    parallelism: int,
) -> PassResult:
    """`before`: the state as read just now, to tell transitions by (the pass reads it again, locked)."""
    ws = loaded.ws
    try:
        plan, after, outcome = converge(
            ws,
            clients,
            command=COMMAND,
            # With broken specs the guard refuses every change to a job that is not clean,
            # which covers the core's "empty desired set" refusal, and says why.
            allow_empty=allow_empty or bool(loaded.problems),
            parallelism=parallelism,
            confirm=_guard(loaded) if loaded.problems else None,
        )
    except PlanRefusedError as refusal:
        return PassResult(
            before, observe_and_record(ws, readers_of(clients), COMMAND), held_back=str(refusal)
        )
    return PassResult(before, after, plan, outcome)


def _guard(loaded: Loaded) -> Callable[[Plan], None]:
    def refuse_unclean(plan: Plan) -> None:
        touched = sorted({c.job for c in plan.pending if c.job not in loaded.clean})
        if touched:
            raise PlanRefusedError(
                f"specs do not validate, and the plan would change {', '.join(touched)}; "
                "only observing until they do"
            )

    return refuse_unclean


class ClientPool:
    """The open API clients, one set per distinct provider configuration."""

    def __init__(self) -> None:
        self._stack = contextlib.ExitStack()
        self._key: tuple[tuple[str, str], ...] | None = None
        self._clients: dict[str, ProviderApi] = {}

    def clients_for(self, loaded: Loaded, state: State) -> Mapping[str, ProviderApi]:
        ws = loaded.ws
        providers = ws.providers(state)
        key = tuple(sorted((name, _definition(loaded, name)) for name in providers))
        if key != self._key:
            self.close()
            stack = contextlib.ExitStack()
            try:
                self._clients = stack.enter_context(
                    open_clients(ws.repo, providers, ws.paths, backoff=REQUEST_BACKOFF)
                )
            except BaseException:
                stack.close()
                raise
            self._stack, self._key = stack, key
        return self._clients

    def close(self) -> None:
        self._stack.close()
        self._key, self._clients = None, {}


def _definition(loaded: Loaded, provider: str) -> str:
    if provider == SANDBOX:
        return SANDBOX
    found = loaded.ws.repo.providers.get(provider)
    return found.provider.spec.model_dump_json() if found else "(missing)"
