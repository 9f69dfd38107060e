"""The state file's content: a record of what was observed, never the source of truth.

Pure data; reading, writing and locking live in the backends (`file.py`, `postgres.py`).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from reconciler.api.batch import Batch
from reconciler.common.usage import TokenUsage, UnitPrices, total_usage

# 2: runs (a run id on batches and intents, the current run and a bounded run history per job,
# the definition a generation was made from). A version-1 file is upgraded on read (document.py).
# 3: the git commit each job was last applied from (`applied_from`), and of jobs forgotten
# (`forgotten`); additive, so a version-2 document reads as it is.
FORMAT_VERSION = 3
MAX_FORGOTTEN = 1000  # the newest commits jobs were forgotten at, kept; older ones are dropped


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
    run: str | None = None
    part: int = 0
    retry: int = 1
    created_at: int | None = None
    in_progress_at: int | None = None
    completed_at: int | None = None
    failed_at: int | None = None
    expired_at: int | None = None
    cancelled_at: int | None = None
    usage: dict[str, int] | None = None  # token usage, when the provider reports it per batch

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
            run=batch.run,
            part=batch.part,
            retry=batch.retry,
            created_at=batch.created_at,
            in_progress_at=batch.in_progress_at,
            completed_at=batch.completed_at,
            failed_at=batch.failed_at,
            expired_at=batch.expired_at,
            cancelled_at=batch.cancelled_at,
            usage=batch.usage,
        )


class PendingCreate(_Frozen):
    """A create we meant to make: written before POST /batches, resolved from the live list."""

    attempt: str
    generation: str
    run: str | None = None
    part: int = 0
    retry: int = 1
    requests: int = 0
    input_file_id: str | None = None
    # Unix time its POST went out with no answer yet: the create may still be in flight, so
    # it is not sent again before the quarantine has passed (engine/inflight.py).
    sent_at: int | None = None


class ResultsRecord(_Frozen):
    """The merged results file, and the batches it was built from.

    `path` is relative to the repo root (states written before that hold an absolute path,
    still read).  `lost` says why the file can no longer be written again, once the
    provider's files it came from are gone."""

    path: str
    sha256: str
    requests: int
    batches: tuple[str, ...]
    lost: str | None = None


class RunRecord(_Frozen):
    """One execution of a job: its batches (parts and retries), counts, start and end."""

    run: str
    generation: str
    status: str
    request_counts: dict[str, int] = Field(default_factory=dict)
    batches: tuple[str, ...] = ()
    started_at: int | None = None
    ended_at: int | None = None
    results: str | None = None  # the merged results file, once written
    usage: TokenUsage | None = None  # tokens its finished batches' output lines used
    cost_usd: float | None = None  # at the prices in force when it started; None: no price


class AppliedFrom(_Frozen):
    """The git commit a change to a job was made from: a writer whose checkout is behind it
    leaves the job alone (engine/workspace.py)."""

    commit: str = Field(pattern=r"^[0-9a-f]{40}(?:[0-9a-f]{24})?$")
    committed_at: int  # its committer date, unix seconds: orders commits neither of which holds the other

    @property
    def short(self) -> str:
        return self.commit[:7]


class JobState(_Frozen):
    generation: str
    provider: str
    status: str
    deletion_policy: Literal["cancel", "orphan"] = "cancel"
    request_counts: dict[str, int] = Field(default_factory=dict)
    batches: tuple[BatchRecord, ...] = ()  # the current run's batches of this generation
    pending: tuple[PendingCreate, ...] = ()
    results: ResultsRecord | None = None
    deleted_files: tuple[str, ...] = ()  # files of ours already deleted by cleanup
    observed_at: str | None = None
    usage: dict[str, TokenUsage] = Field(default_factory=dict)  # batch id → tokens its output lines used
    prices: UnitPrices | None = None  # the run's prices, as in force when it started; None: no price

    @property
    def total_usage(self) -> TokenUsage:
        return total_usage(self.usage)

    @property
    def cost_usd(self) -> float | None:
        return self.prices.cost(self.total_usage) if self.prices else None

    run: str | None = None  # the current run; None: none yet
    history: tuple[RunRecord, ...] = ()  # newest first, at most the spec's history_limit
    definition: dict[str, Any] | None = None  # what the generation was made from, for plan diffs
    missed_slot: str | None = None  # the latest slot skipped for its starting_deadline
    applied_from: AppliedFrom | None = None  # None: last changed from outside git, or never

    @property
    def batch_ids(self) -> frozenset[str]:
        return frozenset(b.batch_id for b in self.batches)


class Notice(_Frozen):
    """An event to announce, kept until every Notification it is for has taken it."""

    id: str  # the same for every attempt: receivers may deduplicate by it
    event: str  # completed, failed, expired, cancelled, replaced
    job: str
    at: str  # when the reconciler saw it
    status: str
    generation: str
    request_counts: dict[str, int] = Field(default_factory=dict)
    batches: tuple[str, ...] = ()
    slot: str | None = None  # schedule_missed: the run id of the slot skipped
    to: tuple[str, ...] = ()  # Notification names still owed it
    attempts: int = 0
    next_attempt: float = 0.0  # unix time; backoff after a failed send


class Seen(_Frozen):
    generation: str
    status: str
    run: str | None = None
    missed_slot: str | None = None


class Notices(_Frozen):
    """What the Notifications were told: each job as last looked at, and the events still owed."""

    seen: dict[str, Seen] = Field(default_factory=dict)
    outbox: tuple[Notice, ...] = ()


class State(_Frozen):
    format_version: int = FORMAT_VERSION
    serial: int = 0
    lineage: str
    owner: str | None = None
    jobs: dict[str, JobState] = Field(default_factory=dict)
    notices: Notices | None = None  # None until a Notification exists: history is never announced
    # Jobs dropped from `jobs` (their spec gone) by a writer in a git checkout, with its commit:
    # a checkout behind it, where the spec is still there, does not create the job again.
    forgotten: dict[str, AppliedFrom] = Field(default_factory=dict)

    def with_jobs(self, jobs: dict[str, JobState]) -> State:
        """This state with `jobs`, in name order (the same names: in this state's order, no sort)."""
        if jobs.keys() == self.jobs.keys():
            return self.model_copy(update={"jobs": {name: jobs[name] for name in self.jobs}})
        return self.model_copy(update={"jobs": dict(sorted(jobs.items()))})
