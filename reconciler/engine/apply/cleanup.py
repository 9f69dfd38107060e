"""Opt-in cleanup after results: deletes only files of our own batches.

Inputs we uploaded, once their batch finished; output and error files, once the merged
results hold them.  What was deleted is recorded, so a file is deleted once.
"""

from __future__ import annotations

from reconciler.api.batch import is_terminal
from reconciler.api.client import ProviderApi
from reconciler.common.errors import ApiStatusError
from reconciler.engine.apply.effects import writer_of
from reconciler.plans.changes import DesiredJob
from reconciler.state.model import JobState


def clean_up(api: ProviderApi, job: DesiredJob, recorded: JobState) -> JobState:
    """The job's record with the files deleted now added to `deleted_files`; `api` is the job's
    provider, whose writer is built here."""
    doomed: list[str] = []
    for batch in recorded.batches:
        if job.cleanup_inputs and is_terminal(batch.status) and batch.input_file_id:
            doomed.append(batch.input_file_id)
        if job.cleanup_outputs and recorded.results and batch.batch_id in recorded.results.batches:
            doomed += [f for f in (batch.output_file_id, batch.error_file_id) if f]
    deleted = list(recorded.deleted_files)
    writer = writer_of(api)
    for file_id in dict.fromkeys(doomed):
        if file_id in deleted:
            continue
        try:
            writer.delete_file(file_id)
        except ApiStatusError as error:
            if error.status != 404:  # already gone is what we wanted
                raise
        deleted.append(file_id)
    return recorded.model_copy(update={"deleted_files": tuple(deleted)})
