"""Why a change is what it is: a reason code (`ReasonCode`) with its data, one frozen class per
code, as the planner gives it; and why a change passes a budget (`OverBudget`).  Plain data:
plans/wording.py alone turns them into words, for every renderer, and `plan --json` carries
them as `reason_code` and `reason_data` (the fields below)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, ClassVar


class ReasonCode(StrEnum):
    NO_BATCH_YET = "no_batch_yet"  # create: the job has never had a batch
    PARTS_MISSING = "parts_missing"  # create: some parts of the current run have no batch yet
    INTENT_LOST = "intent_lost"  # create: a recorded create left no batch in the live list
    SPEC_CHANGED = "spec_changed"  # create, replace: the spec's generation changed
    RUN_CHANGED = "run_changed"  # create, replace: spec.run names a new run
    NOT_LIVE = "generation_not_live"  # create: no batch of the current generation is live
    SCHEDULED_RUN = "scheduled_run"  # create, replace: a schedule's slot is due
    REPLACE_REQUESTED = "replace_requested"  # create, replace: --replace starts a new run
    RESTART = "restart"  # retry: a failed start is sent again (no attempt spent)
    RESUME = "resume"  # resume: what a cancel cut short is sent again
    RETRY = "retry"  # retry: requests that did not succeed are sent again
    REQUEUE = "requeue"  # retry: what the provider's queue refused is sent again (no attempt spent)
    QUEUED = "queued"  # noop: every part to create waits for room in its model's queue
    ADOPT = "adopt"  # adopt: a live batch of ours is missing from the state
    SUPERSEDED = "superseded"  # cancel: a newer generation or run takes the batch's place
    SUSPENDED = "suspended"  # cancel, noop: spec.suspend
    SPEC_REMOVED = "spec_removed"  # cancel, forget: the spec is gone
    NO_DELETION_POLICY = "no_deletion_policy"  # noop: no spec, no record, no policy: left running
    ORPHANED = "orphaned"  # noop: no spec, policy orphan: left running
    BUDGET_PASSED = "budget_passed"  # cancel: a run's cost passed its budget (on_exceed: cancel)
    DEDUPE = "dedupe"  # dedupe: two live batches for one unit
    IN_FLIGHT = "in_flight"  # noop: a create got no answer and may still be in flight
    IN_SYNC = "in_sync"  # noop
    RESTART_WAITS = "restart_waits"  # noop: a failed start is restarted when its wait is over
    EDIT_WAITS = "edit_waits"  # noop: a scheduled job's edit waits for its next slot
    NEXT_RUN = "next_run"  # noop: no slot of a schedule is due
    SLOT_MISSED = "slot_missed"  # noop: the due slot passed its starting_deadline
    SLOT_WAITS = "slot_waits"  # noop: the due slot waits for a run still running (forbid)
    LEFT_TO_NEWER = "left_to_newer_checkout"  # noop: a newer checkout last changed the job


# A noop with one of these codes is a job in sync with its spec; any other noop is not.
IN_SYNC_CODES = frozenset(
    {
        ReasonCode.IN_SYNC,
        ReasonCode.SUSPENDED,
        ReasonCode.NEXT_RUN,
        ReasonCode.SLOT_MISSED,
        ReasonCode.SLOT_WAITS,
    }
)


@dataclass(frozen=True)
class FieldChange:
    """One changed leaf of a job's definition: `endpoint`, `/v1/completions` → `/v1/chat/completions`."""

    field: str
    old: Any
    new: Any


@dataclass(frozen=True)
class InputChange:
    """The input's bytes changed: request counts (None: not recorded) and sha256 digests, and
    with `by_custom_id` (specs/inputs/cache.compare) the requests added, removed and changed."""

    requests_before: int | None
    requests_after: int | None
    sha256_before: str
    sha256_after: str
    by_custom_id: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class SpecDiff:
    """What changed in a job's spec: field by field, or, without a recorded definition (an older
    state), only the generations (or the run) before and after."""

    fields: tuple[FieldChange, ...] = ()
    input: InputChange | None = None
    generation_before: str | None = None
    generation_after: str | None = None

    @property
    def named(self) -> bool:
        return bool(self.fields or self.input)


@dataclass(frozen=True)
class Replacing:
    """The running batch a replace cancels, and how far it got."""

    batch: str
    status: str
    completed: int | None = None
    total: int | None = None


