"""The daemon's Prometheus metrics, in their own registry so only its own series are served."""

from __future__ import annotations

from collections.abc import Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, disable_created_metrics


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

    def set_jobs(self, by_status: Mapping[str, int]) -> None:
        self.jobs.clear()  # a status no job has any more must not linger at its old count
        for status, count in by_status.items():
            self.jobs.labels(status=status).set(count)
