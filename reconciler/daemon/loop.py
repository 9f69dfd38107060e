"""The daemon's loop: wait for a file change, a webhook, a due poll or resync, or a stop; load what
changed; pass over what it touched; repeat.

Nothing a pass raises ends the loop: a failed pass is logged in one line and retried
with a capped, jittered backoff (a server's Retry-After wins), and the state file keeps
the last good record of every job meanwhile.  `Settings` are what the daemon was started
with; where the repo is is worked out again on every load.

Only the replica that leads runs a pass (`Role`): the one the state backend's leadership guard
lets lead.  The daemon asks its backend for the guard (`StateBackend.leadership`) and never
looks at where the state is.  `reconcile --watch` against a database may run as several
replicas.  Before each pass a replica makes sure it leads (state/database.LeaderLock); a
standby checks again every half second.  A killed leader's lock goes when the server sees its
connection close, so a standby leads within a second; a leader whose host loses its network
is dropped by the server after about database.UNANSWERED_SECONDS of silence (keepalives and a
TCP user timeout the session asks for), so a standby leads some 10 to 15 seconds after the
cut, and the old leader, its calls failing after as long, steps down by itself.  On a state
file there is one daemon per file (state/file.DaemonLock), always leading.

What each wake costs is what changed (daemon/passes.Leader): a file event reloads the files it
names and passes over the jobs they touch, a webhook over its batch's job, a poll over the
active batches; a whole pass runs first, every resync interval while anything runs, and after
any doubt (a failed pass or action, a leadership change, a whole reload).  What a file change
would cancel waits until the files have been quiet for watch.SETTLE_SECONDS.  The state backend
is opened once and kept (reopened after a failed pass); a state file's journal is folded in
when due, between passes, and when the daemon stops.
"""

from __future__ import annotations

import contextlib
import gc
import random
import threading
import time
import traceback
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from reconciler.api.batch import is_terminal
from reconciler.common.errors import ApiError, ApiStatusError, LockHeldError, ReadProblem, ReconcilerError
from reconciler.daemon.board import Metrics
from reconciler.daemon.hooks import Hooks, count_api_error, report_pass
from reconciler.daemon.passes import (
    ClientPool,
    Leader,
    Loaded,
    NeedsWholePass,
    Owed,
    PassResult,
    load,
    reload_changed,
)
from reconciler.daemon.timing import Cadence, Wake, Waker, earliest, queue_wait, restart_wait, retry_delay
from reconciler.daemon.watch import SETTLE_SECONDS, FileWatcher, WatchTargets, targets_for, watched_files
from reconciler.daemon.web import Liveness
from reconciler.engine import clock
from reconciler.engine.apply.failures import server_wait
from reconciler.engine.clock import seconds_until_next
from reconciler.engine.events import EventLog
from reconciler.engine.workspace import load_state, open_backend
from reconciler.plans.reasons import OverBudget, ReasonCode
from reconciler.plans.wording import change_words, over_budget_words
from reconciler.specs import identity
from reconciler.specs.checkout import head
from reconciler.specs.repo import SETTINGS_FILE, RepoPaths, resolve_paths
from reconciler.state.backend import Leadership, StateBackend
from reconciler.state.model import State


@dataclass(frozen=True)
class Settings:
    state: Path  # fixed for the daemon's life: its lock guards this file
    repo_arg: str  # --repo and --specs as given, resolved again on every load:
    specs_arg: str | None  # git-sync swaps a symlink to a fresh checkout
    owner: str
    cadence: Cadence
    allow_empty: bool
    parallelism: int
    state_url: str | None = None  # a PostgreSQL state: replicas, one leading (Role)

    def paths(self) -> RepoPaths:
        current = resolve_paths(self.repo_arg, self.specs_arg, None)
        return RepoPaths(current.repo, current.specs, self.state, self.state_url)

    def links(self) -> list[Path]:
        """The given paths that may point elsewhere later: symlinks, or not there yet."""
        given = [Path(a).absolute() for a in (self.repo_arg, self.specs_arg) if a]
        return [p for p in given if p.is_symlink() or not p.exists()]