@dataclass(frozen=True)
class _Reason:
    code: ClassVar[ReasonCode]


@dataclass(frozen=True)
class NoBatchYet(_Reason):
    code = ReasonCode.NO_BATCH_YET
    requests: int
    parts: int


@dataclass(frozen=True)
class PartsMissing(_Reason):
    code = ReasonCode.PARTS_MISSING
    requests: int
    missing: tuple[int, ...]


@dataclass(frozen=True)
class IntentLost(_Reason):
    code = ReasonCode.INTENT_LOST
    requests: int
    parts: int
    attempts: tuple[str, ...]


@dataclass(frozen=True)
class SpecChanged(_Reason):
    code = ReasonCode.SPEC_CHANGED
    requests: int
    parts: int
    diff: SpecDiff
    replacing: Replacing | None = None


@dataclass(frozen=True)
class RunChanged(_Reason):
    code = ReasonCode.RUN_CHANGED
    requests: int
    parts: int
    run: str
    last_run: str
    diff: SpecDiff
    replacing: Replacing | None = None


@dataclass(frozen=True)
class NotLive(_Reason):
    code = ReasonCode.NOT_LIVE
    requests: int
    parts: int
    generation: str


@dataclass(frozen=True)
class ScheduledRun(_Reason):
    code = ReasonCode.SCHEDULED_RUN
    requests: int
    parts: int
    run: str
    schedule: str
    timezone: str
    still_running: tuple[str, ...] = ()  # earlier runs it runs alongside (or replaces)
    concurrency_policy: str = "forbid"
    replacing: Replacing | None = None


@dataclass(frozen=True)
class ReplaceRequested(_Reason):
    code = ReasonCode.REPLACE_REQUESTED
    requests: int
    parts: int
    run: str
    timezone: str = "UTC"
    replacing: Replacing | None = None


@dataclass(frozen=True)
class Restart(_Reason):
    code = ReasonCode.RESTART
    requests: int
    part: int
    status: str  # the failed start: batch_start_failed or file_upload_failed
    restart: int  # the how-many-th restart of the part
    restarts: int  # at most


@dataclass(frozen=True)
class Resume(_Reason):
    code = ReasonCode.RESUME
    requests: int


@dataclass(frozen=True)
class Retry(_Reason):
    code = ReasonCode.RETRY
    requests: int
    attempt: int


@dataclass(frozen=True)
class Requeue(_Reason):
    code = ReasonCode.REQUEUE
    requests: int
    part: int
    kind: str  # the limit it passed: token | request


@dataclass(frozen=True)
class Queued(_Reason):
    """Parts of a job held back by admission (plans/admission.py): where the first of them
    stands in its model's queue at its provider, and what is ahead of it."""

    code = ReasonCode.QUEUED
    provider: str
    model: str
    position: int  # 1: the next job admitted for this model
    parts: int  # this job's parts held back
    requests: int
    tokens: int  # their estimated prompt tokens
    tokens_ahead: int  # enqueued now, plus the held parts before this job's first
    limit_tokens: int | None  # the usable limit (lowered after a refusal despite our count)
    limit_requests: int | None
    learnt: bool = False  # the limit was learnt from a refusal, not declared
    never_fits: bool = False  # one part is larger than the whole limit: it is never sent
    estimated_start: float | None = None  # unix seconds; None: nothing to tell it from


@dataclass(frozen=True)
class Adopt(_Reason):
    code = ReasonCode.ADOPT
    batch: str
    generation: str
    superseded: str | None = None  # a batch the same change cancels


@dataclass(frozen=True)
class Superseded(_Reason):
    code = ReasonCode.SUPERSEDED
    batch: str
    generation: str | None = None  # what takes its place: a new generation,
    run: str | None = None  # or a later run of its own generation
    timezone: str = "UTC"


@dataclass(frozen=True)
class Suspended(_Reason):
    code = ReasonCode.SUSPENDED
    cancelling: tuple[str, ...] = ()


@dataclass(frozen=True)
class SpecRemoved(_Reason):
    code = ReasonCode.SPEC_REMOVED
    stopped: tuple[str, ...] = ()  # deletion_policy cancel
    left_running: tuple[str, ...] = ()  # deletion_policy orphan (or none known)


@dataclass(frozen=True)
class NoDeletionPolicy(_Reason):
    code = ReasonCode.NO_DELETION_POLICY
    batches: tuple[str, ...]


