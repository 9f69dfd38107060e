"""The daemon's Prometheus metrics, in their own registry so only its own series are served."""

from __future__ import annotations

from collections.abc import Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, disable_created_metrics

from reconciler.state.model import State


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

    def count_usage(self, state: State) -> None:
        """Adds every batch whose usage was read since the last call (or, at first, in the state)."""
        for name, job in state.jobs.items():
            for batch_id, usage in job.usage.items():
                if batch_id in self._metered:
                    continue
                self._metered.add(batch_id)
                for kind, count in usage.by_kind().items():
                    self.tokens.labels(job=name, kind=kind).inc(count)
                if job.prices is not None:
                    self.cost.labels(job=name).inc(job.prices.cost(usage))

    def set_over_budget(self, jobs: Mapping[str, str]) -> None:
        self.over_budget.clear()  # a job back within its budget must not stay marked
        for job in jobs:
            self.over_budget.labels(job=job).set(1)

    def set_jobs(self, by_status: Mapping[str, int]) -> None:
        self.jobs.clear()  # a status no job has any more must not linger at its old count
        for status, count in by_status.items():
            self.jobs.labels(status=status).set(count)
