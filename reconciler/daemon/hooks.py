"""What the loop tells the rest of the daemon after each load and pass: the dashboard's board,
the notification announcer and the webhook inbox (`Hooks`; without them, the defaults, it
tells nobody), and the log and the metrics, one line per action and per status transition
(`report_pass`).

    nightly-eval: + create batch_abc (3 requests: no batch yet)
    nightly-eval: validating → in_progress (0/3)
    nightly-eval: in_progress → completed (3/3, output file-xyz)

The announcer sends notifications on a thread of its own: after each pass the loop adds its
events to the outbox (a short locked write) and the thread sends them, so a slow or hanging
channel never holds up a pass.  On start it sends what a crash or a stop left in the outbox;
after a failed send it wakes when the backoff is over, even if no pass runs.
"""

from __future__ import annotations

import os
import threading
import time
from collections import Counter
from collections.abc import Collection, Iterable, Mapping

from reconciler.api.batch import is_terminal
from reconciler.common.errors import ApiError, ApiStatusError, ReconcilerError
from reconciler.daemon.board import Board, LastPass, Metrics
from reconciler.daemon.passes import Loaded, PassResult
from reconciler.daemon.timing import (
    IDLE,
    Cadence,
    earliest,
    next_poll,
    polled_status,
    watched_statuses,
)
from reconciler.daemon.webhooks import WebhookInbox
from reconciler.engine.apply.effects import Outcome
from reconciler.engine.apply.failures import Failure, describe, reason
from reconciler.engine.converge import utc_now
from reconciler.engine.events import EventLog, report_transitions
from reconciler.engine.notify.courier import Courier, OpenState, enqueue, source_of
from reconciler.plans.changes import SYMBOLS, Action, Change, DesiredJob
from reconciler.plans.wording import budget_warning, change_words
from reconciler.specs.loader import LoadedNotification
from reconciler.specs.models import NotificationSpec
from reconciler.state.model import JobState, State


def report_pass(result: PassResult, log: EventLog, metrics: Metrics) -> None:
    for change in result.plan.pending:
        if change.job not in result.outcome.over_budget:  # refused ones: daemon/loop.py says so once
            _report_change(change, result.outcome, log, metrics)
    for failure in result.outcome.failures:
        _report_failure(failure, log, metrics)
    for passed in result.plan.warnings:
        figures = {"spent_usd": passed.spent_usd, "budget_usd": passed.budget_usd}
        log.warning("over_budget", budget_warning(passed), job=passed.job, **figures)
    if result.whole:
        report_transitions(result.before, result.after, log)
        metrics.set_jobs(Counter(job.status for job in result.after.jobs.values()))
        metrics.count_usage(result.after.jobs)
    else:  # only its own jobs can have changed: no other is looked at
        before, after = _own_jobs(result)
        report_transitions(_with_jobs(result.before, before), _with_jobs(result.after, after), log)
        metrics.move_jobs([job.status for job in before.values()], [job.status for job in after.values()])
        metrics.count_usage(after)
    metrics.set_over_budget(result.outcome.over_budget.keys())


def _own_jobs(result: PassResult) -> tuple[dict[str, JobState], dict[str, JobState]]:
    """A pass over some jobs: those jobs as they were and as they are."""
    before, after = result.before.jobs, result.after.jobs
    return (
        {name: before[name] for name in result.jobs if name in before},
        {name: after[name] for name in result.jobs if name in after},
    )


def _with_jobs(state: State, jobs: dict[str, JobState]) -> State:
    return state.model_copy(update={"jobs": jobs})


def count_api_error(error: ApiError, metrics: Metrics) -> None:
    status = str(error.status) if isinstance(error, ApiStatusError) else "connection"
    metrics.api_errors.labels(status=status).inc()


def _report_failure(failure: Failure, log: EventLog, metrics: Metrics) -> None:
    log.error(
        "action_failed",
        describe(failure),
        job=failure.job,
        step=failure.step,
        part=failure.part,
        attempt=failure.attempt,
        status=failure.status,
        reason=reason(failure),
    )
    if failure.api:  # an input file that changed, a full disk: not the provider's errors
        metrics.api_errors.labels(status=failure.status_label).inc()


