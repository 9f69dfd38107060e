"""The planner's vocabulary: what is desired, what is live, and the changes that converge. Plain data."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from enum import StrEnum
from typing import Any

from reconciler.api.batch import Batch, QueueRefusal, is_terminal, queue_refusal
from reconciler.common.limits import InputLimits
from reconciler.common.ownership import DEFAULT_RUN, generation
from reconciler.common.usage import UnitPrices
from reconciler.plans.reasons import BudgetPassed, OverBudget, Queued, Reason, Reused, Upcoming
from reconciler.specs.slices import PartSpec
from reconciler.state.model import BatchRecord, IntentKey, QueueBook

BYTES_PER_TOKEN = 4


class Action(StrEnum):
    CREATE = "create"
    REPLACE = "replace"
    RETRY = "retry"
    RESUME = "resume"
    CANCEL = "cancel"
    ADOPT = "adopt"
    DEDUPE = "dedupe"
    FORGET = "forget"
    NOOP = "noop"


# How a change is marked in every rendering of a plan, log line and PR comment.
SYMBOLS = {
    Action.CREATE: "+",
    Action.REPLACE: "~",
    Action.RETRY: "+",
    Action.RESUME: "+",
    Action.CANCEL: "-",
    Action.ADOPT: ">",
    Action.DEDUPE: "!",
    Action.FORGET: ".",
    Action.NOOP: " ",
}


@dataclass(frozen=True, slots=True)
class LiveBatch:
    """A batch of ours as observed, with the provider it lives on: what a pass reads of it, kept
    compact.  Made once per batch when it is observed (`of`): its record (the observed fields, as
    the state records them) and its metadata are read then, for every step of the pass that asks
    (the planner, the duplicate guard, retries, admission, the record), and the parsed `Batch`
    is let go.  Safe to share: everything here is frozen; a batch seen again is a new LiveBatch."""

    provider: str
    record: BatchRecord = field(repr=False)  # id, status, counts, files, times, run, part, retry
    job: str  # "" for none (a batch of ours always names one)
    generation: str | None
    deletion_policy: str | None = None  # what its creator said should happen when its spec goes
    endpoint: str | None = None

    @classmethod
    def of(cls, provider: str, batch: Batch) -> LiveBatch:
        record = BatchRecord.from_batch(batch)
        endpoint = sys.intern(batch.endpoint) if batch.endpoint else None  # a few, shared by all
        return cls(provider, record, batch.job or "", batch.generation, batch.deletion_policy, endpoint)

    @property
    def id(self) -> str:
        return self.record.batch_id

    @property
    def status(self) -> str:
        return self.record.status

    @property
    def terminal(self) -> bool:
        return is_terminal(self.record.status)

    @property
    def unit(self) -> IntentKey:
        """The one create meant for it (made when asked: kept, it would cost more than it saves)."""
        return IntentKey.of(
            self.job, self.generation or "", self.record.run, self.record.part, self.record.retry
        )

    @property
    def run(self) -> str:
        return self.record.run or DEFAULT_RUN

    @property
    def part(self) -> int:
        return self.record.part

    @property
    def retry(self) -> int:
        return self.record.retry

    @property
    def attempt(self) -> str | None:
        return self.record.attempt

    @property
    def created_at(self) -> int | None:
        return self.record.created_at

    @property
    def refusal(self) -> QueueRefusal | None:
        """Why the provider's queue turned it away; None unless it did."""
        return queue_refusal(self.record.errors) if self.record.status == "failed" else None


@dataclass(frozen=True)
class Slot:
    """A schedule as of one instant: the latest slot due and the next one (UTC instants, so
    compared as instants: in a repeated hour one wall time names two)."""

    expression: str
    timezone: str = "UTC"
    concurrency_policy: str = "forbid"
    starting_deadline: int | None = None  # seconds; None: a missed slot is never skipped
    now: datetime | None = None
    due: datetime | None = None  # the latest slot at or before `now`
    next: datetime | None = None  # the first slot after `now`


@dataclass(frozen=True)
class QueueLimit:
    """A model's batch queue at its provider: what the unfinished batches may hold at once."""

    tokens: int | None = None  # enqueued prompt tokens
    requests: int | None = None  # enqueued requests


