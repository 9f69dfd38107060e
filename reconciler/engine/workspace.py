"""Everything known before the first request, and what a pass may touch: specs, inputs, owner,
the desired jobs and the state's backend; which jobs a pass may change (`--target`), which get
a new run (`--replace`), and which it must leave to a newer checkout.

Writers at different commits: a checkout behind the commit that last changed a job leaves
that job alone, so CI at a new commit and a daemon one pull behind do not undo each other.
Each change a pass makes to a job records the commit it was made from (`applied_from` in the
state; `forgotten` for a job dropped with its spec).  Before another pass changes that job, its
checkout's HEAD is compared with that commit:

- the same commit, or the recorded one is an ancestor of HEAD: the job may be changed;
- HEAD is an ancestor of the recorded commit (behind): the job is left alone, and the plan
  says so, until this checkout catches up;
- neither holds the other (diverged), or the recorded commit is not in this clone (not yet
  fetched, or cut off by a shallow clone): the newer commit by committer date goes first
  (equal dates: the larger commit id), so two checkouts never take turns undoing each other;
- outside a git checkout, or without git: the job is changed as before, and its recorded
  commit is cleared (nothing says which commit the change came from).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from reconciler.common.errors import StateError, UserError
from reconciler.common.limits import SANDBOX
from reconciler.engine.connect import resolve_provider_headers
from reconciler.specs import identity
from reconciler.specs.checkout import Commit, Relation, head, relation
from reconciler.specs.fields import closest
from reconciler.specs.inputs.cache import digest_repo
from reconciler.specs.inputs.digest import InputDigest
from reconciler.specs.loader import LoadedJob, LoadedRepo, load_repo
from reconciler.specs.models import Provider
from reconciler.specs.repo import PlanBudget, RepoPaths
from reconciler.state.backend import StateBackend
from reconciler.state.file import FileBackend
from reconciler.state.model import AppliedFrom, State

# The planner's vocabulary (and engine/desired, engine/clock, which use it) is imported where it
# is used, not here: `apply` sends its first request before it needs them (cli/commands/apply.py).
if TYPE_CHECKING:
    from reconciler.plans.changes import DesiredJob, PlanContext
    from reconciler.plans.reasons import LeftToNewer


@dataclass(frozen=True)
class Workspace:
    paths: RepoPaths
    # The documents loaded: the daemon's (daemon/passes.py) with every job's; a one-shot
    # command's (`prepare`) with the providers and notifications only.
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
    return check_specs(paths, owner_flag).workspace()


@dataclass(frozen=True)
class Checked:
    """What `prepare` has checked before it builds the desired jobs: the specs, their providers'
    headers, the inputs (digested) and the owner.  `apply` takes the owner's lock and sends the
    list of batches here, and builds the rest while the list is read."""

    paths: RepoPaths
    repo: LoadedRepo
    digests: Mapping[str, InputDigest]
    owner: str
    budget: PlanBudget | None
    checkout: Commit | None

    @property
    def owner_tag(self) -> str:
        return identity.owner_tag(self.owner)

    def workspace(self) -> Workspace:
        from reconciler.engine.desired import desired_job

        cache = self.paths.state.parent
        desired = {
            name: desired_job(job, self.digests[name], cache, provider_of(self.repo, job))
            for name, job in self.repo.jobs.items()
        }
        # Nothing a one-shot command does after this reads a job's document (its desired job holds
        # what is read), so the workspace lets them go: 2.2 KB a job at the plan's peak.
        kept = LoadedRepo({}, self.repo.providers, self.repo.notifications)
        return Workspace(self.paths, kept, self.digests, desired, self.owner, self.budget, self.checkout)


def check_specs(paths: RepoPaths, owner_flag: str | None = None) -> Checked:
    """Every mistake a user can make in the repo, found before anything is sent."""
    checkout = head(paths.repo)
    repo = load_repo(paths)
    settings = paths.repo_settings()
    owner = identity.resolve_owner(paths.repo, owner_flag, settings)
    resolve_provider_headers(repo, providers_of(repo), os.environ)
    return Checked(paths, repo, digest_repo(repo, paths), owner, settings.budget, checkout)


def providers_of(repo: LoadedRepo) -> set[str]:
    """The providers the specs' jobs use (a recorded job may use another)."""
    return {job.job.spec.provider or SANDBOX for job in repo.jobs.values()}


def provider_of(repo: LoadedRepo, job: LoadedJob) -> Provider | None:
    found = repo.providers.get(job.job.spec.provider or "")
    return found.provider if found else None


def open_state(ws: Workspace) -> contextlib.AbstractContextManager[StateBackend]:
    """The state backend of this workspace: its file, or its database (--state-url)."""
    return open_backend(ws.paths.state, ws.paths.state_url, ws.owner_tag)


@contextlib.contextmanager
def open_backend(
    path: Path, url: str | None, owner_tag: str | None, *, keep_journal: bool = False
) -> Iterator[StateBackend]:
    """The backend for a state file `path`, or for the database at `url` (owner_tag keys it);
    `keep_journal`: the daemon's, whose state file folds its journal in when due (state/file.py).
    psycopg itself is imported only when a database is used (in state/database.py)."""
    if url is None:
        yield FileBackend(path, owner_tag, keep_journal=keep_journal)
        return
    if owner_tag is None:
        raise AssertionError("a PostgreSQL state is keyed by its owner")
    from reconciler.state.postgres import PostgresBackend

    backend = PostgresBackend.connect(url, owner_tag)
    try:
        yield backend
    finally:
        backend.close()


