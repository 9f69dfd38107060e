"""The daemon's loop: wait for a file change, a due resync or a stop; load; pass; repeat.

Nothing a pass raises ends the loop: a failed pass is logged in one line and retried
with a capped, jittered backoff (a server's Retry-After wins), and the state file keeps
the last good record of every job meanwhile.
"""

from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from reconciler.daemon_log import DaemonLog
from reconciler.errors import ApiError, ApiStatusError, ReconcilerError
from reconciler.health import Health, Metrics, iso
from reconciler.options import RepoPaths, resolve_paths
from reconciler.schedule import Cadence, earliest, healthy, next_poll, retry_delay, watched_statuses
from reconciler.statefile import read_state
from reconciler.watch_files import FileWatcher, targets_for
from reconciler.watch_load import Loaded, load
from reconciler.watch_pass import ClientPool, PassResult, run_pass
from reconciler.watch_report import count_api_error, report_pass


@dataclass(frozen=True)
class Settings:
    state: Path  # fixed for the daemon's life: its lock guards this file
    repo_arg: str  # --repo and --specs as given, resolved again on every load:
    specs_arg: str | None  # git-sync swaps a symlink to a fresh checkout
    owner: str
    cadence: Cadence
    allow_empty: bool
    parallelism: int

    def paths(self) -> RepoPaths:
        current = resolve_paths(self.repo_arg, self.specs_arg, None)
        return RepoPaths(current.repo, current.specs, self.state)

    def links(self) -> list[Path]:
        given = [Path(a).absolute() for a in (self.repo_arg, self.specs_arg) if a]
        return [p for p in given if p.is_symlink()]


@dataclass(frozen=True)
class Wake:
    files: bool
    stopped: bool


class Waker:
    """Where the file watcher, the signal handlers and the clock meet the loop."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._files = False
        self.stop_reason: str | None = None

    def files_changed(self) -> None:
        with self._cond:
            self._files = True
            self._cond.notify_all()

    def stop(self, reason: str) -> None:
        with self._cond:
            self.stop_reason = self.stop_reason or reason
            self._cond.notify_all()

    def wait(self, timeout: float | None) -> Wake:
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while not self._files and self.stop_reason is None:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    break
                self._cond.wait(remaining)
            files, self._files = self._files, False
            return Wake(files, self.stop_reason is not None)


class Daemon:
    def __init__(self, settings: Settings, log: DaemonLog, metrics: Metrics, waker: Waker) -> None:
        self.settings, self.log, self.metrics, self.waker = settings, log, metrics, waker
        self.loaded: Loaded | None = None
        self.pool = ClientPool()
        self.watcher = FileWatcher(waker.files_changed, self._watch_failed)
        self.watch_broken = False
        self.failed_passes = 0  # in a row
        self.failing_jobs = 0  # passes in a row where some job's action failed
        self.rng = random.Random()
        self.started = time.time()
        self.last_success: float | None = None
        self.last_ok: bool | None = None
        self.said: set[str] = set()  # warnings already given since the specs last changed

    def run(self) -> None:
        try:
            self.reload()
            while self.waker.stop_reason is None:
                wake = self.waker.wait(self.one_pass())
                if wake.stopped:
                    break
                if wake.files or self.watch_broken:
                    self.reload()
        finally:
            self.watcher.close()
            self.pool.close()

    def reload(self) -> None:
        """Loads the specs, then makes sure the watch covers every file they name."""
        self.said.clear()
        for _ in range(3):  # a restarted watch may have missed a write: look once more
            paths = self.settings.paths()
            self.loaded = load(paths, self.settings.owner, self.loaded)
            targets = targets_for(paths.specs, self.loaded.inputs, self.settings.links())
            if not self.watcher.follow(targets):
                break
        assert self.loaded is not None
        for problem in self.loaded.problems:
            self.log.error("spec_invalid", str(problem), file=problem.path, line=problem.line)
        if self.loaded.held:
            held = ", ".join(sorted(self.loaded.held))
            self.log.warning("held", f"kept at their last valid definition until fixed: {held}")

    def one_pass(self) -> float | None:
        """Runs a pass; returns seconds until the next one is due (None: wait for files)."""
        assert self.loaded is not None
        try:
            before = read_state(self.settings.state)
            clients = self.pool.clients_for(self.loaded, before)
            result = run_pass(
                self.loaded,
                clients,
                before,
                allow_empty=self.settings.allow_empty,
                parallelism=self.settings.parallelism,
            )
        except ReconcilerError as error:
            return self._failed(error, "; ".join(error.lines()))
        except Exception as error:  # a bug: say so in one line, and keep the loop alive
            return self._failed(error, f"unexpected {type(error).__name__}: {error}")
        return self._succeeded(result)

    def _succeeded(self, result: PassResult) -> float | None:
        report_pass(result, self.log, self.metrics)
        if result.held_back and result.held_back not in self.said:
            self.said.add(result.held_back)
            self.log.warning("held_back", result.held_back)
        degraded = bool(self.loaded and self.loaded.problems) or bool(result.held_back or result.outcome.failures)
        self.metrics.passes.labels(result="degraded" if degraded else "ok").inc()
        self.failed_passes, self.last_ok, self.last_success = 0, True, time.time()
        self.metrics.last_success.set(self.last_success)
        failures = result.outcome.failures
        delay = next_poll(watched_statuses(result.after, skip=failures), self.settings.cadence)
        self.failing_jobs = self.failing_jobs + 1 if failures else 0
        if failures:  # retried apart, at most an interval apart once the backoff has grown
            retry = retry_delay(self.failing_jobs, None, self.rng, cap=self.settings.cadence.interval)
            delay = earliest(delay, retry)
        return earliest(delay, self.settings.cadence.interval) if self.watch_broken else delay

    def _failed(self, error: Exception, message: str) -> float:
        self.failed_passes += 1
        self.last_ok = False
        self.metrics.passes.labels(result="failed").inc()
        if isinstance(error, ApiError):
            count_api_error(error, self.metrics)
        retry_after = error.retry_after if isinstance(error, ApiStatusError) else None
        delay = retry_delay(self.failed_passes, retry_after, self.rng)
        self.log.error("pass_failed", f"pass failed: {message}; retrying in {delay:.1f}s", retry_in=delay)
        return delay

    def _watch_failed(self, reason: str) -> None:
        self.watch_broken = True
        self.log.warning("watch_failed", f"cannot watch files ({reason}); reloading the specs every pass")

    def health(self) -> Health:
        now = time.time()
        ok = healthy(now, self.started, self.last_success, self.last_ok, self.settings.cadence)
        detail = {
            "status": "ok" if ok else "failing",
            "last_successful_pass": iso(self.last_success),
            "failed_passes_in_a_row": self.failed_passes,
            "started": iso(self.started),
        }
        return Health(ok, detail)
