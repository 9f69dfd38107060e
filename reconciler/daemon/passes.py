"""One daemon pass: the specs loaded so that one broken file does not stop the other jobs, and
the pass itself, guarded while some specs do not validate: a whole one (every job, the whole
list) or one of only the jobs something happened to.

The loader reports every problem at once; here the jobs are sorted into three kinds:
- clean: its spec file, its Provider's file and its input all validate: it converges;
- held: something of it does not validate, but an earlier load knew it: it keeps that
  last good definition, so the planner sees no reason to cancel or replace it;
- unknown: broken and never seen valid. It is not desired, so a plan would call it removed.

When the specs are broken, a change to any job that is not clean is refused as a whole and
the pass only observes: an invalid spec set must never cancel, forget or re-create anything.
The clients stay open between passes and are reopened only when the providers in use, or
their definitions, change.

A pass costs what changed (`Leader`).  A file event reads again only the files it names
(`reload_changed`: a spec file parsed, the jobs of a changed input digested), and the pass that
follows plans and records only the jobs it touched, from the leader's live view
(engine/observe.LiveView) and the newest list page; a webhook reads its one batch; a poll reads
the active batches.  A whole pass (every job, the whole list) runs first, on the resync
interval while anything runs, and after any doubt: a failed or refused request or pass, a
response lost, the state written by someone else, a leadership change, specs that do not
validate, a retry or resume or duplicate to handle; it is what catches drift and foreign changes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from reconciler.api.client import ProviderApi
from reconciler.common.errors import PlanRefusedError, Problem, SpecError
from reconciler.common.limits import SANDBOX
from reconciler.daemon.timing import REQUEST_BACKOFF
from reconciler.engine.apply.effects import Outcome
from reconciler.engine.connect import open_clients
from reconciler.engine.converge import (
    Refreshed,
    converge_jobs,
    observe_and_record,
    plan_jobs,
    readers_of,
    refresh_and_plan,
)
from reconciler.engine.desired import desired_job
from reconciler.engine.observe import LiveView, read_by_id, read_newest
from reconciler.engine.workspace import Workspace, load_state, provider_of
from reconciler.plans.changes import Action, DesiredJob, Plan
from reconciler.specs.checkout import head
from reconciler.specs.inputs.cache import digest_repo
from reconciler.specs.inputs.digest import InputDigest
from reconciler.specs.loader import (
    LoadedJob,
    LoadedProvider,
    LoadedRepo,
    read_spec_file,
    scan_repo,
)
from reconciler.specs.models import BatchJob
from reconciler.specs.repo import SPEC_SUFFIXES, RepoPaths, display
from reconciler.state.backend import StateBackend
from reconciler.state.model import State


@dataclass(frozen=True)
class Loaded:
    ws: Workspace
    problems: tuple[Problem, ...] = ()
    clean: frozenset[str] = frozenset()
    held: frozenset[str] = frozenset()
    by_file: Mapping[Path, frozenset[str]] = field(default_factory=dict)  # spec or input file → its jobs
    whole_only: bool = True  # a job's results may clash with any other job's files: whole loads only
    scheduled: Mapping[str, DesiredJob] = field(default_factory=dict)  # the jobs with a schedule

    @property
    def inputs(self) -> list[Path]:
        return [Path(job.input_path) for job in self.ws.desired.values() if job.input_path]


def _by_file(jobs: Iterable[tuple[str, LoadedJob]]) -> dict[Path, frozenset[str]]:
    """Spec file → the jobs it defines; input file → the jobs that read it."""
    found: dict[Path, set[str]] = {}
    for name, job in jobs:
        found.setdefault(job.source, set()).add(name)
        found.setdefault(job.input_path, set()).add(name)
    return {path: frozenset(names) for path, names in found.items()}


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
    whole_only = any(job.results_path is not None for job in jobs.values())
    scheduled = {name: job for name, job in desired.items() if job.schedule is not None}
    return Loaded(ws, tuple(problems), clean, frozenset(held), _by_file(jobs.items()), whole_only, scheduled)


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


def reload_changed(
    paths: RepoPaths, previous: Loaded, changed: Collection[Path]
) -> tuple[Loaded, set[str], set[str]] | None:
    """The load after only `changed` files changed: those spec files read again, the jobs that read
    a changed input digested again, nothing else; the jobs whose definition came, went or changed;
    and every job read again or gone (a label edit changes no definition).  None when only a whole
    load can tell: specs that do not validate (before or now), a Provider or Notification, a name
    moving between files, a folder, results."""
    ws = previous.ws
    if previous.problems or previous.held or previous.whole_only or paths != ws.paths:
        return None
    specs = paths.specs.absolute()
    spec_files = {p for p in changed if p.suffix in SPEC_SUFFIXES and p.is_relative_to(specs)}
    if any(p.is_relative_to(specs) and p not in spec_files for p in changed):
        return None  # a folder under the specs, or a file of another kind there
    if any(p in spec_files for p in _other_documents(ws.repo)):
        return None
    jobs = dict(ws.repo.jobs)
    gone = {name for path in spec_files for name in previous.by_file.get(path, ())}
    for name in gone:
        del jobs[name]
    added: dict[str, LoadedJob] = {}
    for path in spec_files:
        documents, found, problems = read_spec_file(path, paths, ws.repo.providers)
        batch_jobs = [d for d in documents if isinstance(d.model, BatchJob)]
        if problems or len(batch_jobs) != len(documents) or len(found) != len(batch_jobs):
            return None
        if any(name in jobs or name in added for name in found) or any(
            j.results_path for j in found.values()
        ):
            return None
        added |= found
    jobs |= added
    read_again = set(added) | {n for p in changed if p not in spec_files for n in previous.by_file.get(p, ())}
    fresh = _desired_of({n: jobs[n] for n in read_again if n in jobs}, ws, paths)
    if fresh is None:
        return None
    digests, desired = dict(ws.digests), dict(ws.desired)
    for name in gone - set(jobs):
        digests.pop(name, None)
        desired.pop(name, None)
    for name, (digest, job) in fresh.items():
        digests[name], desired[name] = digest, job
    touched = {n for n in gone | read_again if ws.desired.get(n) != desired.get(n)}
    repo = LoadedRepo(jobs, ws.repo.providers, ws.repo.notifications)
    now = dataclasses.replace(ws, repo=repo, digests=digests, desired=desired)
    index = _reindexed(previous, gone, {name: jobs[name] for name in added})
    scheduled = _rescheduled(previous.scheduled, desired, touched)
    loaded = Loaded(now, (), frozenset(desired), frozenset(), index, False, scheduled)
    return loaded, touched, gone | read_again


def _rescheduled(
    scheduled: Mapping[str, DesiredJob], desired: Mapping[str, DesiredJob], touched: Collection[str]
) -> Mapping[str, DesiredJob]:
    """`scheduled` after the jobs `touched` changed: the same mapping when none of them has or
    had a schedule (the usual case: nothing per job of the repo is done)."""
    if not any(name in scheduled or getattr(desired.get(name), "schedule", None) for name in touched):
        return scheduled
    now = {name: job for name, job in scheduled.items() if name not in touched}
    now |= {n: job for n in touched if (job := desired.get(n)) is not None and job.schedule is not None}
    return now


def _reindexed(
    previous: Loaded, gone: Collection[str], added: Mapping[str, LoadedJob]
) -> dict[Path, frozenset[str]]:
    """`previous.by_file` without the jobs `gone`, with those `added`: only their files copied."""
    index = dict(previous.by_file)
    for name in gone:
        job = previous.ws.repo.jobs[name]
        for path in (job.source, job.input_path):
            index[path] = index.get(path, frozenset()) - {name}
    for name, job in added.items():
        for path in (job.source, job.input_path):
            index[path] = index.get(path, frozenset()) | {name}
    return index


def _other_documents(repo: LoadedRepo) -> set[Path]:
    return {p.source for p in repo.providers.values()} | {n.source for n in repo.notifications.values()}


def _desired_of(
    jobs: dict[str, LoadedJob], ws: Workspace, paths: RepoPaths
) -> dict[str, tuple[InputDigest, DesiredJob]] | None:
    try:
        digests = digest_repo(LoadedRepo(jobs, ws.repo.providers), paths)
        return {
            name: (
                digests[name],
                desired_job(job, digests[name], paths.state.parent, provider_of(ws.repo, job)),
            )
            for name, job in jobs.items()
        }
    except SpecError:  # the whole load words it
        return None


COMMAND = "reconciler reconcile --watch"


@dataclass(frozen=True)
class PassResult:
    before: State
    after: State
    plan: Plan = field(default_factory=Plan)
    outcome: Outcome = field(default_factory=Outcome)
    held_back: str | None = None  # why the pass only observed
    whole: bool = True  # every job planned, from the whole list
    held: frozenset[str] = frozenset()  # jobs whose cancel or forget waits for the files to settle
    settle_in: float | None = None  # seconds until the state's journal is due to be folded in
    # A pass over some jobs (`whole` False): the only jobs it may have changed; every other job
    # of `after` is the very object `before` holds (engine/converge.converge_jobs).
    jobs: frozenset[str] = frozenset()


class NeedsWholePass(Exception):
    """What an incremental pass found is not one it may act on: the loop runs a whole pass."""


@dataclass
class Owed:
    """What the next pass must look at, gathered between passes."""

    jobs: set[str] = field(default_factory=set)  # touched by a file change (or held back)
    batches: set[str] = field(default_factory=set)  # a webhook's
    poll: bool = False  # the active batches' turn
    settled: set[str] = field(default_factory=set)  # jobs whose files have been quiet long enough

    def __bool__(self) -> bool:
        return bool(self.jobs or self.batches or self.poll)


MAX_RETRIEVES = 100  # more active batches than this: the whole list is cheaper than each by id
OWN_WORK = frozenset({"pending", "collecting"})
CANCELS = frozenset({Action.CANCEL, Action.REPLACE, Action.DEDUPE, Action.FORGET})
WHOLE_LIST = frozenset({Action.RETRY, Action.RESUME, Action.DEDUPE})  # see engine/observe.py


@dataclass
class Leader:
    """What the leading replica keeps between passes: its live view of the owned batches, and
    the state it last wrote (anyone else's write is a doubt)."""

    view: LiveView | None = None
    written: tuple[int, str] | None = None
    whole_at: float | None = None  # time.monotonic() of the last whole pass

    def doubt(self) -> None:
        self.view = None

    def whole_pass(
        self,
        loaded: Loaded,
        clients: Mapping[str, ProviderApi],
        backend: StateBackend,
        *,
        allow_empty: bool,
        parallelism: int,
    ) -> PassResult:
        """Every job, from the whole list: the core's pass, and the live view it leaves."""
        ws, self.view = loaded.ws, None
        try:
            with backend.writer_lock(COMMAND):
                before = load_state(ws, backend=backend)
                newest: dict[str, set[str]] = {}
                # With broken specs the guard refuses every change to a job that is not clean,
                # which covers the core's "empty desired set" refusal, and says why.
                found = refresh_and_plan(
                    ws,
                    readers_of(clients),
                    before,
                    allow_empty=allow_empty or bool(loaded.problems),
                    newest=newest,
                )
                if loaded.problems:
                    _guard(loaded)(found.plan)
                after, outcome = converge_jobs(
                    ws, clients, backend, before, found.live, found, parallelism=parallelism
                )
                settle_in = backend.settle()
        except PlanRefusedError as refusal:
            observed = observe_and_record(ws, readers_of(clients), COMMAND, backend)
            with backend.writer_lock(COMMAND):  # its write is folded into the file in time too
                settle_in = backend.settle()
            return PassResult(observed, observed, held_back=str(refusal), settle_in=settle_in)
        self.view = LiveView.listed(found.live, newest, made=outcome.touched)
        self.written, self.whole_at = (after.serial, after.lineage), time.monotonic()
        return PassResult(before, after, found.plan, outcome, settle_in=settle_in)

    def some_pass(
        self,
        loaded: Loaded,
        clients: Mapping[str, ProviderApi],
        backend: StateBackend,
        owed: Owed,
        *,
        parallelism: int,
    ) -> PassResult:
        """Only the jobs `owed` names, and those whose batches it finds changed.  NeedsWholePass,
        before anything is changed, when that is not enough."""
        ws, view = loaded.ws, self.view
        if view is None or loaded.problems:
            raise NeedsWholePass
        readers = readers_of(clients)
        with backend.writer_lock(COMMAND):
            state = load_state(ws, backend=backend)
            if (state.serial, state.lineage) != self.written:
                raise NeedsWholePass  # someone else wrote the state
            names = set(owed.jobs)
            named = [view.batches[i] for i in sorted(owed.batches) if i in view.batches]
            names |= read_by_id(view, readers, ws.owner_tag, ws.desired, named)
            newest_read = False
            if owed.poll:
                changed, shown = read_newest(view, readers, ws.owner_tag, ws.desired, readers.keys())
                active = [b for b in view.active() if b.id not in shown]
                if len(active) > MAX_RETRIEVES:
                    raise NeedsWholePass
                names |= changed | read_by_id(view, readers, ws.owner_tag, ws.desired, active)
                names |= _owed_work(state, ws)
                newest_read = True
            names.discard("")
            names |= _queued_behind(state, ws, names)
            if not names:  # looked, and found nothing new: a pass all the same
                return PassResult(state, state, whole=False, settle_in=backend.settle())
            found = plan_jobs(ws, readers, state, view.of_jobs(names), names, view.for_queues())
            if not newest_read and any(c.creates for c in found.plan.pending):
                # Another writer of this owner may have made it just now: the newest page says.
                changed, _ = read_newest(view, readers, ws.owner_tag, ws.desired, _providers(found))
                if changed - {""}:
                    names |= changed - {""}
                    found = plan_jobs(ws, readers, state, view.of_jobs(names), names, view.for_queues())
            if any(c.action in WHOLE_LIST for c in found.plan.pending):
                raise NeedsWholePass
            held = frozenset(
                c.job for c in found.plan.pending if c.action in CANCELS and c.job in owed.jobs - owed.settled
            )
            after, outcome = converge_jobs(
                ws, clients, backend, state, view.all(), _without(found, held), parallelism=parallelism
            )
            view.made(outcome.touched)
            settle_in = backend.settle()
        self.written = (after.serial, after.lineage)
        jobs = frozenset(names | {c.job for c in found.plan.changes})
        return PassResult(
            state, after, found.plan, outcome, whole=False, held=held, settle_in=settle_in, jobs=jobs
        )


def _owed_work(state: State, ws: Workspace) -> set[str]:
    """Jobs a poll looks at whatever their batches say: creates pending, results to collect, a
    failed start's restart, a schedule's slot."""
    owed = {name for name, job in state.jobs.items() if job.status in OWN_WORK}
    return owed | {name for name, job in ws.desired.items() if job.schedule is not None}


def _queued_behind(state: State, ws: Workspace, names: Collection[str]) -> set[str]:
    """The queued jobs a pass over `names` plans too: those waiting in the queue of a model one of
    `names` uses, whose batch may have finished (room made) or moved on (their estimated starts
    told again).  A model's queue is admitted into as a whole: a queued job left out would be
    overtaken by one planned behind it."""
    models = {(job.provider, job.model) for n in names if (job := ws.desired.get(n)) is not None}
    return {
        name
        for name, place in state.queue.places.items()
        if name in ws.desired and (place.provider, place.model) in models
    }


def _providers(found: Refreshed) -> set[str]:
    return {c.provider for c in found.plan.pending if c.creates}


def _without(found: Refreshed, held: Iterable[str]) -> Refreshed:
    """`found` without the jobs in `held`: not changed, not recorded, planned again later."""
    left = set(held)
    if not left:
        return found
    plan = dataclasses.replace(found.plan, changes=tuple(c for c in found.plan.changes if c.job not in left))
    desired = {name: job for name, job in found.desired.items() if name not in left}
    return dataclasses.replace(found, plan=plan, desired=desired)


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

    def clients_for(self, loaded: Loaded, state: State | None) -> Mapping[str, ProviderApi]:
        ws = loaded.ws
        providers = ws.providers(state) if state is not None else {j.provider for j in ws.desired.values()}
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
