"""The state file's content: a record of what was observed, never the source of truth.

Pure data; reading, writing and locking live in the backends (`file.py`, `postgres.py`).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Collection, ItemsView, Iterable, Iterator, KeysView, Mapping, ValuesView
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated, Any, Literal, Self

import orjson
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, PlainSerializer, model_validator

from reconciler.api.batch import Batch
from reconciler.common.ownership import DEFAULT_RUN
from reconciler.common.usage import TokenUsage, UnitPrices, total_usage

# 2: runs (a run id on batches and intents, the current run and a bounded run history per job,
# the definition a generation was made from). A version-1 file is upgraded on read (document.py).
# 3: the git commit each job was last applied from (`applied_from`), and of jobs forgotten
# (`forgotten`); additive, so a version-2 document reads as it is.
# 4: a run whose results file a later run wrote over says so (`results_overwritten_by`), and each
# intent's `state` is stored; additive, so a version-2 or -3 document reads as it is (an intent
# without a state has it derived from its fields, document.py).
# 5: a run that reuses earlier answers (spec.reuse) records what it reused (`reuse`, and `reused`
# in its history entry); additive, so a version-2, -3 or -4 document reads as it is.
# 6: the queue book (`queue`: limits learnt from refusals, each admitted batch's estimate, where
# queued jobs stand); additive, so a version-2 to -5 document reads as it is.
FORMAT_VERSION = 6
MAX_FORGOTTEN = 1000  # the newest commits jobs were forgotten at, kept; older ones are dropped


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    def model_post_init(self, context: Any, /) -> None:
        # Pydantic gives each instance a set of the fields it was given: 728 bytes for a job's
        # record, its batch and its run each, a third of a state's memory. Nothing reads it of
        # a state's record (no dump leaves unset fields out), so every record of a class shares
        # one: all fields, which is what a dump writes anyway. It is never changed in place: a
        # frozen model refuses assignment, and `model_copy` copies it before adding to it.
        object.__setattr__(self, "__pydantic_fields_set__", _all_fields(type(self)))


@functools.cache
def _all_fields(model: type[BaseModel]) -> set[str]:
    return set(model.model_fields)


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


@dataclass(frozen=True)
class IntentKey:
    """The unit one create is for, and the one batch it may make: a job's generation, run, part
    and retry.  An intent, the batch it made and the plan's unit all have the same key; build it
    with `of` (or `of_intent`, `of_batch`), which is where a missing run reads as the default one."""

    job: str
    generation: str
    run: str
    part: int
    retry: int

    @classmethod
    def of(cls, job: str, generation: str, run: str | None, part: int, retry: int) -> IntentKey:
        return cls(job, generation, run or DEFAULT_RUN, part, retry)

    @classmethod
    def of_intent(cls, job: str, intent: PendingCreate) -> IntentKey:
        return cls.of(job, intent.generation, intent.run, intent.part, intent.retry)

    @classmethod
    def of_batch(cls, batch: Batch) -> IntentKey:
        return cls.of(batch.job or "", batch.generation or "", batch.run, batch.part, batch.retry)


class IntentState(StrEnum):
    """Where a create is in the exactly-once protocol (engine/apply/intents.py; the table is in
    ARCHITECTURE.md).  Each state is written to the state before the effect that leaves it."""

    PLANNED = "planned"  # its attempt id is written; nothing uploaded yet
    UPLOADED = "uploaded"  # its input file id is written; no POST out (or one answered "not made")
    SENT = "sent"  # its send time is written before the POST: the POST may be under way
    QUARANTINED = "quarantined"  # its POST got no answer: it may still become a batch
    RESOLVED = "resolved"  # its batch is live: it leaves `pending`, the batch is recorded instead


_UNRESOLVED = frozenset(IntentState) - {IntentState.RESOLVED}
# The protocol's steps: each PendingCreate method of that name, the states it moves an intent
# from, and the state it moves it to.  Any intent may resolve: the live list is the truth.
TRANSITIONS: dict[str, tuple[frozenset[IntentState], IntentState]] = {
    "uploaded": (frozenset({IntentState.PLANNED}), IntentState.UPLOADED),
    # Again from sent or quarantined: once the quarantine is over, with the same attempt id.
    "sent": (frozenset({IntentState.UPLOADED, IntentState.SENT, IntentState.QUARANTINED}), IntentState.SENT),
    "quarantined": (frozenset({IntentState.SENT}), IntentState.QUARANTINED),
    "refused": (frozenset({IntentState.SENT}), IntentState.UPLOADED),
    "resolved": (_UNRESOLVED, IntentState.RESOLVED),
}
# What a pending intent's fields say in each state: its input file from upload on, its send
# time while its POST may be under way.
_WITH_FILE = frozenset({IntentState.UPLOADED, IntentState.SENT, IntentState.QUARANTINED})
_WITH_SEND_TIME = frozenset({IntentState.SENT, IntentState.QUARANTINED})


class PendingCreate(_Frozen):
    """A create we mean to make, from before its upload until its batch is in the live list.

    Its `state` says how far it got (IntentState); one method per step moves it on, and each
    refuses a move the protocol does not make.  The fields each state needs are checked when a
    document is read: a state that contradicts them is damage."""

    attempt: str  # in the batch's metadata: the live list tells whether this create made a batch
    generation: str
    run: str | None = None
    part: int = 0
    retry: int = 1
    requests: int = 0
    input_file_id: str | None = None
    # Unix time its POST went out, without an answer yet: the create may still be in flight, so
    # it is not sent again before the quarantine has passed (engine/apply/intents.py).
    sent_at: int | None = None
    state: IntentState

    @model_validator(mode="after")
    def _fields_fit_the_state(self) -> Self:
        if self.state is IntentState.RESOLVED:
            raise ValueError("a resolved intent is not pending")
        if (self.input_file_id is not None) != (self.state in _WITH_FILE):
            raise ValueError(f"input_file_id does not fit state {self.state}")
        if (self.sent_at is not None) != (self.state in _WITH_SEND_TIME):
            raise ValueError(f"sent_at does not fit state {self.state}")
        return self

    @classmethod
    def planned(cls, attempt: str, key: IntentKey, requests: int) -> PendingCreate:
        """A new intent, written before anything is uploaded for it."""
        return cls(
            attempt=attempt,
            generation=key.generation,
            run=key.run,
            part=key.part,
            retry=key.retry,
            requests=requests,
            state=IntentState.PLANNED,
        )

    def uploaded(self, file_id: str) -> PendingCreate:
        """Its input is on the provider as `file_id`."""
        return self._move("uploaded", input_file_id=file_id)

    def sent(self, at: int) -> PendingCreate:
        """Its POST goes out at `at` (unix seconds): written before the POST, so a pass that finds
        it without its batch waits the quarantine before sending it again."""
        return self._move("sent", sent_at=at)

    def quarantined(self) -> PendingCreate:
        """Its POST got no answer: the server may still make the batch."""
        return self._move("quarantined")

    def refused(self) -> PendingCreate:
        """Its POST was answered with an error: nothing is in flight.  A batch the server made
        anyway (an answer lost after acting) is in the next live list; else it is sent again,
        with its upload, when next planned."""
        return self._move("refused", sent_at=None)

    def resolved(self) -> PendingCreate:
        """Its batch is live."""
        return self._move("resolved")

    def _move(self, step: str, **fields: Any) -> PendingCreate:
        origins, to = TRANSITIONS[step]
        if self.state not in origins:
            raise ValueError(f"intent {self.attempt} is {self.state}: it cannot be {step}")
        return self.model_copy(update={"state": to, **fields})


def unresolved(intents: Iterable[PendingCreate], live_attempts: Collection[str]) -> tuple[PendingCreate, ...]:
    """The intents still pending: an intent whose attempt is in the live list made its batch."""
    return tuple(i for i in intents if i.state is not IntentState.RESOLVED and i.attempt not in live_attempts)


def intent_state(fields: dict[str, Any]) -> IntentState:
    """The state an intent's fields imply, for a document written before intents had a state."""
    if fields.get("sent_at") is not None:
        return IntentState.SENT
    return IntentState.UPLOADED if fields.get("input_file_id") is not None else IntentState.PLANNED


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


