"""What the loop publishes for the HTTP threads: the board (its latest word, in memory, which the
dashboard shows and the webhooks check against) and the Prometheus metrics.

The loop publishes after every load and pass; HTTP threads only read. Each publish bumps a
version, which Server-Sent Events streams wait on, so a page updates as soon as a pass ends.
The metrics live in their own registry, so only the daemon's own series are served.
"""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, disable_created_metrics

from reconciler.plans.changes import DesiredJob, Slot
from reconciler.specs.identity import RepoName
from reconciler.state.model import JobState, State


@dataclass(frozen=True)
class LastPass:
    number: int
    at: float
    result: str  # ok, degraded, failed
    errors: tuple[str, ...] = ()


@dataclass(frozen=True)
class Snapshot:
    version: int = 0
    state: State | None = None
    last_pass: LastPass | None = None
    next_pass_at: float | None = None
    problems: tuple[str, ...] = ()  # spec problems of the last load
    webhooks: tuple[str, ...] = ()  # providers whose webhooks are taken
    notifications: tuple[str, ...] = ()
    schedules: Mapping[str, Slot] = field(default_factory=dict)  # job → its schedule, as specced
    # The jobs whose specs validate, for SYNC (held ones, broken now, are not); None: none read yet.
    specced: Mapping[str, DesiredJob] | None = None
    labels: Mapping[str, Mapping[str, str]] = field(default_factory=dict)  # job → its spec's labels
    repo: RepoName | None = None  # what the dashboard calls the repo
    started: float = field(default_factory=time.time)

    def batch_ids(self) -> frozenset[str]:
        if self.state is None:
            return frozenset()
        return frozenset(b.batch_id for job in self.state.jobs.values() for b in job.batches)


class Board:
    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._snapshot = Snapshot()
        self.closed = False

    def publish(self, **changes: Any) -> None:
        with self._cond:
            self._snapshot = replace(self._snapshot, version=self._snapshot.version + 1, **changes)
            self._cond.notify_all()

    def snapshot(self) -> Snapshot:
        with self._cond:
            return self._snapshot

    def wait_newer(self, version: int, timeout: float) -> Snapshot:
        """The snapshot once its version is not `version`, or after `timeout` (or on close) as it is."""
        with self._cond:
            self._cond.wait_for(lambda: self._snapshot.version != version or self.closed, timeout)
            return self._snapshot

    def close(self) -> None:
        with self._cond:
            self.closed = True
            self._cond.notify_all()


class Metrics:
    def __init__(self) -> None:
        # `*_created` series only add noise for a single long-lived process.
        disable_created_metrics()  # type: ignore[no-untyped-call]
        self.registry = CollectorRegistry()
        self.passes = Counter(
            "reconciler_passes",
            "Reconcile passes by result (ok, degraded, failed).",
            ["result"],
            registry=self.registry,
        )
        self.actions = Counter(
            "reconciler_actions",
            "Changes carried out, by kind and result.",
            ["kind", "result"],
            registry=self.registry,
        )
        self.api_errors = Counter(
            "reconciler_api_errors",
            "API errors that reached the daemon, by HTTP status.",
            ["status"],
            registry=self.registry,
        )
        self.jobs = Gauge(
            "reconciler_jobs", "Jobs in the state file by status.", ["status"], registry=self.registry
        )
        self.over_budget = Gauge(
            "reconciler_job_over_budget",
            "1 for each job whose change the last pass refused for passing a budget (nothing sent for it).",
            ["job"],
            registry=self.registry,
        )
        self.leader = Gauge(
            "reconciler_leader",
            "1 while this replica leads (runs the passes), 0 while it stands by.",
            registry=self.registry,
        )
        self.last_success = Gauge(
            "reconciler_last_successful_pass_timestamp_seconds",
            "Unix time of the last pass that observed every provider.",
            registry=self.registry,
        )

        self.tokens = Counter(
            "reconciler_tokens",
            "Tokens used by finished batches, from their output lines, by job and kind "
            "(input, cached_input, output, reasoning).",
            ["job", "kind"],
            registry=self.registry,
        )
        self.cost = Counter(
            "reconciler_cost_usd",
            "What finished batches cost, in USD, at their run's prices (jobs with a price only).",
            ["job"],
            registry=self.registry,
        )
        self.webhooks_received = Counter(
            "reconciler_webhooks_received",
            "Verified webhook deliveries, by what was done (refresh, ignored, duplicate).",
            ["result"],
            registry=self.registry,
        )
        self.webhooks_refused = Counter(
            "reconciler_webhooks_refused",
            "Webhook deliveries refused, by reason (signature, stale, unsigned, too_large, not_configured).",
            ["reason"],
            registry=self.registry,
        )
        self.notifications_sent = Counter(
            "reconciler_notifications_sent",
            "Messages a Notification's channel accepted.",
            ["notification"],
            registry=self.registry,
        )
        self.notifications_failed = Counter(
            "reconciler_notifications_failed",
            "Sends to a Notification's channel that failed (each is retried with backoff).",
            ["notification"],
            registry=self.registry,
        )
        self._metered: set[str] = set()  # batch ids already counted
        self._by_status: collections.Counter[str] = collections.Counter()  # the `jobs` gauge's counts

    def count_usage(self, jobs: Mapping[str, JobState]) -> None:
        """Adds every batch of `jobs` whose usage was read since (at first: all of the state's)."""
        for name, job in jobs.items():
            for batch_id, usage in job.usage.items():
                if batch_id in self._metered:
                    continue
                self._metered.add(batch_id)
                for kind, count in usage.by_kind().items():
                    self.tokens.labels(job=name, kind=kind).inc(count)
                if job.prices is not None:
                    self.cost.labels(job=name).inc(job.prices.cost(usage))

    def set_over_budget(self, jobs: Iterable[str]) -> None:
        self.over_budget.clear()  # a job back within its budget must not stay marked
        for job in jobs:
            self.over_budget.labels(job=job).set(1)

    def set_jobs(self, by_status: Mapping[str, int]) -> None:
        self.jobs.clear()  # a status no job has any more must not linger at its old count
        self._by_status = collections.Counter(by_status)
        for status, count in by_status.items():
            self.jobs.labels(status=status).set(count)

    def move_jobs(self, before: Iterable[str], after: Iterable[str]) -> None:
        """Some jobs' statuses changed from `before` to `after`: the counts moved by as much."""
        counts = self._by_status
        counts.subtract(before)
        counts.update(after)
        self.set_jobs(+counts)  # `+` keeps the positive counts: a status no job has is dropped
