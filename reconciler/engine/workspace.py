"""Everything known before the first request: specs, inputs, owner, and the desired jobs."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from reconciler.common.errors import StateError
from reconciler.common.limits import SANDBOX
from reconciler.engine.connect import resolve_provider_headers
from reconciler.engine.desired import desired_job
from reconciler.plans.changes import DesiredJob
from reconciler.specs import identity
from reconciler.specs.inputs.digest import InputDigest
from reconciler.specs.inputs.repo import digest_repo
from reconciler.specs.loader import LoadedJob, LoadedRepo, load_repo
from reconciler.specs.models import Provider
from reconciler.specs.paths import RepoPaths
from reconciler.specs.settings import PlanBudget, read_budget
from reconciler.state.file import new_state, read_state, set_aside_damaged
from reconciler.state.model import State


@dataclass(frozen=True)
class Workspace:
    paths: RepoPaths
    repo: LoadedRepo
    digests: Mapping[str, InputDigest]
    desired: Mapping[str, DesiredJob]
    owner: str
    budget: PlanBudget | None = None  # `budget:` in reconciler.yaml

    @property
    def owner_tag(self) -> str:
        return identity.owner_tag(self.owner)

    @property
    def work_dir(self) -> Path:
        """Downloaded outputs and retry inputs."""
        return self.paths.state.parent / "work"

    def providers(self, state: State) -> set[str]:
        return {j.provider for j in self.desired.values()} | {j.provider for j in state.jobs.values()}


def prepare(paths: RepoPaths, owner_flag: str | None = None) -> Workspace:
    """Checks everything a user can get wrong before writing anything (the input cache)."""
    repo = load_repo(paths)
    owner = identity.resolve_owner(paths.repo, owner_flag)
    resolve_provider_headers(
        repo, {job.job.spec.provider or SANDBOX for job in repo.jobs.values()}, os.environ
    )
    digests = digest_repo(repo, paths)
    cache = paths.state.parent
    desired = {
        name: desired_job(job, digests[name], cache, provider_of(repo, job))
        for name, job in repo.jobs.items()
    }
    return Workspace(paths, repo, digests, desired, owner, read_budget(paths.repo))


def provider_of(repo: LoadedRepo, job: LoadedJob) -> Provider | None:
    found = repo.providers.get(job.job.spec.provider or "")
    return found.provider if found else None


def load_state(ws: Workspace, *, rebuild: bool = False) -> State:
    path = ws.paths.state
    if rebuild:
        set_aside_damaged(path)
        return new_state(ws.owner_tag)
    state = read_state(path)
    if state.owner and state.owner != ws.owner_tag:
        raise StateError(
            f"{path}: this state belongs to owner tag {state.owner}, not {ws.owner_tag} "
            f"(owner {ws.owner!r}); use the same owner id, or another --state"
        )
    return state.model_copy(update={"owner": ws.owner_tag})
