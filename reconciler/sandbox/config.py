"""The sandbox's knobs: one frozen model, validated the same way from Python, HTTP and flags."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

# Knobs that shape a batch's timeline; captured into each batch when it is created, so every
# process sharing a data dir (each with its own knobs) agrees on where that batch is.
TIMELINE_KNOBS = (
    "validation_seconds",
    "requests_per_second",
    "finalizing_seconds",
    "expiry_seconds",
    "start_failure",
)
# The terminal statuses Portkey adds when its upload to the provider, or the provider's batch
# start, fails: the batch never runs.
START_FAILURES = ("file_upload_failed", "batch_start_failed")


class SandboxConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    validation_seconds: float = Field(1.0, ge=0, description="Time a batch spends in `validating`.")
    requests_per_second: float = Field(
        20.0, gt=0, description="Requests one batch completes per second while in_progress."
    )
    finalizing_seconds: float = Field(1.0, ge=0, description="Time a batch spends in `finalizing`.")
    cancel_seconds: float = Field(1.0, ge=0, description="Time from `cancelling` to `cancelled`.")
    expiry_seconds: float = Field(
        86400.0, gt=0, description="Completion window: still in_progress this long after creation → expired."
    )
    api_key: str | None = Field(
        None, min_length=1, description="When set, every /v1 request needs `Authorization: Bearer <key>`."
    )
    latency_seconds: float = Field(0.0, ge=0, description="Delay added to every /v1 response.")
    fault_rate: float = Field(
        0.0, ge=0, le=1, description="Fraction of /v1 requests answered 429/500/503 before acting."
    )
    retry_after_seconds: float = Field(
        0.05, ge=0, description="Retry-After value on injected 429 and 503 answers."
    )
    lost_response_rate: float = Field(
        0.0, ge=0, le=1, description="Fraction of batch creations that succeed but answer 500."
    )
    seed: int | None = Field(None, description="Seed for the fault dice; unset means unpredictable.")
    start_failure: Literal["file_upload_failed", "batch_start_failed"] | None = Field(
        None, description="New valid batches end in this Portkey status when validation ends, unrun."
    )

    def changed(self, **knobs: Any) -> SandboxConfig:
        """A copy with `knobs` applied; ValueError (one line per problem) on unknown or bad knobs."""
        try:
            return SandboxConfig.model_validate({**self.model_dump(), **knobs})
        except ValidationError as error:
            raise ValueError(describe(error)) from None

    def public(self) -> dict[str, Any]:
        """The knobs as shown over HTTP: the key itself never leaves the process."""
        shown = self.model_dump()
        if shown["api_key"] is not None:
            shown["api_key"] = "***"
        return shown


def describe(error: ValidationError) -> str:
    """`fault_rate: Input should be less than or equal to 1` — never the rejected value itself."""
    problems = []
    for item in error.errors():
        knob = ".".join(str(part) for part in item["loc"]) or "config"
        message = "unknown knob" if item["type"] == "extra_forbidden" else item["msg"]
        problems.append(f"{knob}: {message}")
    return "; ".join(problems)
