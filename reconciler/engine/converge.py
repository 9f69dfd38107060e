"""One pass: observe → plan → apply → collect results → record; and `reconcile [--wait]`, passes
until every job's batches have finished.

`plan`, `apply`, `reconcile` and the daemon are this pass with different endings.  Observing
and planning only read from the provider; only apply/ writes.  Schedules are evaluated once
per pass, at the reconciler's clock (clock.py).

`reconcile` runs `converge` and, with `--wait`, again after a fixed poll.  What a pass did is
handed to `shown` (the CLI prints plans and transitions), so this loop stays free of
rendering.  A job waited for that ends failed, expired or cancelled (its retries spent) is a
failure of the wait: one line each, and a non-zero exit.
"""

from __future__ import annotations

import contextlib
import itertools
import tempfile
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path

from reconciler.api.batch import is_terminal
from reconciler.api.client import ProviderApi
from reconciler.api.reader import BatchReader
from reconciler.api.responses import CommandTimeoutError
from reconciler.common.errors import UserError
from reconciler.engine import clock
from reconciler.engine.answers import Answers, AnswerStore, open_store, planned_answers
from reconciler.engine.apply.effects import DEFAULT_PARALLELISM, Effects, Outcome
from reconciler.engine.apply.failures import Failure
from reconciler.engine.apply.intents import in_flight, quarantine_seconds
from reconciler.engine.apply.leftovers import Leftovers
from reconciler.engine.apply.run import apply_plan
from reconciler.engine.clock import at_time
from reconciler.engine.desired import with_input_changes
from reconciler.engine.finish import finish_jobs
from reconciler.engine.observe import observe
from reconciler.engine.results import results_notes
from reconciler.engine.retries import PartRetry, find_retries
from reconciler.engine.reuse import ReuseFolders, with_reuse
from reconciler.engine.sources import UploadSources
from reconciler.engine.workspace import Scope, Workspace, applied_from, behind, load_state, open_state
from reconciler.plans.admission import admit, as_booked, with_admitted, with_queue
from reconciler.plans.changes import DesiredJob, LiveBatch, Plan, PlanContext
from reconciler.plans.cost import check_budgets, refused, with_estimates, with_table_prices, without_refused
from reconciler.plans.decide import left_to_newer, live_by_job, make_plan
from reconciler.plans.record import record
from reconciler.plans.runs import RunChoice, choose_runs, duration
from reconciler.specs.inputs.cache import input_indexes
from reconciler.state.backend import StateBackend
from reconciler.state.model import JobState, State


@dataclass(frozen=True)
class Refreshed:
    """What a read-only refresh found, and the plan made from it."""

    live: list[LiveBatch]
    retries: Mapping[tuple[str, int], PartRetry]
    plan: Plan
    desired: Mapping[str, DesiredJob] = field(default_factory=dict)  # schedules evaluated now
    behind: frozenset[str] = frozenset()  # jobs left to a newer checkout (engine/workspace.py)


def refresh_and_plan(
    ws: Workspace,
    readers: Mapping[str, BatchReader],
    state: State,
    *,
    allow_empty: bool = False,
    scope: Scope | None = None,
    answers: AnswerStore | None = None,
    newest: dict[str, set[str]] | None = None,
    read_only: bool = False,
) -> Refreshed:
    """`answers`: the answer store of jobs with spec.reuse (opened here when not given).
    `newest`: filled with the ids at the top of each list (engine/observe.LiveView).
    `read_only` (`plan`): the answer store is only read, and nothing of reuse is written."""
    scope = scope or Scope()
    scope.check(ws, state)
    now = clock.now()
    desired = with_input_changes(at_time(ws.desired, now), state, input_indexes(ws.paths))
    live = observe(readers, ws.owner_tag, desired, state, newest)
    ctx = scope.context()
    return _planned(
        ws,
        readers,
        desired,
        state,
        live,
        now,
        allow_empty=allow_empty,
        ctx=ctx,
        answers=answers,
        no_reuse=scope.no_reuse,
        read_only=read_only,
    )


