"""The planner's vocabulary: what is desired, and the changes that converge on it. Plain data."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from reconciler.specs.slices import PartSpec

BYTES_PER_TOKEN = 4


class Action(StrEnum):
    CREATE = "create"
    REPLACE = "replace"
    RETRY = "retry"
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
    Action.CANCEL: "-",
    Action.ADOPT: ">",
    Action.DEDUPE: "!",
    Action.FORGET: ".",
    Action.NOOP: " ",
}


@dataclass(frozen=True)
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
    max_attempts: int = 1
    retry_on: tuple[str, ...] = ()
    endpoint: str = ""
    completion_window: str = "24h"
    metadata: Mapping[str, str] = field(default_factory=dict)
    input_path: str = ""
    results_path: str | None = None  # where merged results go, when the spec asks for them
    cleanup_inputs: bool = False  # delete uploaded inputs once their batch is finished
    cleanup_outputs: bool = False  # delete output and error files once results are written

    def estimated_tokens(self, requests: int) -> int:
        """Input tokens for `requests` of this job's requests: about one token per four bytes
        of request line. JSON syntax counts too, so it errs high; no network, no tokenizer."""
        if not self.requests:
            return 0
        return self.input_bytes * requests // self.requests // BYTES_PER_TOKEN

    @property
    def part_specs(self) -> tuple[PartSpec, ...]:
        return self.parts or (PartSpec(index=0, requests=self.requests),)


@dataclass(frozen=True)
class Unit:
    """One batch to create: a part of the input, at a given retry attempt (1 = first)."""

    part: int
    retry: int
    requests: int


@dataclass(frozen=True)
class Change:
    job: str
    action: Action
    reason: str
    provider: str
    generation: str | None = None
    cancel: tuple[str, ...] = ()  # batch ids to cancel
    adopt: tuple[str, ...] = ()  # batch ids to record
    creates: tuple[Unit, ...] = ()  # batches to create
    requests: int = 0
    model: str = ""
    launch_requests: int = 0  # requests the creates/retries send
    launch_tokens: int = 0  # their estimated input tokens

    @property
    def mutates(self) -> bool:
        return self.action is not Action.NOOP


@dataclass(frozen=True)
class Plan:
    changes: tuple[Change, ...] = field(default_factory=tuple)

    @property
    def pending(self) -> tuple[Change, ...]:
        return tuple(c for c in self.changes if c.mutates)


# (job, part) → how many of that part's requests still need another batch
Retryable = Mapping[tuple[str, int], int]

# (job, generation, part, retry) → seconds left in the quarantine of a create sent without an
# answer: it may still be in flight, so it is not sent again yet (engine/inflight.py)
InFlight = Mapping[tuple[str, str, int, int], float]
