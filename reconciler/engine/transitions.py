"""Status transitions as one human line each: `nightly-eval: in_progress → completed (3/3, output file-…)`."""

from __future__ import annotations

from reconciler.engine.events import EventLog
from reconciler.state.model import JobState, State


def report_transitions(before: State, after: State, log: EventLog) -> None:
    for name, job in after.jobs.items():
        old = before.jobs.get(name)
        _report_results_lost(name, old, job, log)
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


def _report_results_lost(name: str, old: JobState | None, job: JobState, log: EventLog) -> None:
    """Once, when a results file is found gone for good; plan and status keep saying it."""
    lost = job.results.lost if job.results else None
    if lost and not (old and old.results and old.results.lost):
        assert job.results is not None
        log.warning("results_lost", f"{name}: {job.results.path} cannot be written again: {lost}", job=name)


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
