"""Everything known before the first request: specs, inputs, owner, and the desired jobs."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from reconciler.api.uploads import UploadSource
from reconciler.common.errors import StateError
from reconciler.common.limits import SANDBOX, InputLimits
from reconciler.engine.connect import resolve_provider_headers
from reconciler.engine.leftovers import upload_name
from reconciler.engine.outcomes import DEFAULT_RETRY_ON, WorkDir
from reconciler.plans.changes import DesiredJob, Unit
from reconciler.specs import identity
from reconciler.specs.inputs import InputDigest, digest_repo
from reconciler.specs.loader import LoadedJob, LoadedRepo, load_repo
from reconciler.specs.parts import split_input
from reconciler.specs.paths import RepoPaths
from reconciler.state.file import new_state, read_state, set_aside_damaged
from reconciler.state.model import State


@dataclass(frozen=True)
class Workspace:
    paths: RepoPaths
    repo: LoadedRepo
    digests: Mapping[str, InputDigest]
    desired: Mapping[str, DesiredJob]
    owner: str

    @property
    def owner_tag(self) -> str:
        return identity.owner_tag(self.owner)

    @property
    def work_dir(self) -> Path:
        """Downloaded outputs and retry inputs."""
        return self.paths.state.parent / "work"

    def providers(self, state: State) -> set[str]:
        return {j.provider for j in self.desired.values()} | {j.provider for j in state.jobs.values()}

    def source_for(self, job: DesiredJob, unit: Unit) -> UploadSource:
        """The bytes a unit's batch reads: a retry file, one part of the input, or all of it."""
        stem = f"{job.name}-{job.generation}"
        if unit.retry > 1:
            path = WorkDir(self.work_dir, job.name, job.generation).retry_input(unit.part, unit.retry)
            return UploadSource(path, upload_name(f"{stem}-p{unit.part}-r{unit.retry}", self.owner_tag))
        if len(job.part_specs) == 1:
            return UploadSource(Path(job.input_path), upload_name(stem, self.owner_tag))
        part = job.part_specs[unit.part]
        name = upload_name(f"{stem}-p{unit.part}", self.owner_tag)
        return UploadSource(Path(job.input_path), name, part.start, part.end)


def prepare(paths: RepoPaths, owner_flag: str | None = None) -> Workspace:
    """Checks everything a user can get wrong before writing anything (the input cache)."""
    repo = load_repo(paths)
    owner = identity.resolve_owner(paths.repo, owner_flag)
    resolve_provider_headers(
        repo, {job.job.spec.provider or SANDBOX for job in repo.jobs.values()}, os.environ
    )
    digests = digest_repo(repo, paths)
    cache = paths.state.parent
    desired = {name: desired_job(job, digests[name], cache) for name, job in repo.jobs.items()}
    return Workspace(paths, repo, digests, desired, owner)


def desired_job(loaded: LoadedJob, digest: InputDigest, cache_dir: Path | None = None) -> DesiredJob:
    spec = loaded.job.spec
    provider = spec.provider or SANDBOX
    split = InputLimits(spec.split.max_requests, spec.split.max_bytes) if spec.split else None
    parts = (
        split_input(loaded.input_path, split, display=str(loaded.input_path), cache_dir=cache_dir)
        if split
        else ()
    )
    definition = {
        "endpoint": spec.endpoint,
        "completion_window": spec.completion_window,
        "metadata": dict(spec.metadata),
        "provider": provider,
        "split": [split.max_requests, split.max_bytes] if split else None,
    }
    return DesiredJob(
        name=loaded.name,
        generation=identity.generation(definition, digest.sha256),
        provider=provider,
        suspend=spec.suspend,
        deletion_policy=spec.deletion_policy,
        requests=digest.requests,
        model=digest.model,
        input_bytes=digest.size,
        parts=parts,
        max_attempts=spec.retry.max_attempts if spec.retry else 1,
        retry_on=tuple(spec.retry.on) if spec.retry else DEFAULT_RETRY_ON,
        endpoint=spec.endpoint,
        completion_window=spec.completion_window,
        metadata=dict(spec.metadata),
        input_path=str(loaded.input_path),
        results_path=str(loaded.results_path) if loaded.results_path else None,
        cleanup_inputs=bool(spec.cleanup and spec.cleanup.input_files),
        cleanup_outputs=bool(spec.cleanup and spec.cleanup.output_files),
    )


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