@contextlib.contextmanager
def writer_locked(paths: RepoPaths, owner_tag: str, command: str) -> Iterator[StateBackend]:
    """The state backend with the owner's writer lock held (`converge`'s `held`): taken from
    the repo's settings and the owner alone, before the specs' jobs are built, so that the list
    of batches can be read under it while they are."""
    with open_backend(paths.state, paths.state_url, owner_tag) as backend, backend.writer_lock(command):
        yield backend


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


# What a job name naming no job says when no name is close to it: a list of 10,000 would not help.
SEE_STATUS = "; `reconciler status` lists them"


@dataclass(frozen=True)
class Scope:
    """Which jobs a pass may change (`--target`), and which to start a new run of (`--replace`).

    `stamp` names the new runs: taken once, when the command starts (or kept in a saved plan),
    so every pass of one command converges the same run instead of starting another."""

    targets: frozenset[str] | None = None
    replace: frozenset[str] = frozenset()
    stamp: str = field(default_factory=lambda: _stamp_now())  # taken when the Scope is made
    no_reuse: bool = False  # --no-reuse: a run that starts now sends every request (spec.reuse)

    @classmethod
    def of(
        cls, targets: tuple[str, ...] = (), replace: tuple[str, ...] = (), *, no_reuse: bool = False
    ) -> Scope:
        return cls(frozenset(targets) if targets else None, frozenset(replace), no_reuse=no_reuse)

    def context(self) -> PlanContext:
        from reconciler.plans.changes import PlanContext

        return PlanContext(stamp=self.stamp, replace=self.replace, targets=self.targets)

    def untouched(self, ws: Workspace, state: State) -> set[str]:
        if self.targets is None:
            return set()
        return (set(ws.desired) | set(state.jobs)) - self.targets

    def check(self, ws: Workspace, state: State) -> None:
        """A target or replace naming no job is a mistake, not an empty plan."""
        known = set(ws.desired) | set(state.jobs)
        unknown = sorted((self.targets or frozenset()) - known)
        if unknown:
            hint = closest(unknown[0], known) or SEE_STATUS
            raise UserError(f"--target {unknown[0]}: no job of that name in the specs or the state{hint}")
        unknown = sorted(self.replace - set(ws.desired))
        if unknown:
            hint = closest(unknown[0], ws.desired) or SEE_STATUS
            raise UserError(f"--replace {unknown[0]}: no job of that name in the specs{hint}")
        outside = sorted(self.replace - (self.targets or self.replace))
        if outside:
            raise UserError(f"--replace {outside[0]} is not among the --target jobs")


def named_in_specs(specs: Collection[str], targets: Collection[str], replace: Collection[str]) -> bool:
    """Whether `Scope.check` of this --target and --replace passes whatever the state holds:
    every name a job of the specs.  A name only the state may know waits for the state to be
    read, so that a misspelt one sends nothing."""
    jobs = set(specs)
    return set(targets) <= jobs and set(replace) <= jobs and set(replace) <= set(targets or replace)


def _stamp_now() -> str:
    from reconciler.engine import clock
    from reconciler.plans.runs import stamp

    return stamp(clock.now())


def applied_from(ws: Workspace) -> AppliedFrom | None:
    """What this workspace's changes are recorded as made from."""
    here = ws.checkout
    return AppliedFrom(commit=here.sha, committed_at=here.committed_at) if here else None


def behind(ws: Workspace, state: State, jobs: Iterable[str]) -> dict[str, LeftToNewer]:
    """Of `jobs`, those this checkout must leave alone, each with why (`checkout at abc1234 is
    behind def5678, which last applied nightly-eval`).  One question to git per recorded commit."""
    here = ws.checkout
    if here is None:
        return {}
    verdicts: dict[str, str | None] = {}
    from reconciler.plans.reasons import LeftToNewer

    reasons: dict[str, LeftToNewer] = {}
    for name in jobs:
        recorded = state.jobs.get(name)
        last = recorded.applied_from if recorded is not None else state.forgotten.get(name)
        if last is None or last.commit == here.sha:
            continue
        if last.commit not in verdicts:
            verdicts[last.commit] = _why_not(ws, here, last)
        why = verdicts[last.commit]
        if why is not None:
            reasons[name] = LeftToNewer(name, here.sha, last.commit, why)
    return reasons


def _why_not(ws: Workspace, here: Commit, last: AppliedFrom) -> str | None:
    """How this checkout stands to a newer commit that last applied a job (`behind`,
    `diverged`, `missing`: not in this clone); None when this checkout goes first."""
    found = relation(ws.paths.repo, here.sha, last.commit)
    if found is Relation.BEHIND:
        return "behind"
    if found in (Relation.SAME, Relation.AHEAD):
        return None
    if (here.committed_at, here.sha) >= (last.committed_at, last.commit):
        return None  # this commit is the newer one: it goes first
    return "diverged" if found is Relation.DIVERGED else "missing"
