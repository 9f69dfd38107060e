"""The sandbox's knobs: one frozen model, validated the same way from Python, HTTP and flags; and
the seeded dice that inject the faults they ask for (the same seed and request order give the
same faults).
"""

from __future__ import annotations

import math
import random
import threading
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from standardwebhooks import Webhook

from reconciler.sandbox.wire import ApiProblem

# Knobs that shape a batch's timeline; captured into each batch when it is created, so every
# process sharing a data dir (each with its own knobs) agrees on where that batch is.
TIMELINE_KNOBS = (
    "validation_seconds",
    "requests_per_second",
    "finalizing_seconds",
    "expiry_seconds",
    "start_failure",
    "file_lifetime_scale",
)
# The terminal statuses Portkey adds when its upload to the provider, or the provider's batch
# start, fails: the batch never runs.
START_FAILURES = ("file_upload_failed", "batch_start_failed")
# Every knob has an upper bound: a knob of 1e300 seconds would overflow the sleeps and timers it
# reaches (every answer a 500), and one of 1e300 requests a second the timeline's arithmetic.
YEAR_SECONDS = 366 * 24 * 3600.0
MAX_REQUESTS_PER_SECOND = 1e9  # 50,000 requests in 50 µs: "at once", for tests that want it
MAX_WEBHOOK_ATTEMPTS = 1_000
ANY_MODEL = "*"