class ReuseRecord(_Frozen):
    """What a run reuses (spec.reuse): chosen once, when the run starts, and kept for it, so every
    pass sends the same requests (engine/reuse.py)."""

    run: str
    generation: str
    requests: int  # of the input
    reused: int  # answered by earlier runs, not sent
    from_run: str | None = None  # the run most reused answers come from
    sent_sha256: str  # names the set of custom_ids sent
    since: int = 0  # unix seconds: the oldest answer it may reuse (its start less max_age)
    from_several: bool = False  # the reused answers come from more than one run (`from_run` has most)


class RunRecord(_Frozen):
    """One execution of a job: its batches (parts and retries), counts, start and end."""

    run: str
    generation: str
    status: str
    request_counts: dict[str, int] = Field(default_factory=dict)
    batches: tuple[str, ...] = ()
    started_at: int | None = None
    ended_at: int | None = None
    results: str | None = None  # the merged results file, once written (None again once overwritten)
    results_overwritten_by: str | None = None  # the later run that wrote its results file over
    usage: TokenUsage | None = None  # tokens its finished batches' output lines used
    cost_usd: float | None = None  # at the prices in force when it started; None: no price
    reused: int = 0  # requests answered by earlier runs (spec.reuse), not sent


class AppliedFrom(_Frozen):
    """The git commit a change to a job was made from: a writer whose checkout is behind it
    leaves the job alone (engine/workspace.py)."""

    commit: str = Field(pattern=r"^[0-9a-f]{40}(?:[0-9a-f]{24})?$")
    committed_at: int  # its committer date, unix seconds: orders commits neither of which holds the other

    @property
    def short(self) -> str:
        return self.commit[:7]


