"""What a pass did, as log lines and metrics: one line per action and per status transition.

nightly-eval: + create batch_abc (3 requests: no batch yet)
nightly-eval: validating → in_progress (0/3)
nightly-eval: in_progress → completed (3/3, output file-xyz)
"""

from __future__ import annotations

from collections import Counter

from reconciler.common.errors import ApiError, ApiStatusError
from reconciler.daemon.metrics import Metrics
from reconciler.daemon.passes import PassResult
from reconciler.engine.apply.effects import Outcome
from reconciler.engine.apply.failures import Failure, describe, reason
from reconciler.engine.events import EventLog, report_transitions
from reconciler.plans.changes import SYMBOLS, Action, Change


def report_pass(result: PassResult, log: EventLog, metrics: Metrics) -> None:
    for change in result.plan.pending:
        if change.job not in result.outcome.over_budget:  # refused ones: daemon/loop.py says so once
            _report_change(change, result.outcome, log, metrics)
    for failure in result.outcome.failures:
        _report_failure(failure, log, metrics)
    for warning in result.plan.warnings:
        log.warning("over_budget", warning, job=warning.split(":", 1)[0])
    report_transitions(result.before, result.after, log)
    metrics.set_jobs(Counter(job.status for job in result.after.jobs.values()))
    metrics.set_over_budget(result.outcome.over_budget)
    metrics.count_usage(result.after)


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
    touched = [b.id for b in outcome.touched if b.batch.job == change.job]
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
        f"{change.job}: {symbol} {change.action.value}{ids} ({change.reason})",
        job=change.job,
        action=change.action.value,
        reason=change.reason,
        created=created,
        cancelled=cancelled,
    )
    metrics.actions.labels(kind=change.action.value, result="failed" if failed else "ok").inc()


def _ids(ids: list[str] | tuple[str, ...]) -> str:
    return ", ".join(ids) if ids else "(none)"
