"""One daemon pass: the specs loaded so that one broken file does not stop the other jobs, and
the core's `converge`, guarded while some specs do not validate.

The loader reports every problem at once; here the jobs are sorted into three kinds:
- clean: its spec file, its Provider's file and its input all validate: it converges;
- held: something of it does not validate, but an earlier load knew it: it keeps that
  last good definition, so the planner sees no reason to cancel or replace it;
- unknown: broken and never seen valid. It is not desired, so a plan would call it removed.

When the specs are broken, a change to any job that is not clean is refused as a whole and
the pass only observes: an invalid spec set must never cancel, forget or re-create anything.
The clients stay open between passes and are reopened only when the providers in use, or
their definitions, change.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from reconciler.api.client import ProviderApi
from reconciler.common.errors import PlanRefusedError, Problem, SpecError
from reconciler.common.limits import SANDBOX
from reconciler.daemon.timing import REQUEST_BACKOFF
from reconciler.engine.apply.effects import Outcome
from reconciler.engine.connect import open_clients
from reconciler.engine.converge import converge, observe_and_record, readers_of
from reconciler.engine.desired import desired_job
from reconciler.engine.workspace import Workspace, provider_of
from reconciler.plans.changes import Plan
from reconciler.specs.checkout import head
from reconciler.specs.inputs.cache import digest_repo
from reconciler.specs.inputs.digest import InputDigest
from reconciler.specs.loader import LoadedJob, LoadedProvider, LoadedRepo, scan_repo
from reconciler.specs.repo import RepoPaths, display
from reconciler.state.model import State


@dataclass(frozen=True)
class Loaded:
    ws: Workspace
    problems: tuple[Problem, ...] = ()
    clean: frozenset[str] = frozenset()
    held: frozenset[str] = frozenset()

    @property
    def inputs(self) -> list[Path]:
        return [Path(job.input_path) for job in self.ws.desired.values() if job.input_path]


def load(paths: RepoPaths, owner: str, previous: Loaded | None) -> Loaded:
    checkout = head(paths.repo)  # before the specs: never newer than what they say
    scan = scan_repo(paths, remember=True)
    problems = list(scan.problems)
    broken_files = {p.path for p in problems}
    candidates = {
        name: job
        for name, job in scan.repo.jobs.items()
        if not _touches(job, scan.repo.providers, broken_files, paths)
    }
    digests, trouble = _digest(candidates, scan.repo.providers, paths)
    problems += trouble
    desired = {}
    for name, digest in digests.items():
        try:
            provider = provider_of(scan.repo, candidates[name])
            desired[name] = desired_job(candidates[name], digest, paths.state.parent, provider)
        except SpecError as error:  # e.g. an input that cannot be split as the spec asks
            problems += error.problems
    jobs = {name: candidates[name] for name in desired}
    providers, notifications = dict(scan.repo.providers), dict(scan.repo.notifications)
    held: set[str] = set()
    if problems and previous is not None:
        for name, job in previous.ws.desired.items():
            if name not in desired and name in previous.ws.repo.jobs:
                desired[name], jobs[name] = job, previous.ws.repo.jobs[name]
                digests[name] = previous.ws.digests[name]
                held.add(name)
        providers = {**previous.ws.repo.providers, **providers}
        notifications = {**previous.ws.repo.notifications, **notifications}
    settings_broken = False
    try:
        budget = paths.repo_settings().budget  # the daemon's paths read it again on every load
    except SpecError as error:  # no change is made until reconciler.yaml reads again
        problems += error.problems
        budget, settings_broken = (previous.ws.budget if previous else None), True
    repo = LoadedRepo(jobs, providers, notifications)
    ws = Workspace(paths, repo, digests, desired, owner, budget, checkout)
    clean = frozenset() if settings_broken else frozenset(desired) - held
    return Loaded(ws, tuple(problems), clean, frozenset(held))


def _touches(
    job: LoadedJob, providers: dict[str, LoadedProvider], broken_files: set[str], paths: RepoPaths
) -> bool:
    """Whether the job's own file, or the file of the Provider it uses, has a problem."""
    files = [job.source]
    provider = providers.get(job.job.spec.provider or "")
    if provider is not None:
        files.append(provider.source)
    return any(display(path, paths) in broken_files for path in files)


def _digest(
    jobs: dict[str, LoadedJob], providers: dict[str, LoadedProvider], paths: RepoPaths
) -> tuple[dict[str, InputDigest], list[Problem]]:
    """The digests of every valid input: jobs whose input has a problem are left out."""
    try:
        return digest_repo(LoadedRepo(jobs, providers), paths), []
    except SpecError as error:
        broken = {p.path for p in error.problems}
        problems = list(error.problems)
    fine = {n: j for n, j in jobs.items() if display(j.input_path, paths) not in broken}
    try:
        return digest_repo(LoadedRepo(fine, providers), paths), problems
    except SpecError as error:  # an input changed between the two reads: hold them all this time
        return {}, problems + error.problems


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
