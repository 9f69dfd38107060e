"""Older state formats, read and upgraded to the current one; never misread.

Version 1 had no runs: every batch and intent it records belongs to the one run a job had,
`default`, which is also how a batch without a run in its metadata is read.  Version 2 lacks
only what version 3 added beside it (the commits jobs were applied from): it reads as it is.
"""

from __future__ import annotations

from typing import Any

from reconciler.common.ownership import DEFAULT_RUN
from reconciler.state.model import FORMAT_VERSION


def upgraded(data: dict[str, Any]) -> dict[str, Any]:
    """The document as the current format says it; raises KeyError/TypeError on a wrong shape
    (the caller reports it as damage)."""
    if data.get("format_version") == 1:
        data = _from_v1(data)
    if data.get("format_version") == 2:
        data = {**data, "format_version": FORMAT_VERSION}
    return data


def _from_v1(data: dict[str, Any]) -> dict[str, Any]:
    jobs = data.get("jobs")
    upgraded_jobs = (
        {name: _job_from_v1(job) for name, job in jobs.items()} if isinstance(jobs, dict) else jobs
    )
    return {**data, "format_version": FORMAT_VERSION, "jobs": upgraded_jobs}


def _job_from_v1(job: Any) -> Any:
    if not isinstance(job, dict):
        return job  # validation names the damage
    batches = [_with_run(b) for b in job.get("batches") or []]
    pending = [_with_run(p) for p in job.get("pending") or []]
    run = DEFAULT_RUN if batches or pending else None
    return {**job, "batches": batches, "pending": pending, "run": run}


def _with_run(item: Any) -> Any:
    return {**item, "run": DEFAULT_RUN} if isinstance(item, dict) else item