@dataclass(frozen=True, slots=True)
class DesiredJob:
    """What a spec asks for: the planner reads the first fields, apply the rest."""

    name: str
    generation: str
    provider: str
    suspend: bool = False
    deletion_policy: str = "cancel"
    requests: int = 0
    model: str = ""
    input_bytes: int = 0
    parts: tuple[PartSpec, ...] = ()
    split: InputLimits | None = None  # spec.split: where parts are cut
    max_attempts: int = 1
    retry_on: tuple[str, ...] = ()
    endpoint: str = ""
    completion_window: str = "24h"
    metadata: Mapping[str, str] = field(default_factory=dict)
    input_path: str = ""
    results_path: str | None = None  # where merged results go, when the spec asks for them
    cleanup_inputs: bool = False  # delete uploaded inputs once their batch is finished
    cleanup_outputs: bool = False  # delete output and error files once results are written
    input_expires_after: int | None = None  # seconds the provider keeps an upload; None: its default
    output_expires_after: int | None = None  # seconds it keeps a batch's output and error files
    input_tokens: int = 0  # estimated over the whole input (specs/inputs/tokens.py)
    output_tokens: int = 0  # the output limits its requests set, added up
    unbounded: int = 0  # requests that set no output limit
    prices: UnitPrices | None = None  # None: no price for this model
    price_taken: date | None = None  # when the shipped table's price was taken; None: not from it
    budget_usd: float | None = None  # spec.budget.max_usd: one run at most
    budget_cancels: bool = False  # spec.budget.on_exceed: cancel
    run_label: str = DEFAULT_RUN  # the run id `spec.run` asks for (unscheduled jobs)
    schedule: Slot | None = None  # with `now`, `due` and `next` filled in for each pass
    history_limit: int = 10
    definition: Mapping[str, Any] = field(default_factory=dict)  # shown field by field in diffs
    input_changes: Mapping[str, Any] | None = None  # requests added/removed/changed since the state's input
    priority: int = 0  # spec.priority: higher goes first in its model's queue
    queue_limit: QueueLimit | None = None  # declared by its Provider for its model; None: none declared
    reuse_max_age: int | None = None  # spec.reuse.max_age in seconds; None: reuse is off
    reuse_scope: str = "job"  # spec.reuse.scope: job | owner
    reuse: Reuse | None = None  # what this run reuses (engine/reuse.py): input_path is then what is sent
    input_sha256: str = ""  # the spec's input's digest (the key of what is kept of it beside the state)

    def estimated_tokens(self, requests: int) -> int:
        """Input tokens for `requests` of this job's requests, in proportion to the whole input's
        estimate (or, without one, a token per four bytes of request line)."""
        if not self.requests:
            return 0
        if self.input_tokens:
            return self.input_tokens * requests // self.requests
        return self.input_bytes * requests // self.requests // BYTES_PER_TOKEN

    def unit_tokens(self, part: int, requests: int) -> int:
        """Input tokens of `requests` of one part's requests: the part's own count when it was cut
        to fit a queue (in proportion, for a retry of some of them), else the job's share."""
        found = next((p for p in self.parts if p.index == part), None)
        if found is not None and found.tokens and found.requests:
            return found.tokens * min(requests, found.requests) // found.requests
        return self.estimated_tokens(requests)

    @property
    def legacy_generation(self) -> str | None:
        """The same spec's generation before runs existed, which also hashed the metadata: what a
        version-1 state or batch carries.  Worked out when asked, not kept: only a job whose
        recorded or listed generation is not the current one asks (a hash a job was 0.07 s of
        a plan at 10,000)."""
        if not self.definition:
            return None
        hashed = {key: value for key, value in self.definition.items() if key not in ("run", "input")}
        return generation(hashed, self.input_sha256)

    def made_from_this_spec(self, generation: str | None) -> bool:
        """`generation` is this spec's, now or before runs existed (the legacy one worked out only
        when the current one does not match)."""
        return generation == self.generation or generation == self.legacy_generation

    @property
    def part_specs(self) -> tuple[PartSpec, ...]:
        if self.reuse is not None:  # the parts of what is sent: none when every answer is reused
            return self.parts
        return self.parts or (PartSpec(index=0, requests=self.requests),)


