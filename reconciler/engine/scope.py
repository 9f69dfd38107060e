"""Which jobs a pass may change (`--target`) and which get a new run (`--replace`)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from reconciler.common.errors import UserError
from reconciler.engine.workspace import Workspace
from reconciler.plans.changes import PlanContext
from reconciler.plans.runs import stamp
from reconciler.state.model import State


@dataclass(frozen=True)
class Scope:
    """Which jobs a pass may change (`--target`), and which to start a new run of (`--replace`)."""

    targets: frozenset[str] | None = None
    replace: frozenset[str] = frozenset()

    @classmethod
    def of(cls, targets: tuple[str, ...] = (), replace: tuple[str, ...] = ()) -> Scope:
        return cls(frozenset(targets) if targets else None, frozenset(replace))

    def context(self, now: datetime) -> PlanContext:
        return PlanContext(stamp=stamp(now), replace=self.replace, targets=self.targets)

    def untouched(self, ws: Workspace, state: State) -> set[str]:
        if self.targets is None:
            return set()
        return (set(ws.desired) | set(state.jobs)) - self.targets

    def check(self, ws: Workspace, state: State) -> None:
        """A target or replace naming no job is a mistake, not an empty plan."""
        unknown = sorted((self.targets or frozenset()) - set(ws.desired) - set(state.jobs))
        if unknown:
            raise UserError(f"--target {unknown[0]}: no job of that name in the specs or the state")
        unknown = sorted(self.replace - set(ws.desired))
        if unknown:
            raise UserError(f"--replace {unknown[0]}: no job of that name in the specs")
        outside = sorted(self.replace - (self.targets or self.replace))
        if outside:
            raise UserError(f"--replace {outside[0]} is not among the --target jobs")
