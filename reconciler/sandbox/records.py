"""What the sandbox keeps on disk: files' metadata and batches' records.

A batch record stores only what cannot be derived: when it was created, the timeline knobs it
was created under, the outcome of validating its input, a cancel request, and the files written
when it ended. Its status at any moment is computed from these (see lifecycle.py).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict


class Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class FileRecord(Frozen):
    """The File object; `expires_at` (unix seconds) is when the file is deleted, None: never."""

    id: str
    object: Literal["file"] = "file"
    bytes: int
    created_at: int
    filename: str
    purpose: str
    status: str = "processed"
    expires_at: int | None = None
    status_details: str | None = None


class BatchErrorItem(Frozen):
    code: str
    message: str
    param: str | None = None
    line: int | None = None


class Timeline(Frozen):
    validation_seconds: float
    requests_per_second: float
    finalizing_seconds: float
    expiry_seconds: float
    start_failure: str | None = None  # a Portkey terminal status the batch ends in, unrun
    file_lifetime_scale: float = 1.0  # of its output and error files' lifetime


class Usage(Frozen):
    input_tokens: int = 0
    output_tokens: int = 0

    def plus(self, other: Usage) -> Usage:
        return Usage(
            input_tokens=self.input_tokens + other.input_tokens,
            output_tokens=self.output_tokens + other.output_tokens,
        )

    def public(self) -> dict[str, Any]:
        return {
            "input_tokens": self.input_tokens,
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": self.output_tokens,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": self.input_tokens + self.output_tokens,
        }


class Validation(Frozen):
    """The input as found when validation ran; `errors` non-empty means the batch failed."""

    total: int = 0
    model: str | None = None
    failing: tuple[int, ...] = ()  # 0-based request indices the model answers with an HTTP error
    errors: tuple[BatchErrorItem, ...] = ()


class CancelRequest(Frozen):
    at: float
    seconds: float


class Outcome(Frozen):
    output_file_id: str | None = None
    error_file_id: str | None = None
    usage: Usage = Usage()


class BatchRecord(Frozen):
    id: str
    endpoint: str
    input_file_id: str
    completion_window: str
    metadata: dict[str, str] | None = None
    output_expires_seconds: int | None = None
    created: float  # unix seconds, unrounded: the timeline is computed from it
    timeline: Timeline
    validation: Validation | None = None
    cancel: CancelRequest | None = None
    outcome: Outcome | None = None