def _planned(
    ws: Workspace,
    readers: Mapping[str, BatchReader],
    desired: Mapping[str, DesiredJob],
    state: State,
    live: list[LiveBatch],
    now: datetime,
    *,
    allow_empty: bool,
    ctx: PlanContext,
    answers: AnswerStore | None = None,
    no_reuse: bool = False,
    queues: tuple[Mapping[str, DesiredJob], Sequence[LiveBatch], State] | None = None,
    read_only: bool = False,
) -> Refreshed:
    """`queues`: the jobs, batches and state admission counts the queues from, when the plan is
    of some jobs only (the daemon's partial pass): a queue holds every job's batches."""
    choices = choose_runs(desired, live_by_job(live), state, ctx)  # once per pass
    with contextlib.ExitStack() as stack:  # the reuse files last as long as the plan is made
        if reusing(desired, state):
            store, work = _reuse_of(ws, stack, answers, read_only)
            at = int(now.timestamp())
            desired = with_reuse(desired, state, live, choices, readers, store, work, at, no_reuse=no_reuse)
        return _plan_of(
            ws, readers, desired, state, live, now, choices, allow_empty=allow_empty, ctx=ctx, queues=queues
        )


def _reuse_of(
    ws: Workspace, stack: contextlib.ExitStack, answers: AnswerStore | None, read_only: bool
) -> tuple[Answers, ReuseFolders]:
    """The answer store a pass reuses from and its folders.  Read-only (`plan`): the store only
    read, and a starting run's file of what it sends in a scratch folder, gone after the plan."""
    inputs = input_indexes(ws.paths)
    if read_only:
        store = stack.enter_context(planned_answers(*_store_of(ws)))
        scratch = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="reconciler-plan-")))
        return store, ReuseFolders(ws.work_dir, inputs, scratch)
    return answers or stack.enter_context(answer_store(ws)), ReuseFolders(ws.work_dir, inputs)


def _plan_of(
    ws: Workspace,
    readers: Mapping[str, BatchReader],
    desired: Mapping[str, DesiredJob],
    state: State,
    live: list[LiveBatch],
    now: datetime,
    choices: Mapping[str, RunChoice],
    *,
    allow_empty: bool,
    ctx: PlanContext,
    queues: tuple[Mapping[str, DesiredJob], Sequence[LiveBatch], State] | None = None,
) -> Refreshed:
    runs = {name: choice.run for name, choice in choices.items()}
    retries = find_retries(desired, live, readers, ws.work_dir, runs, now.timestamp())
    counts = {key: retry.count for key, retry in retries.items()}
    waiting = in_flight(state, live, time.time(), quarantine_seconds())
    plan = make_plan(
        desired,
        state,
        live,
        retryable=counts,
        allow_empty=allow_empty,
        context=ctx,
        in_flight=waiting,
        runs=choices,
    )
    newer = behind(ws, state, (c.job for c in plan.pending))
    plan = left_to_newer(plan, newer)
    everyone, every_batch, whole_state = queues or (desired, live, state)
    plan = admit(plan, {**everyone, **desired}, every_batch, whole_state, time.time())  # what waits for room
    budget = ws.budget.max_usd_per_plan if ws.budget else None
    plan = check_budgets(with_estimates(plan, desired), desired, state, live, budget)
    plan = with_table_prices(plan, desired, now.date())
    plan = replace(plan, notes=results_notes(desired, state, ws.paths.repo))
    return Refreshed(live, retries, plan, desired, frozenset(newer))