def _report_change(change: Change, outcome: Outcome, log: EventLog, metrics: Metrics) -> None:
    touched = [b.id for b in outcome.touched if b.job == change.job]
    cancelled = [i for i in touched if i in change.cancel]
    created = [i for i in touched if i not in change.cancel]
    shown = {
        Action.REPLACE: f"{_ids(cancelled or change.cancel)} → {_ids(created)}",
        Action.CANCEL: _ids(cancelled or change.cancel),
        Action.DEDUPE: _ids(cancelled or change.cancel),
        Action.ADOPT: _ids(change.adopt),
        Action.FORGET: "",
    }.get(change.action, _ids(created))
    symbol = SYMBOLS[change.action]
    ids = f" {shown}" if shown else ""
    failed = change.job in outcome.failed_jobs
    log.emit(
        "error" if failed else "info",
        "action",
        f"{change.job}: {symbol} {change.action.value}{ids} ({change_words(change)})",
        job=change.job,
        action=change.action.value,
        reason=change_words(change),
        reason_code=change.reason.code.value,
        created=created,
        cancelled=cancelled,
    )
    metrics.actions.labels(kind=change.action.value, result="failed" if failed else "ok").inc()


def _ids(ids: list[str] | tuple[str, ...]) -> str:
    return ", ".join(ids) if ids else "(none)"


COMMAND = "reconciler reconcile --watch"
RETRY_AFTER_ERROR_SECONDS = 5.0


class Announcer:
    def __init__(self, open_state: OpenState, owner_tag: str, log: EventLog, metrics: Metrics) -> None:
        self.log, self.metrics = log, metrics
        self.courier = Courier(open_state, COMMAND, source_of(owner_tag), log, self._count)
        self._notifications: Mapping[str, NotificationSpec] = {}
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="announcer", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def follow(self, notifications: Mapping[str, LoadedNotification]) -> None:
        """The Notifications of the latest load (replaced whole: the thread reads it unlocked)."""
        self._notifications = {name: told.notification.spec for name, told in notifications.items()}

    def after_pass(self) -> None:
        """On the loop's thread, after a successful pass: the pass's events into the outbox."""
        try:
            _, dropped = enqueue(self.courier.open_state, self._notifications, utc_now(), COMMAND)
        except ReconcilerError as error:  # e.g. a CLI run holds the lock: the next pass finds them
            self.log.warning("notify_failed", f"events not recorded this pass: {'; '.join(error.lines())}")
            return
        if dropped:
            self.log.error("notify_dropped", f"the outbox is full: {dropped} oldest events dropped")
        self._wake.set()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=2.0)
        self.courier.close()

    def _run(self) -> None:
        due: float | None = 0.0  # look at the outbox once at start: a crash may have left some
        while not self._stop.is_set():
            self._wake.wait(None if due is None else max(due - time.time(), 0.0))
            self._wake.clear()
            if self._stop.is_set():
                return
            try:
                due = self.courier.round(self._notifications, os.environ) if self._notifications else None
            except Exception as error:  # the lock held by a CLI run, a damaged state, a bug: try again
                lines = (
                    error.lines()
                    if isinstance(error, ReconcilerError)
                    else [f"{type(error).__name__}: {error}"]
                )
                self.log.warning("notify_failed", f"notifications not sent: {'; '.join(lines)}")
                due = time.time() + RETRY_AFTER_ERROR_SECONDS

    def _count(self, name: str, delivered: bool) -> None:
        counter = self.metrics.notifications_sent if delivered else self.metrics.notifications_failed
        counter.labels(notification=name).inc()


# With webhooks, polling is only the safety net for a lost delivery.
WEBHOOK_POLL_FACTOR = 10
OWN_WORK = frozenset({"pending", "collecting"})  # the reconciler's, not the provider's: no webhook says it


