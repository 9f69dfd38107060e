"""What a pass did, as log lines and metrics: one line per action and per status transition.

nightly-eval: + create batch_abc (3 requests: no batch yet)
nightly-eval: validating → in_progress (0/3)
nightly-eval: in_progress → completed (3/3, output file-xyz)
"""

from __future__ import annotations

import re
from collections import Counter

from reconciler.apply import Outcome
from reconciler.changes import Action, Change
from reconciler.daemon_log import DaemonLog
from reconciler.daemon_metrics import Metrics
from reconciler.errors import ApiError, ApiStatusError
from reconciler.state import JobState, State
from reconciler.watch_pass import PassResult

SYMBOLS = {
    Action.CREATE: "+",
    Action.RETRY: "+",
    Action.REPLACE: "~",
    Action.CANCEL: "-",
    Action.ADOPT: ">",
    Action.FORGET: ".",
}
# Failures reach us as the client's own one-line messages ("POST /batches: HTTP 500: …").
_HTTP_STATUS = re.compile(r"\bHTTP (\d{3})\b")


def report_pass(result: PassResult, log: DaemonLog, metrics: Metrics) -> None:
    for change in result.plan.pending:
        _report_change(change, result.outcome, log, metrics)
    for job, reason in sorted(result.outcome.failures.items()):
        log.error("action_failed", f"{job}: {reason}", job=job, reason=reason)
        match = _HTTP_STATUS.search(reason)
        metrics.api_errors.labels(status=match.group(1) if match else "other").inc()
    report_transitions(result.before, result.after, log)
    metrics.set_jobs(Counter(job.status for job in result.after.jobs.values()))


def count_api_error(error: ApiError, metrics: Metrics) -> None:
    status = str(error.status) if isinstance(error, ApiStatusError) else "connection"
    metrics.api_errors.labels(status=status).inc()


def _report_change(change: Change, outcome: Outcome, log: DaemonLog, metrics: Metrics) -> None:
    touched = [b.id for b in outcome.touched if b.batch.job == change.job]
    cancelled = [i for i in touched if i in change.cancel]
    created = [i for i in touched if i not in change.cancel]
    shown = {
        Action.REPLACE: f"{_ids(cancelled or change.cancel)} → {_ids(created)}",
        Action.CANCEL: _ids(cancelled or change.cancel),
        Action.ADOPT: _ids(change.adopt),
        Action.FORGET: "",
    }.get(change.action, _ids(created))
    symbol = SYMBOLS.get(change.action, "?")
    ids = f" {shown}" if shown else ""
    failed = change.job in outcome.failures
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


def report_transitions(before: State, after: State, log: DaemonLog) -> None:
    for name, job in after.jobs.items():
        old = before.jobs.get(name)
        was = old.status if old else "none"
        if job.status == was:
            continue
        log.info(
            "transition",
            f"{name}: {was} → {job.status} ({describe(job)})",
            job=name,
            previous=was,
            status=job.status,
            request_counts=job.request_counts,
            batches=[b.batch_id for b in job.batches],
            output_files=[b.output_file_id for b in job.batches if b.output_file_id],
        )


def describe(job: JobState) -> str:
    """`2/3, 1 failed, output file-…` — counts, then where the results are."""
    counts = job.request_counts
    parts = [f"{counts.get('completed', 0)}/{counts.get('total', 0)}"]
    if counts.get("failed"):
        parts.append(f"{counts['failed']} failed")
    outputs = [b.output_file_id for b in job.batches if b.output_file_id]
    if len(outputs) == 1:
        parts.append(f"output {outputs[0]}")
    elif outputs:
        parts.append(f"{len(outputs)} output files")
    first_error = _first_error(job)
    if first_error:
        parts.append(first_error)
    if job.results is not None:
        parts.append(f"results {job.results.path}")
    return ", ".join(parts)


def _first_error(job: JobState) -> str | None:
    """`invalid_json_line at line 2 and 3 more`: why a batch failed validation."""
    errors = [e for b in job.batches for e in ((b.errors or {}).get("data") or []) if isinstance(e, dict)]
    if not errors:
        return None
    first = errors[0]
    where = f" at line {first['line']}" if first.get("line") else ""
    more = f" and {len(errors) - 1} more" if len(errors) > 1 else ""
    return f"{first.get('code', 'error')}{where}{more}"


def _ids(ids: list[str] | tuple[str, ...]) -> str:
    return ", ".join(ids) if ids else "(none)"