STANDBY_POLL_SECONDS = 0.5
COMMAND = "reconciler reconcile --watch"


# While a pass runs, the leader looks at its lock this often: a pass may wait long on a provider
# cut off with it, and the replica must still find out, and say, that it no longer leads.
LEADERSHIP_CHECK_SECONDS = 2.0


class Role:
    def __init__(self, lock: Leadership | None, log: EventLog, metrics: Metrics) -> None:
        self.lock, self.log, self.metrics = lock, log, metrics
        self.name = "leader" if lock is None or lock.always_leads else "starting"
        self._named_leader = False  # "standing by: X leads" said since the role last changed
        self._asking = threading.Lock()  # the lock's one connection: one question at a time
        self._set_gauge()

    def leads(self) -> bool:
        """Whether this replica may run a pass now; says so when that changes."""
        if self.lock is None or self.lock.always_leads:
            return True
        with self._asking:
            return self._ask()

    @property
    def elected(self) -> bool:
        """Leads by holding a lock others may take when it is lost (a database's), not alone."""
        return self.lock is not None and not self.lock.always_leads and self.name == "leader"

    @contextlib.contextmanager
    def checked_meanwhile(self) -> Iterator[None]:
        """Looks at the leader lock every few seconds while the block runs (a pass), so losing it
        is noticed and said while the pass still waits on something else."""
        if self.lock is None or self.lock.always_leads:
            yield
            return
        done = threading.Event()

        def check() -> None:
            while not done.wait(LEADERSHIP_CHECK_SECONDS) and self.name == "leader":
                with contextlib.suppress(Exception):  # said by leads(); the pass ends on its own
                    self.leads()

        watcher = threading.Thread(target=check, name="leadership-check", daemon=True)
        watcher.start()
        try:
            yield
        finally:
            done.set()

    def _ask(self) -> bool:
        assert self.lock is not None
        was = self.name
        try:
            leading = self.lock.try_lead(COMMAND)
        except Exception as error:
            if was == "leader":  # the database is out of reach: so is the lock, soon if not yet
                self.log.warning(
                    "stepped_down", f"lost the leader lock ({error}): standing by", role="standby"
                )
            self._become("standby")
            self._named_leader = False  # once the database answers again, say who leads
            raise
        if leading and was != "leader":
            self.log.info("leading", "leading: this replica runs the passes now", role="leader")
        if not leading and was == "leader":
            self.log.warning("stepped_down", "lost the leader lock: standing by", role="standby")
        elif not leading and not self._named_leader:
            self.log.info("standby", f"standing by: {self.lock.holder()} leads", role="standby")
        self._named_leader = not leading
        self._become("leader" if leading else "standby")
        return leading

    def _become(self, name: str) -> None:
        self.name = name
        self._set_gauge()

    def _set_gauge(self) -> None:
        self.metrics.leader.set(1 if self.name == "leader" else 0)


# Woken this much after a slot, so the pass sees the slot as due on every clock.
SLOT_MARGIN_SECONDS = 0.05


