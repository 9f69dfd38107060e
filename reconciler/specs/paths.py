"""Where a repo's specs and state are: the three paths every command and the daemon start from."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from reconciler.specs.settings import RepoSettings, read_settings


@dataclass(frozen=True)
class RepoPaths:
    repo: Path
    specs: Path
    state: Path  # the state file; with `state_url`, only where local caches and work go
    state_url: str | None = None  # a PostgreSQL state backend (specs/state_location.py)
    settings: RepoSettings | None = None  # reconciler.yaml as the command read it; None: not read yet

    def repo_settings(self) -> RepoSettings:
        """reconciler.yaml: as read once for this command, or read now."""
        return self.settings if self.settings is not None else read_settings(self.repo)

    @property
    def sandbox_data(self) -> Path:
        """Where the embedded sandbox keeps its files for this repo.  Tied to the repo, not to
        the state file: `--state elsewhere` must see the same sandbox batches, not an empty one."""
        return self.repo / ".reconciler" / "sandbox"


def resolve_paths(repo: str, specs: str | None, state: str | None) -> RepoPaths:
    root = Path(repo).resolve()
    return RepoPaths(
        repo=root,
        specs=Path(specs).resolve() if specs else root / "specs",
        state=Path(state).resolve() if state else root / ".reconciler" / "state.json",
    )
