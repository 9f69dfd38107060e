"""How far a job has got, how fast its running batches go, and when they should be done.

Pure: figures come from what the state recorded (request counts as of `observed_at`, each
batch's `in_progress_at`), never from a clock of our own, so they can be read as data.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from reconciler.api.batch import is_terminal
from reconciler.plans.jobstatus import latest_per_part
from reconciler.state.model import JobState


@dataclass(frozen=True)
class Progress:
    done: int  # requests answered, succeeded or failed
    failed: int
    total: int
    per_minute: float | None = None  # requests the running batches answered per minute
    eta_seconds: float | None = None  # until the running batches have answered everything, from `now`


def job_progress(job: JobState, now: float) -> Progress:
    counts = job.request_counts
    completed, failed = counts.get("completed", 0), counts.get("failed", 0)
    figures = Progress(completed + failed, failed, counts.get("total", 0))
    observed = parse_time(job.observed_at)
    running = [b for b in latest_per_part(job.batches) if not is_terminal(b.status)]
    starts = [b.in_progress_at for b in running if b.in_progress_at]
    if observed is None or not starts or len(starts) < len(running):
        return figures
    answered = remaining = 0
    for batch in running:
        got = batch.request_counts or {}
        done = got.get("completed", 0) + got.get("failed", 0)
        answered += done
        remaining += max(got.get("total", 0) - done, 0)
    elapsed = observed - min(starts)
    if elapsed <= 0 or answered == 0:
        return figures
    rate = answered / elapsed
    eta = max(remaining / rate - max(now - observed, 0.0), 0.0)
    return Progress(figures.done, failed, figures.total, rate * 60, eta)


def parse_time(stamp: str | None) -> float | None:
    """`2026-11-22T03:00:00Z` → unix seconds; None when absent or unreadable."""
    if not stamp:
        return None
    try:
        return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def duration(seconds: float) -> str:
    """`45s`, `12m`, `3h`, `2d`: the largest unit that fits."""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{int(seconds // size)}{unit}"
    return f"{max(int(seconds), 0)}s"
