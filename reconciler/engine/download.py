"""`output JOB --download DIR`: the merged results, written anywhere, from the provider's files.

The same format as `results:`; the state is not read for writing, nor changed.  The files
are fetched into a temporary folder, never into the state's work folder.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from reconciler.api.batch import is_terminal
from reconciler.api.reader import BatchReader
from reconciler.common.errors import UserError
from reconciler.engine.outcomes import WorkDir
from reconciler.engine.results import fetch_all, write_results
from reconciler.plans.changes import DesiredJob
from reconciler.plans.status import attempts_by_part, latest_per_part
from reconciler.state.model import JobState, ResultsRecord


def download_results(job: DesiredJob, recorded: JobState, reader: BatchReader, target: Path) -> ResultsRecord:
    _check_ready(job, recorded)
    with tempfile.TemporaryDirectory(prefix="reconciler-download-") as scratch:
        work = WorkDir(Path(scratch), job.name, job.generation)
        fetch_all(work, reader, recorded.batches, recorded.deleted_files)
        return write_results(job, attempts_by_part(recorded.batches), work, target, target.parent)


def _check_ready(job: DesiredJob, recorded: JobState) -> None:
    if recorded.generation != job.generation:
        raise UserError(
            f"{job.name}: the spec or its input changed since its batches ran "
            f"(generation {recorded.generation} → {job.generation}); results are joined to the input "
            "they were made from, so restore it, or reconcile and download the new run's results"
        )
    running = [b.batch_id for b in latest_per_part(recorded.batches) if not is_terminal(b.status)]
    if running or recorded.pending or not recorded.batches:
        what = (
            f"{running[0]} is still {_status(recorded, running[0])}" if running else "no batch has finished"
        )
        raise UserError(f"{job.name}: {what}; results can be downloaded once every batch has finished")


def _status(recorded: JobState, batch_id: str) -> str:
    return next(b.status for b in recorded.batches if b.batch_id == batch_id)