class Hooks:
    def __init__(
        self,
        board: Board | None = None,
        announcer: Announcer | None = None,
        inbox: WebhookInbox | None = None,
    ) -> None:
        self.board = board or Board()
        self.announcer, self.inbox = announcer, inbox
        self.covered: tuple[str, ...] = ()  # providers whose webhooks are verified
        # The jobs with something to poll for (a status neither finished nor idle, of the job or
        # of a batch): only these can bring a poll forward, so a pass over a few jobs updates
        # theirs and the next poll is told from them, not from every job of the repo.
        self.unsettled: dict[str, JobState] = {}
        self._specced: dict[str, DesiredJob] = {}
        self._labels: dict[str, Mapping[str, str]] = {}

    def loaded(self, loaded: Loaded, read: Collection[str] | None = None) -> None:
        """`read`: only these jobs were read again (or are gone); None: a whole load."""
        repo = loaded.ws.repo
        if self.announcer is not None:
            self.announcer.follow(repo.notifications)
        if self.inbox is not None:
            self.covered = self.inbox.configure(repo.providers, os.environ)
        desired = loaded.ws.desired
        if read is None:
            self._specced = {name: job for name, job in desired.items() if name not in loaded.held}
            self._labels = {name: job.job.metadata.labels for name, job in repo.jobs.items()}
        else:  # copied (the board's snapshot is read by other threads), only `read` looked at
            self._specced, self._labels = dict(self._specced), dict(self._labels)
            for name in read:
                self._specced.pop(name, None)
                self._labels.pop(name, None)
                if name in desired and name not in loaded.held:
                    self._specced[name] = desired[name]
                if name in repo.jobs:
                    self._labels[name] = repo.jobs[name].job.metadata.labels
        self.board.publish(
            problems=tuple(str(p) for p in loaded.problems),
            webhooks=self.covered,
            notifications=tuple(sorted(repo.notifications)),
            schedules={name: job.schedule for name, job in loaded.scheduled.items() if job.schedule},
            specced=self._specced,
            labels=self._labels,
        )

    def follow(self, result: PassResult) -> None:
        """Keeps `unsettled` as the pass left it: every job after a whole pass, its own else."""
        if result.whole:
            self.unsettled = {name: job for name, job in result.after.jobs.items() if _unsettled(job)}
            return
        for name in result.jobs:
            job = result.after.jobs.get(name)
            if job is not None and _unsettled(job):
                self.unsettled[name] = job
            else:
                self.unsettled.pop(name, None)

    def watched(self, state: State) -> State:
        """`state` with only the jobs that have something to poll for (`follow` first)."""
        return state.model_copy(update={"jobs": self.unsettled})

    def poll(self, state: State, skip: Iterable[str], cadence: Cadence) -> float | None:
        """Seconds until the next resync: jobs on a provider with webhooks only at a long interval.
        `state` may hold only the jobs with something to poll for (`watched`): no other moves it."""
        skipped = set(skip)
        hooked = {n for n, j in state.jobs.items() if j.provider in self.covered and n not in skipped}
        plain = next_poll(watched_statuses(state, skip=skipped | hooked), cadence)
        statuses = [
            s
            for n in hooked
            for s in (polled_status(state.jobs[n]), *(b.status for b in state.jobs[n].batches))
        ]
        own = cadence.quick if any(s in OWN_WORK for s in statuses) else None
        running = any(s not in IDLE and not is_terminal(s) for s in statuses)
        return earliest(plain, own, cadence.interval * WEBHOOK_POLL_FACTOR if running else None)

    def passed(self, number: int, result: PassResult, degraded: bool, delay: float | None) -> None:
        errors = [describe(failure) for failure in result.outcome.failures]
        errors += [result.held_back] if result.held_back else []
        now = time.time()
        last = LastPass(number, now, "degraded" if degraded else "ok", tuple(errors))
        self.board.publish(state=result.after, last_pass=last, next_pass_at=_at(now, delay))
        if self.announcer is not None:
            self.announcer.after_pass()

    def failed(self, number: int, message: str, delay: float) -> None:
        now = time.time()
        self.board.publish(last_pass=LastPass(number, now, "failed", (message,)), next_pass_at=now + delay)


def _at(now: float, delay: float | None) -> float | None:
    return None if delay is None else now + delay


def _unsettled(job: JobState) -> bool:
    """Whether the job or one of its batches is in a status polling looks at (timing.next_poll),
    or a failed start's restart waits (`pending`, timing.restart_wait): neither finished nor idle."""
    statuses = (job.status, *(record.status for record in job.batches))
    return any(status not in IDLE and not is_terminal(status) for status in statuses)