def converge(
    ws: Workspace,
    apis: Mapping[str, ProviderApi],
    *,
    command: str,
    allow_empty: bool = False,
    rebuild: bool = False,
    parallelism: int = DEFAULT_PARALLELISM,
    confirm: Callable[[Plan], None] | None = None,
    scope: Scope | None = None,
    allow_over_budget: bool = False,
    early_leftovers: bool = True,
    held: StateBackend | None = None,
) -> tuple[Plan, State, Outcome]:
    """Under the owner's writer lock, for the whole pass: refresh, plan, let `confirm` veto
    (raise), apply all but the changes over a budget, record.  No other writer of this owner
    plans or writes meanwhile.  The refused changes are named in `outcome.over_budget`.
    `early_leftovers`: list the uploads a lost state may have left while observing (False when
    `confirm` is likely to refuse: nothing but the list of batches is read then).
    `held`: the backend, its writer lock already taken by the caller (`apply`, which sends
    the list of batches before the state is read: engine/workspace.writer_locked)."""
    scope = scope or Scope()
    with contextlib.ExitStack() as stack:
        backend = held
        if backend is None:
            backend = stack.enter_context(open_state(ws))
            stack.enter_context(backend.writer_lock(command))
        state = load_state(ws, rebuild=rebuild, backend=backend)
        answers = stack.enter_context(answer_store(ws)) if reusing(ws.desired, state) else None
        scope.check(ws, state)  # a misspelt --target sends nothing, not even the early listing
        leftovers = Leftovers.listing(state, apis, ws.owner_tag) if early_leftovers else None
        found = refresh_and_plan(
            ws, readers_of(apis), state, allow_empty=allow_empty, scope=scope, answers=answers
        )
        if confirm is not None:
            confirm(found.plan)
        over_budget = {} if allow_over_budget else refused(found.plan)
        sources = UploadSources(ws.work_dir, ws.owner_tag, found.retries)
        fx = Effects(apis, ws.owner_tag, backend.write, utc_now, sources, parallelism, leftovers)
        untouched = scope.untouched(ws, state)
        carried_out = without_refused(found.plan) if over_budget else found.plan
        state = with_admitted(state, carried_out, found.desired, time.time())
        state, outcome = apply_plan(
            carried_out, found.desired, found.live, state, fx, untouched, found.behind, applied_from(ws)
        )
        state = with_queue(state, carried_out, [*found.live, *outcome.touched])
        outcome.over_budget = over_budget
        left = untouched | found.behind  # results and usage of a job left to a newer checkout are its
        mine = {name: job for name, job in found.desired.items() if name not in left}
        finished = finish_jobs(mine, apis, state, outcome, ws.work_dir, ws.paths.repo, answers)
        state = backend.write(finished)  # once per pass, results before their status
    return found.plan, state, outcome


def reusing(desired: Mapping[str, DesiredJob], state: State) -> bool:
    """Whether a job asks for reuse, or a job's run recorded a choice it keeps (its spec may no
    longer ask: a run decides once)."""
    return any(
        job.reuse_max_age is not None or (name in state.jobs and state.jobs[name].reuse is not None)
        for name, job in desired.items()
    )


def answer_store(ws: Workspace) -> contextlib.AbstractContextManager[AnswerStore]:
    """The answer store of this workspace's owner: beside its state file, or in its database."""
    return open_store(*_store_of(ws))


def _store_of(ws: Workspace) -> tuple[Path, str | None, str]:
    return ws.paths.state, ws.paths.state_url, ws.owner_tag


def observe_and_record(
    ws: Workspace, readers: Mapping[str, BatchReader], command: str, backend: StateBackend | None = None
) -> State:
    """Refreshes observed status only: no change is planned or made."""
    if backend is None:
        with open_state(ws) as opened:
            return observe_and_record(ws, readers, command, opened)
    with backend.writer_lock(command):
        state = load_state(ws, backend=backend)
        desired = at_time(ws.desired, clock.now())
        live = observe(readers, ws.owner_tag, desired, state)
        newer = behind(ws, state, desired)  # a generation a newer checkout applied stays recorded
        observed = record(desired, state, live, now=utc_now(), observed_only=newer)
        return backend.write(as_booked(observed, state))


def plan_jobs(
    ws: Workspace,
    readers: Mapping[str, BatchReader],
    state: State,
    live: list[LiveBatch],
    names: Collection[str],
    every_batch: Sequence[LiveBatch] = (),
) -> Refreshed:
    """The daemon's plan for `names` only, from their batches as already observed (its live view,
    engine/observe.LiveView): no list is read, no other job is planned.  The "no specs at all"
    refusal is the whole-repo pass's: a subset is allowed to be empty.  `every_batch`: all the
    batches observed, which admission counts the queues from."""
    now = clock.now()
    wanted = {name: ws.desired[name] for name in names if name in ws.desired}
    recorded = {name: state.jobs[name] for name in names if name in state.jobs}
    some = state.model_copy(update={"jobs": recorded})
    desired = with_input_changes(at_time(wanted, now), some, input_indexes(ws.paths))
    queues = (ws.desired, every_batch or live, state)
    return _planned(ws, readers, desired, some, live, now, allow_empty=True, ctx=PlanContext(), queues=queues)