@dataclass(frozen=True)
class Reuse:
    """What a job's run reuses: `reused` of its `requests` are answered by earlier runs, so only
    the rest go out (`DesiredJob.input_path` is then a file of those, in input order, and `parts`
    its parts).  Chosen once per run (engine/reuse.py) and recorded with it."""

    full_input: str  # the spec's input
    reused: int
    from_run: str | None  # the run most of the reused answers come from
    sent_sha256: str  # names the set of requests sent (their custom_ids)
    since: int  # unix seconds: the oldest answer it may reuse (its start less max_age)
    from_several: bool = False  # the reused answers come from more than one run


@dataclass(frozen=True)
class Unit:
    """One batch to create: a part of the input, at a given retry attempt (1 = first)."""

    part: int
    retry: int
    requests: int
    run: str = DEFAULT_RUN


@dataclass(frozen=True)
class Change:
    job: str
    action: Action
    reason: Reason
    provider: str
    generation: str | None = None
    cancel: tuple[str, ...] = ()  # batch ids to cancel
    adopt: tuple[str, ...] = ()  # batch ids to record
    creates: tuple[Unit, ...] = ()  # batches to create
    requests: int = 0
    model: str = ""
    launch_requests: int = 0  # requests the creates/retries send
    launch_tokens: int = 0  # their estimated input tokens
    estimate: CostEstimate | None = None  # what they cost; None when nothing is launched
    over_budget: OverBudget | None = None  # why this change passes a budget
    run: str | None = None  # the run the creates belong to
    attention: bool = False  # a noop the user should see anyway (e.g. a batch left running)
    next_run: Upcoming | None = None  # a scheduled job's next slot
    missed_slot: str | None = None  # a slot skipped for its starting_deadline (announced once)
    queued: Queued | None = None  # parts admission held back for room in their model's queue
    reused: Reused | None = None  # a create of a run that reuses earlier answers
    saved: CostEstimate | None = None  # what the reused requests would have cost

    @property
    def mutates(self) -> bool:
        return self.action is not Action.NOOP


@dataclass(frozen=True)
class Plan:
    changes: tuple[Change, ...] = field(default_factory=tuple)
    warnings: tuple[BudgetPassed, ...] = ()  # runs whose actual cost passed their budget while running
    # Said alongside the changes, never a change themselves: e.g. a results file to write again.
    notes: tuple[str, ...] = ()
    table_prices: tuple[TablePrices, ...] = ()  # the shipped price table's figures this plan used
    queue_book: QueueBook | None = None  # what admission records (plans/admission.py); None: not run

    @property
    def pending(self) -> tuple[Change, ...]:
        return tuple(c for c in self.changes if c.mutates)


# The shipped price table's figures are called old past this many days (by the reconciler's clock).
STALE_PRICE_DAYS = 90


@dataclass(frozen=True)
class TablePrices:
    """Models a plan priced from the shipped table with figures taken on one date."""

    taken: date
    models: tuple[str, ...]
    age_days: int  # on the day the plan was made

    @property
    def stale(self) -> bool:
        return self.age_days > STALE_PRICE_DAYS


@dataclass(frozen=True)
class CostEstimate:
    """What launching some requests costs: input known, output an upper bound ("up to")."""

    input_tokens: int
    output_tokens: int | None  # the most they may write; None: some request has no bound
    input_usd: float | None  # None: the model has no price
    output_usd: float | None  # upper bound; None: no price, or no bound

    @property
    def upper_usd(self) -> float | None:
        if self.input_usd is None or self.output_usd is None:
            return None
        return self.input_usd + self.output_usd


@dataclass(frozen=True)
class PlanContext:
    """What a plan is asked beyond the files: `replace` starts new runs of these jobs, named with
    `stamp` (the pass's time); `targets`, when given, are the only jobs planned."""

    stamp: str = ""
    replace: frozenset[str] = frozenset()
    targets: frozenset[str] | None = None


# (job, part) → how many of that part's requests still need another batch
Retryable = Mapping[tuple[str, int], int]

# The unit of a create sent without an answer → seconds left in its quarantine: it may still be
# in flight, so it is not sent again yet (engine/apply/intents.py)
InFlight = Mapping[IntentKey, float]
