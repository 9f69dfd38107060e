"""Everything known before the first request: specs, inputs, owner, and the desired jobs."""

from __future__ import annotations

import contextlib
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
from reconciler.specs.checkout import Commit, head
from reconciler.specs.inputs.cache import digest_repo
from reconciler.specs.inputs.digest import InputDigest
from reconciler.specs.loader import LoadedJob, LoadedRepo, load_repo
from reconciler.specs.models import Provider
from reconciler.specs.repo import PlanBudget, RepoPaths
from reconciler.state.backend import StateBackend
from reconciler.state.model import State
from reconciler.state.open import open_backend


@dataclass(frozen=True)
class Workspace:
    paths: RepoPaths
    repo: LoadedRepo
    digests: Mapping[str, InputDigest]
    desired: Mapping[str, DesiredJob]
    owner: str
    budget: PlanBudget | None = None  # `budget:` in reconciler.yaml
    # The git commit checked out, read before the specs (so never newer than what they say);
    # None outside a git checkout.
    checkout: Commit | None = None

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
    checkout = head(paths.repo)
    repo = load_repo(paths)
    settings = paths.repo_settings()
    owner = identity.resolve_owner(paths.repo, owner_flag, settings)
    resolve_provider_headers(
        repo, {job.job.spec.provider or SANDBOX for job in repo.jobs.values()}, os.environ
    )
    digests = digest_repo(repo, paths)
    cache = paths.state.parent
    desired = {
        name: desired_job(job, digests[name], cache, provider_of(repo, job))
        for name, job in repo.jobs.items()
    }
    return Workspace(paths, repo, digests, desired, owner, settings.budget, checkout)


def provider_of(repo: LoadedRepo, job: LoadedJob) -> Provider | None:
    found = repo.providers.get(job.job.spec.provider or "")
    return found.provider if found else None


def open_state(ws: Workspace) -> contextlib.AbstractContextManager[StateBackend]:
    """The state backend of this workspace: its file, or its database (--state-url)."""
    return open_backend(ws.paths.state, ws.paths.state_url, ws.owner_tag)


def load_state(ws: Workspace, *, rebuild: bool = False, backend: StateBackend | None = None) -> State:
    """The recorded state (rebuild: an empty one, the old one set aside), checked to be ours."""
    if backend is None:
        with open_state(ws) as opened:
            return load_state(ws, rebuild=rebuild, backend=opened)
    if rebuild:
        return backend.fresh()
    state = backend.read()
    if state.owner and state.owner != ws.owner_tag:
        raise StateError(
            f"{backend.where}: this state belongs to owner tag {state.owner}, not {ws.owner_tag} "
            f"(owner {ws.owner!r}); use the same owner id, or another --state"
        )
    return state.model_copy(update={"owner": ws.owner_tag})


def read_recorded(paths: RepoPaths, owner_flag: str | None = None) -> State:
    """The state as recorded, for reading only (`status`)."""
    with open_recorded(paths, owner_flag) as backend:
        return backend.read()


def open_recorded(
    paths: RepoPaths, owner_flag: str | None = None
) -> contextlib.AbstractContextManager[StateBackend]:
    """The backend without loading the specs; a state file needs no owner, a database does."""
    if paths.state_url is None:
        return open_backend(paths.state, None, None)
    tag = identity.owner_tag(identity.resolve_owner(paths.repo, owner_flag, paths.repo_settings()))
    return open_backend(paths.state, paths.state_url, tag)