def converge_jobs(
    ws: Workspace,
    apis: Mapping[str, ProviderApi],
    backend: StateBackend,
    state: State,
    live: list[LiveBatch],
    found: Refreshed,
    *,
    parallelism: int,
) -> tuple[State, Outcome]:
    """Carries out `found` (plan_jobs' plan, or a whole pass's) and records the jobs it planned;
    every other job stays as it was, the very same objects, so the write holds only what
    changed.  `live`: every batch observed (uploads no batch reads are told by it).  The caller
    holds the writer lock."""
    over_budget = refused(found.plan)
    sources = UploadSources(ws.work_dir, ws.owner_tag, found.retries)
    fx = Effects(apis, ws.owner_tag, backend.write, utc_now, sources, parallelism)
    planned = {change.job for change in found.plan.changes} | set(found.desired)
    untouched = (state.jobs.keys() | ws.desired.keys()) - planned
    carried_out = without_refused(found.plan) if over_budget else found.plan
    desired = {**ws.desired, **found.desired}
    state = with_admitted(state, carried_out, found.desired, time.time())
    state, outcome = apply_plan(
        carried_out, desired, live, state, fx, untouched, found.behind, applied_from(ws)
    )
    state = with_queue(state, carried_out, [*live, *outcome.touched])
    outcome.over_budget = over_budget
    mine = {name: job for name, job in found.desired.items() if name not in found.behind}
    with contextlib.ExitStack() as stack:
        answers = stack.enter_context(answer_store(ws)) if reusing(mine, state) else None
        finished = finish_jobs(mine, apis, state, outcome, ws.work_dir, ws.paths.repo, answers)
    return backend.write(finished), outcome


def readers_of(apis: Mapping[str, ProviderApi]) -> dict[str, BatchReader]:
    return {name: api.reader for name, api in apis.items()}


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


WAIT_POLL_SECONDS = 1.0
# `--wait` looks every second at first, then less often the longer it has waited: every tenth of
# the time waited so far, at most every 30 s.  A batch that takes T is seen done at most T/10
# late (30 s for a long one); a 24-hour wait lists some 2,900 times instead of 86,000.
WAIT_POLL_GROWTH = 0.1
WAIT_POLL_MAX_SECONDS = 30.0
COMMAND = "reconciler reconcile"
# `--timeout` unless given: a batch may take its whole completion window, then results are
# collected; an hour on top covers finalizing, downloads and notifications.
TIMEOUT_MARGIN_SECONDS = 3600.0
_WINDOW_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def default_timeout(desired: Mapping[str, DesiredJob]) -> float:
    """The longest completion window of the jobs (24h when there are none) plus the margin."""
    windows = [_seconds(job.completion_window) for job in desired.values()]
    return max(windows, default=_seconds("24h")) + TIMEOUT_MARGIN_SECONDS


def _seconds(window: str) -> float:
    return float(window[:-1]) * _WINDOW_UNITS[window[-1]]


@dataclass(frozen=True)
class WaitOptions:
    wait: bool = False
    timeout: float = _seconds("24h") + TIMEOUT_MARGIN_SECONDS
    allow_empty: bool = False
    rebuild: bool = False
    parallelism: int = DEFAULT_PARALLELISM
    scope: Scope = field(default_factory=Scope)
    allow_over_budget: bool = False
    ends_at: float | None = None  # monotonic: when the command began, plus `timeout`


def converge_until_done(
    ws: Workspace,
    apis: Mapping[str, ProviderApi],
    options: WaitOptions,
    shown: Callable[[Plan, State], None],
) -> tuple[Plan, Outcome]:
    """One pass, or with `wait` passes until done; the last plan and the summed outcome."""
    deadline = options.ends_at if options.ends_at is not None else time.monotonic() + options.timeout
    total = Outcome()
    waiting: list[str] = []
    started, holds = time.monotonic(), ServerWaits()
    for attempt in itertools.count():
        try:
            plan, state, outcome = converge(
                ws,
                apis,
                command=COMMAND,
                allow_empty=options.allow_empty,
                rebuild=options.rebuild and attempt == 0,
                parallelism=options.parallelism,
                scope=holds.narrowed(options.scope, ws, time.monotonic()),
                allow_over_budget=options.allow_over_budget,
            )
        except CommandTimeoutError as error:
            shown_waiting = holds.named(waiting, time.monotonic())
            raise UserError(timed_out(options.timeout, shown_waiting, during=str(error))) from None
        holds.heard(outcome.failures, time.monotonic())
        shown(plan, state)
        total.created += outcome.created
        total.cancelled += outcome.cancelled
        total.failures = outcome.failures  # only what still fails at the end counts
        total.over_budget = outcome.over_budget
        waiting = unfinished(ws, state, options.scope.targets)
        if not options.wait or not waiting:
            if options.wait:
                total.failures = ended_badly(ws, state, options.scope.targets) + total.failures
            return plan, total
        now = time.monotonic()
        if now + WAIT_POLL_SECONDS >= deadline:  # no pass starts only to be cut off
            raise UserError(timed_out(options.timeout, holds.named(waiting, now)))
        time.sleep(min(wait_poll_seconds(now - started), deadline - now - WAIT_POLL_SECONDS))
    raise AssertionError("unreachable")


