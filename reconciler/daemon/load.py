"""Loading the specs for the daemon, where one broken file must not stop the other jobs.

The loader reports every problem at once; here the jobs are sorted into three kinds:
- clean: its spec file, its Provider's file and its input all validate: it converges;
- held: something of it does not validate, but an earlier load knew it: it keeps that
  last good definition, so the planner sees no reason to cancel or replace it;
- unknown: broken and never seen valid. It is not desired, so a plan would call it
  removed: the pass refuses any change to a job that is not clean (see watch_pass).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from reconciler.common.errors import Problem, SpecError
from reconciler.engine.desired import desired_job
from reconciler.engine.workspace import Workspace, provider_of
from reconciler.specs.checkout import head
from reconciler.specs.inputs.cache import digest_repo
from reconciler.specs.inputs.digest import InputDigest
from reconciler.specs.loader import LoadedJob, LoadedProvider, LoadedRepo, scan_repo
from reconciler.specs.repo import RepoPaths, display


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
