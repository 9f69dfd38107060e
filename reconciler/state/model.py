"""The state file's content: a record of what was observed, never the source of truth.

Pure data; reading, writing and locking live in `statefile.py`.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from reconciler.api.batch import Batch

FORMAT_VERSION = 1


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class BatchRecord(_Frozen):
    batch_id: str
    input_file_id: str | None = None
    status: str
    request_counts: dict[str, int] | None = None
    output_file_id: str | None = None
    error_file_id: str | None = None
    errors: dict[str, Any] | None = None
    attempt: str | None = None
    part: int = 0
    retry: int = 1
    created_at: int | None = None
    completed_at: int | None = None
    failed_at: int | None = None
    expired_at: int | None = None
    cancelled_at: int | None = None

    @classmethod
    def from_batch(cls, batch: Batch) -> BatchRecord:
        counts = batch.request_counts
        return cls(
            batch_id=batch.id,
            input_file_id=batch.input_file_id,
            status=batch.status,
            request_counts=counts.model_dump() if counts else None,
            output_file_id=batch.output_file_id,
            error_file_id=batch.error_file_id,
            errors=batch.errors,
            attempt=batch.attempt,
            part=batch.part,
            retry=batch.retry,
            created_at=batch.created_at,
            completed_at=batch.completed_at,
            failed_at=batch.failed_at,
            expired_at=batch.expired_at,
            cancelled_at=batch.cancelled_at,
        )


class PendingCreate(_Frozen):
    """A create we meant to make: written before POST /batches, resolved from the live list."""

    attempt: str
    generation: str
    part: int = 0
    retry: int = 1
    requests: int = 0
    input_file_id: str | None = None
    # Unix time its POST went out with no answer yet: the create may still be in flight, so
    # it is not sent again before the quarantine has passed (engine/inflight.py).
    sent_at: int | None = None


class ResultsRecord(_Frozen):
    """The merged results file, and the batches it was built from."""

    path: str
    sha256: str
    requests: int
    batches: tuple[str, ...]


class JobState(_Frozen):
    generation: str
    provider: str
    status: str
    deletion_policy: Literal["cancel", "orphan"] = "cancel"
    request_counts: dict[str, int] = Field(default_factory=dict)
    batches: tuple[BatchRecord, ...] = ()
    pending: tuple[PendingCreate, ...] = ()
    results: ResultsRecord | None = None
    deleted_files: tuple[str, ...] = ()  # files of ours already deleted by cleanup
    observed_at: str | None = None

    @property
    def batch_ids(self) -> frozenset[str]:
        return frozenset(b.batch_id for b in self.batches)


class State(_Frozen):
    format_version: int = FORMAT_VERSION
    serial: int = 0
    lineage: str
    owner: str | None = None
    jobs: dict[str, JobState] = Field(default_factory=dict)

    def with_jobs(self, jobs: dict[str, JobState]) -> State:
        return self.model_copy(update={"jobs": dict(sorted(jobs.items()))})
