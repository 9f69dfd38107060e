"""What a create uploads for one unit of a job: all of the input, one part of it, or a retry file.

Upload names are deterministic and carry the owner (apply/leftovers.py finds them again after
a crash), so the same unit always uploads the same bytes under the same name.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from reconciler.api.uploads import UploadSource
from reconciler.common import fileops
from reconciler.engine.apply.leftovers import upload_name
from reconciler.engine.outcomes import WorkDir
from reconciler.engine.retries import PartRetry, write_retry_input
from reconciler.plans.changes import DesiredJob, Unit
from reconciler.state.model import IntentKey


class UploadSources:
    def __init__(self, work_root: Path, owner_tag: str, retries: Mapping[tuple[str, int], PartRetry]) -> None:
        self._work_root = work_root
        self._owner_tag = owner_tag
        self._retries = retries

    def __call__(self, job: DesiredJob, unit: Unit) -> UploadSource:
        key = IntentKey.of(job.name, job.generation, unit.run, unit.part, unit.retry)
        name = upload_name(key, len(job.part_specs) > 1, self._owner_tag)
        expiry = job.input_expires_after
        if unit.retry > 1:
            return UploadSource(self._retry_input(job, unit), name, expires_after=expiry)
        if len(job.part_specs) == 1:
            return UploadSource(Path(job.input_path), name, expires_after=expiry)
        part = job.part_specs[unit.part]
        return UploadSource(Path(job.input_path), name, part.start, part.end, expires_after=expiry)

    def _retry_input(self, job: DesiredJob, unit: Unit) -> Path:
        """Written now, from what observing found: the file exists only where it is uploaded."""
        work = WorkDir(self._work_root, job.name, job.generation, unit.run)
        target = work.retry_input(unit.part, unit.retry)
        retry = self._retries.get((job.name, unit.part))
        if retry is not None and retry.attempt == unit.retry:
            with fileops.replacing(target) as out:
                write_retry_input(Path(job.input_path), retry, out)
        return target
