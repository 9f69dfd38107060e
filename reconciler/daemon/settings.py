"""What the daemon was started with, and where the repo is right now."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from reconciler.daemon.schedule import Cadence
from reconciler.specs.repo import RepoPaths, resolve_paths


@dataclass(frozen=True)
class Settings:
    state: Path  # fixed for the daemon's life: its lock guards this file
    repo_arg: str  # --repo and --specs as given, resolved again on every load:
    specs_arg: str | None  # git-sync swaps a symlink to a fresh checkout
    owner: str
    cadence: Cadence
    allow_empty: bool
    parallelism: int
    state_url: str | None = None  # a PostgreSQL state: replicas, one leading (leader.py)

    def paths(self) -> RepoPaths:
        current = resolve_paths(self.repo_arg, self.specs_arg, None)
        return RepoPaths(current.repo, current.specs, self.state, self.state_url)

    def links(self) -> list[Path]:
        """The given paths that may point elsewhere later: symlinks, or not there yet."""
        given = [Path(a).absolute() for a in (self.repo_arg, self.specs_arg) if a]
        return [p for p in given if p.is_symlink() or not p.exists()]