def wait_poll_seconds(waited: float) -> float:
    """Seconds until `--wait` looks again, `waited` seconds into the wait."""
    return min(WAIT_POLL_MAX_SECONDS, max(WAIT_POLL_SECONDS, waited * WAIT_POLL_GROWTH))


@dataclass
class ServerWaits:
    """Jobs a server told to wait (its Retry-After, past what a request sleeps through): `--wait`
    leaves each alone until its wait is over, instead of sending it again on every pass."""

    until: dict[str, float] = field(default_factory=dict)  # job -> monotonic end of its wait
    asked: dict[str, float] = field(default_factory=dict)  # job -> the seconds the server named

    def heard(self, failures: list[Failure], now: float) -> None:
        for failure in failures:
            if failure.job is not None and failure.retry_after is not None and failure.retry_after > 0:
                end = now + failure.retry_after
                if end > self.until.get(failure.job, 0.0):
                    self.until[failure.job], self.asked[failure.job] = end, failure.retry_after

    def narrowed(self, scope: Scope, ws: Workspace, now: float) -> Scope:
        """`scope` without the jobs still waiting: a pass leaves them as recorded.  Without
        --target, the specs' jobs are the targets: a job whose spec is gone waits too (the first
        pass, before any wait, already acted on it)."""
        held = self.held(now)
        if not held:
            return scope
        targets = (scope.targets if scope.targets is not None else frozenset(ws.desired)) - held
        return replace(scope, targets=targets, replace=scope.replace - held)

    def held(self, now: float) -> frozenset[str]:
        return frozenset(job for job, end in self.until.items() if end > now)

    def named(self, jobs: list[str], now: float) -> list[str]:
        """`nightly-eval (its provider asked to wait 5m)` for a job still held by a server's wait."""
        held = self.held(now)
        return [
            f"{j} (its provider asked to wait {duration(self.asked[j])})" if j in held else j for j in jobs
        ]


def timed_out(timeout: float, waiting: list[str], during: str = "") -> str:
    """The command's own limit ended it, not the provider: what ran on, and how to wait longer."""
    running = f"; still running: {', '.join(waiting)}" if waiting else ""
    return (
        f"{during or '--timeout ran out while waiting'}{running}; nothing is lost, the next "
        f"reconcile picks up from here; to wait longer, raise --timeout (it was {duration(timeout)}; "
        "by default the longest completion_window plus 1h)"
    )


def waited_for(ws: Workspace, state: State, targets: frozenset[str] | None) -> dict[str, JobState]:
    return {
        name: state.jobs[name]
        for name, job in ws.desired.items()
        if not job.suspend and name in state.jobs and (targets is None or name in targets)
    }


def unfinished(ws: Workspace, state: State, targets: frozenset[str] | None = None) -> list[str]:
    """Jobs with something still running or owed (a create pending, results to collect)."""
    jobs = waited_for(ws, state, targets)
    return sorted(name for name, job in jobs.items() if job.status != "none" and not is_terminal(job.status))


def ended_badly(ws: Workspace, state: State, targets: frozenset[str] | None) -> list[Failure]:
    """`nightly-eval: ended expired (3/29/32)` for each job waited for that did not complete."""
    ended = []
    for name, job in waited_for(ws, state, targets).items():
        if is_terminal(job.status) and job.status != "completed":
            counts = job.request_counts
            done = f"{counts.get('completed', 0)}/{counts.get('failed', 0)}/{counts.get('total', 0)}"
            message = f"ended {job.status} ({done} done/failed/total)"
            ended.append(Failure(job=name, step="run", message=message, provider=job.provider, api=False))
    return ended