class Definition(Mapping[str, Any]):
    """A job's recorded definition (what its generation was made from, shown field by field in
    a plan's diff), held as its compact JSON text and parsed again on every read.  Its three
    dicts were a quarter of a record's memory (1 KB a job), while a pass reads it only for a job
    whose generation changed (its diff, the input's requests changed) or that has no spec.  It
    reads, compares and dumps as the dict it was made from: the state file's bytes and every
    reader are as before."""

    __slots__ = ("_text",)

    def __init__(self, value: Mapping[str, Any]) -> None:
        try:
            # A str of its own: orjson's bytes keep the 4 KB buffer they were written into.
            self._text = orjson.dumps(dict(value.items())).decode()
        except orjson.JSONEncodeError:  # an integer beyond 64 bits
            self._text = json.dumps(dict(value.items()), separators=(",", ":"), ensure_ascii=False)

    def parsed(self) -> dict[str, Any]:
        """A new dict of it (json, not orjson: that reads an integer beyond 64 bits as a float)."""
        found: dict[str, Any] = json.loads(self._text)
        return found

    def __getitem__(self, key: str) -> Any:
        return self.parsed()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.parsed())

    def __len__(self) -> int:
        return len(self.parsed())

    # One parse for the whole of it, not one per key (as Mapping's own would).
    def items(self) -> ItemsView[str, Any]:
        return self.parsed().items()

    def keys(self) -> KeysView[str]:
        return self.parsed().keys()

    def values(self) -> ValuesView[Any]:
        return self.parsed().values()

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Definition) and other._text == self._text:
            return True
        return isinstance(other, Mapping) and self.parsed() == dict(other.items())

    __hash__ = None  # type: ignore[assignment]  # a mapping, as a dict is: not hashable

    def __repr__(self) -> str:
        return f"Definition({self.parsed()!r})"


def _held_compactly(value: Mapping[str, Any] | None) -> Mapping[str, Any] | None:
    return None if value is None or isinstance(value, Definition) else Definition(value)


def _as_dict(value: Mapping[str, Any] | None) -> dict[str, Any] | None:
    return None if value is None else dict(value.items())


# A record made by `model_copy(update=...)` (no validation) may hold a plain dict: both read alike.
RecordedDefinition = Annotated[
    Mapping[str, Any] | None, AfterValidator(_held_compactly), PlainSerializer(_as_dict)
]


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
    definition: RecordedDefinition = None  # what the generation was made from, for plan diffs
    missed_slot: str | None = None  # the latest slot skipped for its starting_deadline
    applied_from: AppliedFrom | None = None  # None: last changed from outside git, or never
    reuse: ReuseRecord | None = None  # what the current run reuses; None: it sends every request

    @property
    def reused(self) -> int:
        """Requests of the current run answered by earlier runs."""
        reuse = self.reuse
        return reuse.reused if reuse and reuse.run == self.run and reuse.generation == self.generation else 0

    @property
    def all_reused(self) -> bool:
        """The current run sends nothing: every answer is reused, and it has no batch."""
        reuse = self.reuse
        return bool(self.reused and reuse and reuse.reused == reuse.requests)

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


class QueueLearning(_Frozen):
    """What refusals taught about one model's queue at one provider (plans/admission.py)."""

    tokens: int | None = None  # the limit a refusal's message named; None: not learnt
    requests: int | None = None
    learnt_at: str | None = None
    # After a refusal despite our count, only `floor` of the limit is used at first, growing
    # back to all of it over admission.RECOVERY_SECONDS from `lowered_at` (unix seconds).
    floor: float = Field(default=1.0, gt=0, le=1)
    lowered_at: float | None = None


class Admitted(_Frozen):
    """An admitted create's share of its model's queue, estimated when it was planned."""

    provider: str
    model: str
    tokens: int
    requests: int
    limited: bool = False  # admitted under a known limit: a refusal of it is congestion


class QueuePlace(_Frozen):
    """Where a job with parts held back stands in its model's queue, as the last pass saw it."""

    provider: str
    model: str
    position: int
    parts: int
    tokens: int
    tokens_ahead: int
    estimated_start: float | None = None  # unix seconds
    never_fits: bool = False


class QueueBook(_Frozen):
    """Admission's memory between passes (plans/admission.py)."""

    learnt: dict[str, dict[str, QueueLearning]] = Field(default_factory=dict)  # provider → model →
    admitted: dict[str, Admitted] = Field(default_factory=dict)  # unit (admission.unit_key) →
    order: dict[str, float] = Field(default_factory=dict)  # job → when its spec first appeared
    places: dict[str, QueuePlace] = Field(default_factory=dict)  # job → where it waits


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
    queue: QueueBook = Field(default_factory=QueueBook)

    def with_jobs(self, jobs: dict[str, JobState]) -> State:
        """This state with `jobs`, in name order (the same names: in this state's order, no sort)."""
        if jobs.keys() == self.jobs.keys():
            if list(jobs) == list(self.jobs):  # already in order (a copy of these jobs, some replaced)
                return self.model_copy(update={"jobs": dict(jobs)})
            return self.model_copy(update={"jobs": {name: jobs[name] for name in self.jobs}})
        return self.model_copy(update={"jobs": dict(sorted(jobs.items()))})