class QueueLimit(BaseModel):
    """One model's batch queue: what the unfinished batches of one organisation may hold."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    enqueued_tokens: int | None = Field(None, ge=1, description="Prompt tokens of unfinished batches.")
    enqueued_requests: int | None = Field(None, ge=1, description="Requests of unfinished batches.")


class SandboxConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    validation_seconds: float = Field(
        1.0, ge=0, le=YEAR_SECONDS, description="Time a batch spends in `validating`."
    )
    requests_per_second: float = Field(
        20.0,
        gt=0,
        le=MAX_REQUESTS_PER_SECOND,
        description="Requests one batch completes per second while in_progress.",
    )
    finalizing_seconds: float = Field(
        1.0, ge=0, le=YEAR_SECONDS, description="Time a batch spends in `finalizing`."
    )
    cancel_seconds: float = Field(
        1.0, ge=0, le=YEAR_SECONDS, description="Time from `cancelling` to `cancelled`."
    )
    expiry_seconds: float = Field(
        86400.0,
        gt=0,
        le=YEAR_SECONDS,
        description="Completion window: still in_progress this long after creation → expired.",
    )
    api_key: str | None = Field(
        None, min_length=1, description="When set, every /v1 request needs `Authorization: Bearer <key>`."
    )
    latency_seconds: float = Field(
        0.0, ge=0, le=YEAR_SECONDS, description="Delay added to every /v1 response."
    )
    fault_rate: float = Field(
        0.0, ge=0, le=1, description="Fraction of /v1 requests answered 429/500/503 before acting."
    )
    retry_after_seconds: float = Field(
        0.05, ge=0, le=YEAR_SECONDS, description="Retry-After value on injected 429 and 503 answers."
    )
    lost_response_rate: float = Field(
        0.0, ge=0, le=1, description="Fraction of batch creations that succeed but answer 500."
    )
    lost_upload_rate: float = Field(
        0.0, ge=0, le=1, description="Fraction of file uploads that are stored but answer 500."
    )
    seed: int | None = Field(None, description="Seed for the fault dice; unset means unpredictable.")
    start_failure: Literal["file_upload_failed", "batch_start_failed"] | None = Field(
        None, description="New valid batches end in this Portkey status when validation ends, unrun."
    )
    webhook_url: str | None = Field(
        None, pattern=r"^https?://\S+$", description="POST a signed batch.* event here when a batch ends."
    )
    webhook_secret: str | None = Field(None, description="The whsec_ secret webhooks are signed with.")
    webhook_attempts: int | None = Field(
        None,
        ge=1,
        le=MAX_WEBHOOK_ATTEMPTS,
        description="Tries per webhook at most; unset: as many as the retry window holds.",
    )
    webhook_retry_seconds: float = Field(
        5.0,
        gt=0,
        le=YEAR_SECONDS,
        description="Wait before the second try of a webhook; doubled for each next one.",
    )
    webhook_retry_window_seconds: float = Field(
        72 * 3600.0,
        ge=0,
        le=YEAR_SECONDS,
        description="No webhook is tried again later than this after its first try (OpenAI: 72 hours).",
    )
    file_lifetime_scale: float = Field(
        1.0,
        gt=0,
        le=1,
        description="Multiplies every file's lifetime (expires_after, output_expires_after, the "
        "30-day defaults), so a test can watch files expire; expires_at shows the result.",
    )

    limits: dict[str, QueueLimit] = Field(
        default_factory=dict,
        description="Batch queue limits per model ('*': every other model), e.g. "
        '{"gpt-4o-mini": {"enqueued_tokens": 5000}}: a batch that would pass one is accepted, then '
        "fails with token_limit_exceeded, as OpenAI's does.",
    )

    def queue_limit(self, model: str) -> QueueLimit | None:
        return self.limits.get(model) or self.limits.get(ANY_MODEL)

    @field_validator("webhook_secret")
    @classmethod
    def _signing_secret(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                Webhook(value)
            except Exception:  # the library's: empty or not base64
                raise ValueError("must be a whsec_ secret (base64 after the prefix)") from None
        return value

    def changed(self, **knobs: Any) -> SandboxConfig:
        """A copy with `knobs` applied; ValueError (one line per problem) on unknown or bad knobs."""
        try:
            return SandboxConfig.model_validate({**self.model_dump(), **knobs})
        except ValidationError as error:
            raise ValueError(describe(error)) from None

    def public(self) -> dict[str, Any]:
        """The knobs as shown over HTTP: the key itself never leaves the process."""
        shown = self.model_dump()
        for secret in ("api_key", "webhook_secret"):
            if shown[secret] is not None:
                shown[secret] = "***"
        return shown


def describe(error: ValidationError) -> str:
    """`fault_rate: Input should be less than or equal to 1` — never the rejected value itself."""
    problems = []
    for item in error.errors():
        knob = ".".join(str(part) for part in item["loc"]) or "config"
        message = "unknown knob" if item["type"] == "extra_forbidden" else item["msg"]
        problems.append(f"{knob}: {message}")
    return "; ".join(problems)


_FAULTS = {
    429: ("Rate limit reached for requests. Please try again later.", "requests", "rate_limit_exceeded"),
    500: ("The server had an error while processing your request. Sorry about that!", "server_error", None),
    503: ("The engine is currently overloaded, please try again later.", "server_error", None),
}


class Dice:
    def __init__(self, seed: int | None) -> None:
        self._lock = threading.Lock()
        self._random = random.Random(seed)

    def reseed(self, seed: int | None) -> None:
        with self._lock:
            self._random = random.Random(seed)

    def hits(self, rate: float) -> bool:
        if rate <= 0:
            return False  # no roll: a zero rate must not shift the sequence other knobs see
        with self._lock:
            return self._random.random() < rate

    def pick(self, options: list[int]) -> int:
        with self._lock:
            return self._random.choice(options)


def injected_fault(dice: Dice, config: SandboxConfig) -> ApiProblem | None:
    """A 429, 500 or 503 for a `fault_rate` share of requests, before anything is done."""
    if not dice.hits(config.fault_rate):
        return None
    return server_fault(dice.pick(sorted(_FAULTS)), config)


def server_fault(status: int, config: SandboxConfig) -> ApiProblem:
    message, kind, code = _FAULTS[status]
    headers = {}
    if status in (429, 503):
        # HTTP allows only whole seconds in Retry-After; the precise wait goes in retry-after-ms.
        seconds = config.retry_after_seconds
        headers = {"Retry-After": str(math.ceil(seconds)), "retry-after-ms": str(round(seconds * 1000))}
    return ApiProblem(status, message, kind=kind, code=code, headers=headers)
