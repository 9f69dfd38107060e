"""After apply: merged results for jobs whose batches all finished, then opt-in cleanup.

The results file is written before the job's status turns terminal in the state, so whoever
sees `completed` finds the results.  Cleanup deletes only files of our own batches: inputs
we uploaded once their batch finished, outputs once results hold them.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from reconciler.api.batch import is_terminal
from reconciler.api.client import BatchClient
from reconciler.common.errors import ApiStatusError, ReconcilerError
from reconciler.engine.apply import Outcome
from reconciler.engine.results import write_results
from reconciler.engine.retries import download_all
from reconciler.engine.workspace import Workspace
from reconciler.plans.changes import DesiredJob
from reconciler.plans.jobstatus import job_status
from reconciler.state.file import write_state
from reconciler.state.model import BatchRecord, JobState, State


def finish_jobs(ws: Workspace, clients: Mapping[str, BatchClient], state: State, outcome: Outcome) -> State:
    jobs = dict(state.jobs)
    for name, job in ws.desired.items():
        recorded = jobs.get(name)
        if recorded is None or job.suspend:
            continue
        try:
            if job.results_path and recorded.status == "collecting":
                recorded = _collect(ws, clients[job.provider], job, recorded)
            if job.cleanup_inputs or job.cleanup_outputs:
                recorded = _clean_up(clients[job.provider], job, recorded)
        except (ReconcilerError, OSError) as error:
            outcome.failures[name] = f"results: {error}"
        jobs[name] = recorded
    if jobs == state.jobs:
        return state
    return write_state(ws.paths.state, state.with_jobs(jobs))


def _collect(ws: Workspace, client: BatchClient, job: DesiredJob, recorded: JobState) -> JobState:
    attempts = by_part(recorded.batches)
    work = download_all(job, attempts, client, ws.work_dir)
    assert job.results_path is not None
    results = write_results(job, attempts, work, Path(job.results_path))
    status = job_status(recorded.batches, recorded.pending)
    return recorded.model_copy(update={"results": results, "status": status})


def _clean_up(client: BatchClient, job: DesiredJob, recorded: JobState) -> JobState:
    doomed: list[str] = []
    for batch in recorded.batches:
        if job.cleanup_inputs and is_terminal(batch.status) and batch.input_file_id:
            doomed.append(batch.input_file_id)
        if job.cleanup_outputs and recorded.results and batch.batch_id in recorded.results.batches:
            doomed += [f for f in (batch.output_file_id, batch.error_file_id) if f]
    deleted = list(recorded.deleted_files)
    for file_id in dict.fromkeys(doomed):
        if file_id in deleted:
            continue
        try:
            client.delete_file(file_id)
        except ApiStatusError as error:
            if error.status != 404:  # already gone is what we wanted
                raise
        deleted.append(file_id)
    return recorded.model_copy(update={"deleted_files": tuple(deleted)})


def by_part(batches: tuple[BatchRecord, ...]) -> dict[int, list[BatchRecord]]:
    parts: dict[int, list[BatchRecord]] = {}
    for batch in sorted(batches, key=lambda b: b.retry):
        parts.setdefault(batch.part, []).append(batch)
    return parts
