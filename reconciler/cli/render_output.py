"""`reconciler output`: what each job produced, as text and as the `output --json` document.

The document's shape is `schema/output-v1.schema.json`.  Each job holds its current run's
batches and results under `generation`, what that run cost under `cost`, and every run the
state keeps (`status JOB`'s history, newest first, the current one included) under `runs`, with
the same figures `status --json` records for them.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from reconciler.cli.render_status import StatusView, file_cell, results_cell, status_cell, usage_cells
from reconciler.common.usage import TokenUsage
from reconciler.engine.results import results_problem
from reconciler.plans.changes import DesiredJob
from reconciler.plans.jobstatus import reused_note
from reconciler.state.model import BatchRecord, JobState, RunRecord

OUTPUT_FORMAT_VERSION = 1


def output_document(view: StatusView, names: list[str]) -> dict[str, Any]:
    desired = view.desired or {}
    jobs = {name: _job(name, view.state.jobs[name], desired, view.repo_root) for name in names}
    return {"format_version": OUTPUT_FORMAT_VERSION, "jobs": jobs}


def _job(name: str, job: JobState, desired: Mapping[str, DesiredJob], repo_root: Path) -> dict[str, Any]:
    deleted = set(job.deleted_files)
    return {
        "status": job.status,
        "provider": job.provider,
        "observed_at": job.observed_at,
        "request_counts": job.request_counts,
        "reused": job.reused,
        "usage": job_usage(job),
        "cost": _cost(job.cost_usd if job.usage else None, job.total_usage),
        "run": job.run,
        "generation": {
            "id": job.generation,
            "batches": [_batch(b, deleted) for b in job.batches],
            "results": _results(job, desired.get(name), repo_root),
        },
        "runs": [_run(r) for r in job.history],
    }


def _run(run: RunRecord) -> dict[str, Any]:
    return {
        "run": run.run,
        "generation": run.generation,
        "status": run.status,
        "request_counts": run.request_counts,
        "reused": run.reused,
        "batches": list(run.batches),
        "started_at": run.started_at,
        "ended_at": run.ended_at,
        "results": Path(run.results).as_posix() if run.results else None,
        "results_overwritten_by": run.results_overwritten_by,
        "usage": _tokens(run.usage) if run.usage else None,
        "cost": _cost(run.cost_usd, run.usage),
    }


def _cost(usd: float | None, usage: TokenUsage | None) -> dict[str, Any] | None:
    """USD at the run's prices, from the output lines read; `partial` when some could not be read
    (the provider no longer had the file), so the figure is a lower bound.  None: no price, or
    no batch of the run finished yet."""
    if usd is None:
        return None
    return {"usd": usd, "partial": bool(usage and usage.unread)}


def _batch(batch: BatchRecord, deleted: set[str]) -> dict[str, Any]:
    return {
        "batch_id": batch.batch_id,
        "part": batch.part,
        "attempt": batch.retry,
        "status": batch.status,
        "request_counts": batch.request_counts,
        "output_file": _file(batch.output_file_id, deleted),
        "error_file": _file(batch.error_file_id, deleted),
        "usage": batch.usage,
    }


def _file(file_id: str | None, deleted: set[str]) -> dict[str, Any] | None:
    return {"id": file_id, "deleted": file_id in deleted} if file_id else None


def _results(job: JobState, wanted: DesiredJob | None, repo_root: Path) -> dict[str, Any] | None:
    results = job.results
    if results is None:
        return None
    problem = results_problem(wanted, job, repo_root) if wanted else None
    state = "lost" if results.lost and problem else ("ok" if problem is None else "to_rewrite")
    return {
        "path": Path(results.path).as_posix(),
        "sha256": results.sha256,
        "requests": results.requests,
        "state": state,
        "problem": problem,
        "lost": results.lost,
    }


def job_usage(job: JobState) -> dict[str, int] | None:
    """Tokens metered from every finished batch's output lines (engine/metering.py); before any
    is metered, what the provider reported per batch, if it did."""
    if job.usage:
        return _tokens(job.total_usage)
    total: dict[str, int] = {}
    for reported in (b.usage for b in job.batches if b.usage):
        for key, value in reported.items():
            total[key] = total.get(key, 0) + value
    return dict(sorted(total.items())) or None


def _tokens(metered: TokenUsage) -> dict[str, int]:
    return {
        "input_tokens": metered.input,
        "cached_input_tokens": metered.cached_input,
        "output_tokens": metered.output,
        "reasoning_tokens": metered.reasoning,
        "total_tokens": metered.input + metered.output,
    }


def output_json(document: dict[str, Any]) -> str:
    return json.dumps(document, indent=2, sort_keys=True)


def output_text(view: StatusView, names: list[str]) -> str:
    blocks = []
    for name in names:
        job = view.state.jobs[name]
        counts = job.request_counts
        lines = [
            f"{name}  {status_cell(view, name)}  {counts.get('completed', 0)}/{counts.get('failed', 0)}/"
            f"{counts.get('total', 0)} done/failed/total{reused_note(job.reused)}"
        ]
        if job.results is not None:
            lines.append(f"  results  {results_cell(view, name, job)}")
            lines.append(f"           sha256 {job.results.sha256}, {job.results.requests} lines")
        usage = job_usage(job)
        if job.usage:
            lines.append(f"  cost     {usage_cells(job)[1]}")
        if usage:
            lines.append(
                "  usage    " + ", ".join(f"{v:,} {k.removesuffix('_tokens')}" for k, v in usage.items())
            )
            lines[-1] += " tokens"
        deleted = set(job.deleted_files)
        for batch in job.batches:
            lines.append(
                f"  {batch.batch_id}  {batch.status}  output {file_cell(batch.output_file_id, deleted)}"
                f"  errors {file_cell(batch.error_file_id, deleted)}"
            )
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks) if blocks else "No jobs in the state yet: run `reconciler reconcile` first."
