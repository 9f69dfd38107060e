"""Which jobs a pass may change (`--target`) and which get a new run (`--replace`)."""

from __future__ import annotations

from dataclasses import dataclass, field

from reconciler.common.errors import UserError
from reconciler.engine import clock
from reconciler.engine.workspace import Workspace
from reconciler.plans.changes import PlanContext
from reconciler.plans.runs import stamp
from reconciler.state.model import State


@dataclass(frozen=True)
class Scope:
    """Which jobs a pass may change (`--target`), and which to start a new run of (`--replace`).

    `stamp` names the new runs: taken once, when the command starts (or kept in a saved plan),
    so every pass of one command converges the same run instead of starting another."""

    targets: frozenset[str] | None = None
    replace: frozenset[str] = frozenset()
    stamp: str = field(default_factory=lambda: stamp(clock.now()))

    @classmethod
    def of(cls, targets: tuple[str, ...] = (), replace: tuple[str, ...] = ()) -> Scope:
        return cls(frozenset(targets) if targets else None, frozenset(replace))

    def context(self) -> PlanContext:
        return PlanContext(stamp=self.stamp, replace=self.replace, targets=self.targets)

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