class Daemon:
    def __init__(
        self,
        settings: Settings,
        log: EventLog,
        metrics: Metrics,
        waker: Waker,
        hooks: Hooks | None = None,
        role: Role | None = None,
    ) -> None:
        self.settings, self.log, self.metrics, self.waker = settings, log, metrics, waker
        self.hooks = hooks or Hooks()  # the dashboard, notifications and webhooks hear of each pass
        self.role = role or Role(None, log, metrics)
        self.loaded: Loaded | None = None
        self.pool = ClientPool()
        self.watcher = FileWatcher(waker.files_changed, self._watch_failed)
        self.watch_broken = False
        self.watch_error: str | None = None
        self.targets: WatchTargets | None = None
        self.liveness = Liveness(settings.cadence.interval, metrics)
        self.liveness.role = self.role.name
        self.failing_jobs = 0  # passes in a row where some job's action failed
        self.rng = random.Random()
        self.said: set[str] = set()  # warnings already given since the specs last changed
        self.passes = 0
        self.leader = Leader()
        self.owed = Owed()
        self.held: frozenset[str] = frozenset()  # jobs whose cancel waits for the files to settle
        self.state: State | None = None  # as the last pass left it
        self.refused: dict[str, OverBudget] = {}  # job → why the last pass refused its change
        self.poll_at: float | None = 0.0  # time.monotonic() of the next poll; 0: at once
        self.settle_at: float | None = None
        self.compact_at: float | None = None
        self.lock_check_at = 0.0  # time.monotonic() when an idle elected leader next looks at its lock
        self._backend: contextlib.ExitStack | None = None
        self.backend: StateBackend | None = None

    def run(self) -> None:
        try:
            load_retry = self.reload()
            while self.waker.stop_reason is None:
                wait = self.step() if self.loaded is not None else None
                wake = self.waker.wait(earliest(wait, load_retry))
                if wake.stopped:
                    return
                load_retry = self._take(wake, load_retry)
        finally:
            self._fold_journal()
            self.watcher.close()
            self.pool.close()
            self._close_backend()

    def _take(self, wake: Wake, load_retry: float | None) -> float | None:
        """What woke the loop, loaded and turned into what the next pass owes."""
        self.owed.batches |= wake.batches
        self.owed.poll |= wake.refresh and not wake.batches
        again = self.watch_broken or load_retry is not None
        if not (wake.files or again or self._checkout_moved()):
            return None
        if wake.files and not again and wake.paths is not None and self._reload_changed(wake.paths):
            return None
        self.leader.doubt()  # a whole load: a whole pass follows
        return self.reload(changed=wake.files)

    def _reload_changed(self, changed: frozenset[Path]) -> bool:
        """Loads only what the changed files say; False when only a whole load can tell."""
        assert self.loaded is not None
        paths = self.settings.paths()
        whole = {paths.repo / SETTINGS_FILE, *self.settings.links()}
        if any(path in whole for path in changed):
            return False
        try:
            reloaded = reload_changed(paths, self.loaded, changed)
        except Exception:  # a file vanishing mid-read: the whole load words it
            return False
        if reloaded is None:
            return False
        self.loaded, touched, read = reloaded
        if not self._watch_inputs(touched):
            return False
        self.hooks.loaded(self.loaded, read)  # a label edit touches no job, but the dashboard shows it
        if touched:
            self.owed.jobs |= touched
            self.owed.settled -= touched
            self.settle_at = self.waker.last_file_event + SETTLE_SECONDS
        return True

    def _watch_inputs(self, touched: set[str]) -> bool:
        """The inputs of `touched` jobs watched too; False when the watch must be set up again."""
        assert self.loaded is not None
        targets = self.targets
        inputs = {
            Path(job.input_path) for n in touched if (job := self.loaded.ws.desired.get(n)) and job.input_path
        }
        if targets is None or not inputs - targets.files:
            return targets is not None
        if not all(any(p.is_relative_to(root) for root in targets.roots) for p in inputs):
            return False
        self.targets = WatchTargets(targets.roots, targets.trees, targets.files | inputs)
        return not self.watcher.follow(self.targets)

    def reload(self, changed: bool = True) -> float | None:
        """Loads the specs; on an unexpected error keeps the last load and says when to try again.
        `changed`: a file event asked for it (else a retry: problems already told are not again)."""
        try:
            self._load(changed)
        except Exception as error:  # a file vanishing mid-read, a bug: the loop must survive it
            delay = retry_delay(self.liveness.failed(), None, self.rng)
            self.log.error(
                "load_failed", f"cannot load the specs: {_one_line(error)}; retrying in {delay:.1f}s"
            )
            return delay
        assert self.loaded is not None
        if any(isinstance(problem, ReadProblem) for problem in self.loaded.problems):
            # No file event says when it can be read again (a descriptor freed): look each
            # interval, which also runs a pass, as polling a running batch would.
            return self.settings.cadence.interval
        return None

    def _load(self, changed: bool = True) -> None:
        """Loads the specs, then makes sure the watch covers every file they name."""
        previous = self.loaded
        for _ in range(3):  # a restarted watch may have missed a write: look once more
            paths = self.settings.paths()
            self.loaded = load(paths, self.settings.owner, self.loaded)
            files = watched_files(paths, self.loaded.inputs)
            self.targets = targets_for(paths.specs, files, self.settings.links())
            self.watch_broken = False
            if not self.watcher.follow(self.targets):
                break
        assert self.loaded is not None
        self.hooks.loaded(self.loaded)
        self.owed.poll = True  # a pass follows every whole load
        if (self.watch_broken or not changed) and previous and previous.problems == self.loaded.problems:
            return  # reloading on every pass, or trying again: say only what changed
        self.said.clear()
        for problem in self.loaded.problems:
            self.log.error("spec_invalid", str(problem), file=problem.path, line=problem.line)
        if self.loaded.held:
            held = ", ".join(sorted(self.loaded.held))
            self.log.warning("held", f"kept at their last valid definition until the specs validate: {held}")
        if previous and previous.problems and not self.loaded.problems:
            self.log.info("specs_valid", "the specs validate again")

    def _checkout_moved(self) -> bool:
        """A pull that changed no spec file still moves HEAD: the commit changes are recorded as
        made from must be the one checked out, or a newer writer's jobs would stay left alone."""
        if self.loaded is None:
            return False
        now = head(self.settings.paths().repo)
        was = self.loaded.ws.checkout
        return (now.sha if now else None) != (was.sha if was else None)

    def step(self) -> float | None:
        """Runs the pass owed, if any, and folds the state's journal in when due; returns the
        seconds until something is due (None: wait for an event)."""
        now = time.monotonic()
        if self.poll_at is not None and now >= self.poll_at:
            self.owed.poll, self.poll_at = True, None
        if self.settle_at is not None and now >= self.settle_at:
            quiet_at = self.waker.last_file_event + SETTLE_SECONDS  # any write, changed or not
            if quiet_at > now:
                self.settle_at = quiet_at
            else:
                self.owed.settled |= self.held
                self.owed.jobs |= self.held
                self.settle_at = None
        if self.owed:  # a doubt alone waits for the next look: a server's wait holds
            self.poll_at = _at(self.one_pass())
        if self.compact_at is not None and time.monotonic() >= self.compact_at:
            self._fold_journal(force=False)
        lock_check_at = self._idle_lock_check()
        return earliest(
            *(_until(at) for at in (self.poll_at, self.settle_at, self.compact_at, lock_check_at))
        )

    def _idle_lock_check(self) -> float | None:
        """An elected leader with nothing to do still looks at its lock every few seconds: cut
        off, it must find out and say it no longer leads (and its gauge stop saying it does),
        not learn it at the next file event.  Returns when it looks next."""
        if not self.role.elected:
            return None
        now = time.monotonic()
        if now >= self.lock_check_at:
            self.lock_check_at = now + LEADERSHIP_CHECK_SECONDS
            try:
                still = self.role.leads()
            except ReconcilerError:
                still = False  # said by leads(); the next pass reports the database's trouble
            if not still:
                self.leader.doubt()
                self.poll_at = now  # the next step stands by, or fails, as a pass does
                return now
        return self.lock_check_at

    def one_pass(self) -> float | None:
        """Runs a pass; returns seconds until the next poll is due (None: wait for an event)."""
        assert self.loaded is not None
        try:
            leading = self.role.name == "leader"
            leads = self.role.leads()
        except ReconcilerError as error:
            self.liveness.role = self.role.name
            self.leader.doubt()
            return self._failed(error, "; ".join(error.lines()))
        self.liveness.role = self.role.name
        if not leads:
            self.leader.doubt()
            self.liveness.standing_by()
            return STANDBY_POLL_SECONDS
        if not leading:
            self.leader.doubt()  # another replica may have led meanwhile
        owed, self.owed = self.owed, Owed(settled=self.owed.settled)
        self.passes += 1
        self.log.context = {"pass": self.passes}  # replaced whole: other threads read it
        try:
            with self.role.checked_meanwhile():
                result = self._pass(owed)
        except ReconcilerError as error:
            return self._failed(error, "; ".join(error.lines()), owed)
        except Exception as error:  # a bug: say so in one line, and keep the loop alive
            return self._failed(error, _one_line(error), owed)
        self.state = result.after
        self.hooks.follow(result)
        self.held = result.held
        self.compact_at = _at(result.settle_in)
        if not result.whole:  # the jobs it did not plan are as over budget as they were
            planned = {change.job for change in result.plan.changes}
            kept = {job: over for job, over in self.refused.items() if job not in planned}
            result.outcome.over_budget = kept | result.outcome.over_budget
        if result.held:
            self.settle_at = self.settle_at or self.waker.last_file_event + SETTLE_SECONDS
        self.owed.settled -= owed.settled - result.held
        if result.outcome.failures or result.held_back:
            self.leader.doubt()  # a lost answer, a refusal: the whole list says what happened
        if result.whole:
            # What a whole pass leaves (the state, the live view, the specs) lives on, and the
            # cyclic collector would walk it again and again (a sixth of an idle 10,000-job
            # daemon's time): it is set aside; what it drops is freed by reference counts.
            gc.freeze()
        queued = queue_wait(result.after, time.time())  # a batch of a queued model should be done
        return earliest(self._succeeded(result), self._next_slot(), self._next_restart(result), queued)

    def _pass(self, owed: Owed) -> PassResult:
        assert self.loaded is not None
        backend = self._state_backend()
        state = self.state or load_state(self.loaded.ws, backend=backend)  # its jobs name providers too
        clients = self.pool.clients_for(self.loaded, state)
        options = {"parallelism": self.settings.parallelism}
        if self.leader.view is not None and not self._resync_due(owed):
            try:
                return self.leader.some_pass(self.loaded, clients, backend, owed, **options)
            except NeedsWholePass:
                self.leader.doubt()
        return self.leader.whole_pass(
            self.loaded, clients, backend, allow_empty=self.settings.allow_empty, **options
        )

    def _resync_due(self, owed: Owed) -> bool:
        """A poll after a resync interval is a whole pass: what catches drift and foreign changes."""
        last = self.leader.whole_at
        return owed.poll and (last is None or time.monotonic() - last >= self.settings.cadence.interval)

    def _state_backend(self) -> StateBackend:
        """The daemon's state backend, opened once (again after a failed pass)."""
        if self.backend is None:
            stack = contextlib.ExitStack()
            paths, tag = self.settings.paths(), identity.owner_tag(self.settings.owner)
            self.backend = stack.enter_context(
                open_backend(paths.state, paths.state_url, tag, keep_journal=True)
            )
            self._backend = stack
        return self.backend

    def _close_backend(self) -> None:
        if self._backend is not None:
            with contextlib.suppress(Exception):
                self._backend.close()
        self._backend, self.backend = None, None

    def _fold_journal(self, force: bool = True) -> None:
        """Folds a state file's journal into the file: when due, and as the daemon stops."""
        self.compact_at = None
        if self.backend is None:
            return
        try:
            with self.backend.writer_lock(COMMAND, timeout=0):
                self.compact_at = _at(self.backend.settle(force=force))
        except LockHeldError:
            pass  # a command holds it: it folds the journal in as it lets go
        except ReconcilerError as error:
            message = f"the state file's journal stays: {'; '.join(error.lines())}"
            self.log.warning("state_fold_failed", message)

    def _next_slot(self) -> float | None:
        """A scheduled job's next slot wakes the daemon, even when nothing else would."""
        if self.loaded is None:
            return None
        wait = seconds_until_next(self.loaded.scheduled, clock.now())
        return None if wait is None else wait + SLOT_MARGIN_SECONDS

    def _next_restart(self, result: PassResult) -> float | None:
        """A failed start's restart wakes the daemon when its wait is over (plans/jobstatus.py)."""
        wait = restart_wait(self.hooks.watched(result.after), clock.now().timestamp())
        return None if wait is None else wait + SLOT_MARGIN_SECONDS

    def _succeeded(self, result: PassResult) -> float | None:
        report_pass(result, self.log, self.metrics)
        if result.held_back and result.held_back not in self.said:
            self.said.add(result.held_back)
            self.log.warning("held_back", result.held_back)
        refused = result.outcome.over_budget
        over_budget = {job: over_budget_words(over) for job, over in refused.items()}
        for job, reason in sorted(over_budget.items()):
            line = f"{job}: over budget, not sent: {reason}"
            if line not in self.said:  # once until the specs change: it holds on every pass
                self.said.add(line)
                over = refused[job]
                figures = {"budget": over.budget, "limit_usd": over.limit_usd, "upper_usd": over.upper_usd}
                self.log.warning("over_budget", line, job=job, reason=reason, **figures)
        self.liveness.over_budget = over_budget
        self.refused = dict(refused)
        for change in result.plan.changes:  # e.g. a job left to a newer checkout: said once
            said = change_words(change)
            queued = change.reason.code is ReasonCode.QUEUED  # the normal wait: status and the board show it
            if change.attention and not queued and said not in self.said:
                self.said.add(said)
                self.log.warning(
                    "noted", f"{change.job}: {said}", job=change.job, reason_code=change.reason.code.value
                )
        degraded = bool(self.loaded and self.loaded.problems) or bool(
            result.held_back or result.outcome.failures or over_budget
        )
        if self.liveness.last_success is None:
            running = sum(
                1 for j in result.after.jobs.values() if j.status != "none" and not is_terminal(j.status)
            )
            self.log.info(
                "ready", f"first pass done: {len(result.after.jobs)} jobs recorded, {running} not finished"
            )
        self.liveness.succeeded("degraded" if degraded else "ok")
        failures = result.outcome.failures
        watched = self.hooks.watched(result.after)  # the jobs with something to poll for
        delay = self.hooks.poll(watched, result.outcome.failed_jobs, self.settings.cadence)
        self.failing_jobs = self.failing_jobs + 1 if failures else 0
        if failures:  # retried apart, at most an interval apart once the backoff has grown
            retry = retry_delay(self.failing_jobs, None, self.rng, cap=self.settings.cadence.interval)
            delay = earliest(delay, retry)
        delay = earliest(delay, self.settings.cadence.interval) if self.watch_broken else delay
        wait = server_wait(failures)
        if wait is not None:  # a provider said when to come back: no pass before that
            delay = max(delay or 0.0, retry_delay(1, wait, self.rng))
            self.log.info("server_wait", f"a provider asked to wait {wait:.1f}s; next pass in {delay:.1f}s")
        self.hooks.passed(self.passes, result, degraded, delay)
        return delay

    def _failed(self, error: Exception, message: str, owed: Owed | None = None) -> float:
        if owed is not None:  # tried again by the whole pass that follows
            self.owed.jobs |= owed.jobs
            self.owed.batches |= owed.batches
        self.leader.doubt()
        self._close_backend()
        in_a_row = self.liveness.failed()
        if isinstance(error, ApiError):
            count_api_error(error, self.metrics)
        retry_after = error.retry_after if isinstance(error, ApiStatusError) else None
        delay = retry_delay(in_a_row, retry_after, self.rng)
        self.log.error("pass_failed", f"pass failed: {message}; retrying in {delay:.1f}s", retry_in=delay)
        self.hooks.failed(self.passes, message, delay)
        return delay

    def _watch_failed(self, reason: str) -> None:
        self.watch_broken = True
        if reason != self.watch_error:  # tried again on every reload: say it once
            self.watch_error = reason
            self.log.warning("watch_failed", f"cannot watch files ({reason}); reloading the specs every pass")


def _at(delay: float | None) -> float | None:
    return None if delay is None else time.monotonic() + delay


def _until(at: float | None) -> float | None:
    return None if at is None else max(at - time.monotonic(), 0.0)


def _one_line(error: Exception) -> str:
    """An unexpected error in one line, with where it was raised, for the bug report."""
    frames = traceback.extract_tb(error.__traceback__)
    where = f" at {Path(frames[-1].filename).name}:{frames[-1].lineno}" if frames else ""
    return f"unexpected {type(error).__name__}{where}: {error}"