@dataclass(frozen=True)
class Orphaned(_Reason):
    code = ReasonCode.ORPHANED
    batches: tuple[str, ...]


@dataclass(frozen=True)
class BudgetPassed(_Reason):
    """A run's cost so far passed its spec.budget.max_usd while it runs (also a plan warning)."""

    code = ReasonCode.BUDGET_PASSED
    job: str
    spent_usd: float
    budget_usd: float
    cancels: bool  # on_exceed: cancel


@dataclass(frozen=True)
class Dedupe(_Reason):
    code = ReasonCode.DEDUPE
    part: int
    attempt: int
    kept: str
    cancelling: tuple[str, ...]  # the younger batches of that unit
    more: int = 0  # duplicates of other units, cancelled by the same change


@dataclass(frozen=True)
class CreateInFlight(_Reason):
    code = ReasonCode.IN_FLIGHT
    part: int
    attempt: int
    seconds_left: float


@dataclass(frozen=True)
class InSync(_Reason):
    code = ReasonCode.IN_SYNC
    status: str | None = None  # the job's status, when it has batches


@dataclass(frozen=True)
class RestartWaits(_Reason):
    code = ReasonCode.RESTART_WAITS
    part: int
    status: str
    at: float  # unix seconds (the server's clock) from which the restart may go
    restart: int
    restarts: int


@dataclass(frozen=True)
class EditWaits(_Reason):
    code = ReasonCode.EDIT_WAITS
    job: str
    last_run: str
    next_slot: str | None  # a run id (UTC); None: no later slot
    timezone: str


@dataclass(frozen=True)
class NextRun(_Reason):
    code = ReasonCode.NEXT_RUN
    next_slot: str | None
    timezone: str


@dataclass(frozen=True)
class SlotMissed(_Reason):
    code = ReasonCode.SLOT_MISSED
    slot: str
    late_seconds: float
    starting_deadline: int
    next_slot: str | None
    timezone: str


@dataclass(frozen=True)
class SlotWaits(_Reason):
    code = ReasonCode.SLOT_WAITS
    slot: str
    still_running: tuple[str, ...]
    timezone: str


@dataclass(frozen=True)
class LeftToNewer(_Reason):
    """A writer whose checkout is behind the commit that last changed the job leaves it alone."""

    code = ReasonCode.LEFT_TO_NEWER
    job: str
    checkout: str  # the commit checked out here
    commit: str  # the commit that last applied the job
    relation: str  # behind | diverged | missing (this clone does not have it)


Reason = (
    NoBatchYet
    | PartsMissing
    | IntentLost
    | SpecChanged
    | RunChanged
    | NotLive
    | ScheduledRun
    | ReplaceRequested
    | Restart
    | Resume
    | Retry
    | Requeue
    | Queued
    | Adopt
    | Superseded
    | Suspended
    | SpecRemoved
    | NoDeletionPolicy
    | Orphaned
    | BudgetPassed
    | Dedupe
    | CreateInFlight
    | InSync
    | RestartWaits
    | EditWaits
    | NextRun
    | SlotMissed
    | SlotWaits
    | LeftToNewer
)


@dataclass(frozen=True)
class Upcoming:
    """A scheduled job's next slot: its run id (UTC), in the schedule's time zone."""

    slot: str
    timezone: str
    schedule: str


@dataclass(frozen=True)
class Reused:
    """A create that sends only part of its run: `requests` of `total` are answered by earlier
    runs (spec.reuse): all by `from_run`, or most of them when `from_several`."""

    requests: int
    total: int
    from_run: str | None = None
    from_several: bool = False


@dataclass(frozen=True)
class CostUnknown:
    """Why a launch's cost cannot be told: its model has no price, or some requests set no
    output limit and the model's cap is unknown."""

    model: str
    unbounded: int = 0  # requests with no max_tokens; 0: the model has no price
    left_out: str | None = None  # why the shipped price table leaves the model out


@dataclass(frozen=True)
class OverBudget:
    """Why a change passes a budget: its job's `spec.budget.max_usd` (`budget: job`) or the
    repo's `budget.max_usd_per_plan` (`budget: plan`).  `upper_usd` None: `unknown` says why
    the cost cannot be told."""

    budget: str  # job | plan
    limit_usd: float
    upper_usd: float | None = None
    spent_usd: float = 0.0  # job: what the run already cost (a retry's)
    planned_usd: float = 0.0  # plan: what changes before it already took
    unknown: CostUnknown | None = None
