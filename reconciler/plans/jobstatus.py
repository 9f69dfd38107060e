"""A job's overall status and request counts, from its batches of the current generation.

Only the latest attempt of each part speaks for that part; earlier attempts are history.

| the latest batches of the job's parts     | job status                                   |
|-------------------------------------------|----------------------------------------------|
| none yet, a create pending                | `pending`                                    |
| any still running                         | the busiest: `in_progress`, `finalizing`,    |
|                                           | `validating`, `cancelling`, else as it came  |
| some parts still to create (pending), or  | `pending`                                    |
| a failed start to restart (restarts.py)   |                                              |
| all finished, results still to write      | `collecting`                                 |
| all `completed`                           | `completed`                                  |
| otherwise                                 | the first of `failed`, `expired`,            |
|                                           | `cancelled`, else the provider's own status  |
"""

from __future__ import annotations

from collections.abc import Iterable

from reconciler.api.batch import is_terminal
from reconciler.plans.restarts import is_restart, restart_owed
from reconciler.state.model import BatchRecord, PendingCreate

RUNNING_ORDER = ("in_progress", "finalizing", "validating", "cancelling")
FINISHED_ORDER = ("failed", "expired", "cancelled")


def latest_per_part(batches: tuple[BatchRecord, ...]) -> list[BatchRecord]:
    latest: dict[int, BatchRecord] = {}
    for record in batches:
        if record.part not in latest or record.retry >= latest[record.part].retry:
            latest[record.part] = record
    return [latest[p] for p in sorted(latest)]


def attempts_by_part(batches: Iterable[BatchRecord]) -> dict[int, list[BatchRecord]]:
    """Each part's attempts, first attempt first."""
    parts: dict[int, list[BatchRecord]] = {}
    for batch in sorted(batches, key=lambda b: b.retry):
        parts.setdefault(batch.part, []).append(batch)
    return parts


def attempts_used(attempts: Iterable[BatchRecord]) -> int:
    """A part's attempts that count toward `retry.max_attempts`: a resume (the attempt after a
    cancelled one) sends again what the cancel cut short, and a restart (restarts.py) what a
    failed start never ran; neither is a retry."""
    ordered = sorted(attempts, key=lambda b: b.retry)
    return sum(
        1
        for i, b in enumerate(ordered)
        if i == 0 or not (ordered[i - 1].status == "cancelled" or is_restart(ordered, i))
    )


def job_status(
    batches: tuple[BatchRecord, ...],
    pending: tuple[PendingCreate, ...],
    *,
    results_due: bool = False,
    restarts: bool = False,
) -> str:
    """`restarts`: the job is desired and not suspended, so a failed start will be restarted."""
    latest = [b.status for b in latest_per_part(batches)]
    running = [s for s in latest if not is_terminal(s)]
    if running:
        return next((s for s in RUNNING_ORDER if s in running), running[0])
    if pending or not latest:
        return "pending" if pending else "none"
    if restarts and any(restart_owed(a) for a in attempts_by_part(batches).values()):
        return "pending"
    if results_due:
        return "collecting"
    if all(s == "completed" for s in latest):
        return "completed"
    return next((s for s in FINISHED_ORDER if s in latest), next(s for s in latest if s != "completed"))


def request_counts(batches: tuple[BatchRecord, ...]) -> dict[str, int]:
    """Per request, not per batch: a retry resubmits only what did not succeed, so completed
    counts add up across attempts, while total and failed come from each part's first and
    latest attempt."""
    counts = {"total": 0, "completed": 0, "failed": 0}
    units: set[tuple[int, int]] = set()
    for record in batches:
        if (record.part, record.retry) in units:  # a duplicate batch: its requests are counted once
            continue
        units.add((record.part, record.retry))
        got = record.request_counts or {}
        counts["completed"] += got.get("completed", 0)
        if record.retry == 1:
            counts["total"] += got.get("total", 0)
    for record in latest_per_part(batches):
        counts["failed"] += (record.request_counts or {}).get("failed", 0)
    return counts
