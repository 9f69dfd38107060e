"""The Batch object as the API returns it, read leniently, and what our metadata says about it.

Server objects use extra="ignore", unlike user specs: a provider adding a field must not
break us, while a user's typo must.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, field_validator

from reconciler.common import ownership

# Portkey's own terminal statuses: its upload of the input to the provider, or the provider's
# start of the batch, failed.  The batch never ran: nothing was answered, nothing billed.
START_FAILURES = frozenset({"file_upload_failed", "batch_start_failed"})
TERMINAL_STATUSES = frozenset({"completed", "failed", "expired", "cancelled"}) | START_FAILURES
TIMESTAMP_FIELDS = (
    "created_at",
    "in_progress_at",
    "expires_at",
    "finalizing_at",
    "completed_at",
    "failed_at",
    "expired_at",
    "cancelling_at",
    "cancelled_at",
)


# A batch past its model's queue limit is accepted, then ends `failed` with one of these codes
# (the request-count cap is known by its wording); the message names the limit.
QUEUE_CODES = frozenset({"token_limit_exceeded", "request_limit_exceeded"})
_QUEUE_WORDING = re.compile(r"\bEnqueued (token|request) limit reached\b", re.IGNORECASE)
_LIMIT = re.compile(r"\bLimit:\s*([0-9][0-9,]{0,24})\s+enqueued (token|request)s?\b", re.IGNORECASE)


@dataclass(frozen=True)
class QueueRefusal:
    """A batch the provider's queue turned away: nothing ran; `limit` as its message says it."""

    kind: str  # token | request
    limit: int | None  # None: the message did not say


def queue_refusal(errors: dict[str, Any] | None) -> QueueRefusal | None:
    """The queue refusal a failed batch's `errors` carry; None for any other failure."""
    items = (errors or {}).get("data")
    first = items[0] if isinstance(items, list) and items and isinstance(items[0], dict) else {}
    code, message = first.get("code"), first.get("message")
    message = message if isinstance(message, str) else ""
    wording = _QUEUE_WORDING.search(message)
    if code not in QUEUE_CODES and wording is None:
        return None
    by_code = "request" if code == "request_limit_exceeded" else "token"
    kind = wording.group(1).lower() if wording else by_code
    stated = _LIMIT.search(message)
    limit = int(stated.group(1).replace(",", "")) if stated and stated.group(2).lower() == kind else None
    return QueueRefusal(kind, limit)


def is_terminal(status: str) -> bool:
    """Unknown statuses count as still running: never re-create on a word we do not know."""
    return status in TERMINAL_STATUSES


class RequestCounts(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    total: int = 0
    completed: int = 0
    failed: int = 0

    @field_validator("total", "completed", "failed", mode="before")
    @classmethod
    def _null_is_zero(cls, value: Any) -> Any:
        """Providers send `null` for a count not known yet, and `3.0` for three."""
        return 0 if value is None else _whole(value)


class Batch(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    id: str
    status: str = "unknown"
    endpoint: str | None = None
    input_file_id: str | None = None
    output_file_id: str | None = None
    error_file_id: str | None = None
    errors: dict[str, Any] | None = None
    request_counts: RequestCounts | None = None
    metadata: dict[str, str] | None = None
    created_at: int | None = None
    in_progress_at: int | None = None
    expires_at: int | None = None
    finalizing_at: int | None = None
    completed_at: int | None = None
    failed_at: int | None = None
    expired_at: int | None = None
    cancelling_at: int | None = None
    cancelled_at: int | None = None
    usage: dict[str, int] | None = None

    @field_validator("metadata", mode="before")
    @classmethod
    def _metadata_as_strings(cls, value: Any) -> Any:
        """The API says strings; a foreign batch with `{"n": 5}` or `{"note": null}` is read,
        not refused: one odd batch in the account must not stop every plan."""
        if not isinstance(value, dict):
            return None
        return {str(k): v if isinstance(v, str) else json.dumps(v) for k, v in value.items() if v is not None}

    @field_validator(*TIMESTAMP_FIELDS, mode="before")
    @classmethod
    def _whole_seconds(cls, value: Any) -> Any:
        """A fractional `created_at` is read as whole seconds."""
        return _whole(value)

    @field_validator("errors", mode="before")
    @classmethod
    def _errors_as_object(cls, value: Any) -> Any:
        """The contract says an object; a provider sending the bare list is read the same."""
        return {"object": "list", "data": value} if isinstance(value, list) else value

    @field_validator("usage", mode="before")
    @classmethod
    def _usage_counts(cls, value: Any) -> Any:
        """Only the top-level token counts; nested details and odd shapes are dropped."""
        if not isinstance(value, dict):
            return None
        return {k: v for k, v in value.items() if isinstance(v, int) and not isinstance(v, bool)}

    def meta(self, key: str) -> str | None:
        return (self.metadata or {}).get(key)

    def owned_by(self, owner_tag: str) -> bool:
        return self.meta(ownership.KEY_OWNER) == owner_tag and bool(self.job)

    @property
    def job(self) -> str | None:
        return self.meta(ownership.KEY_JOB)

    @property
    def generation(self) -> str | None:
        return self.meta(ownership.KEY_GENERATION)

    @property
    def attempt(self) -> str | None:
        return self.meta(ownership.KEY_ATTEMPT)

    @property
    def part(self) -> int:
        return _int(self.meta(ownership.KEY_PART), default=0)

    @property
    def retry(self) -> int:
        return _int(self.meta(ownership.KEY_RETRY), default=1)

    @property
    def run(self) -> str:
        return self.meta(ownership.KEY_RUN) or ownership.DEFAULT_RUN

    @property
    def deletion_policy(self) -> str | None:
        """What its creator said should happen when its spec goes: None on older batches."""
        return self.meta(ownership.KEY_DELETION_POLICY)

    @property
    def terminal(self) -> bool:
        return is_terminal(self.status)

    @property
    def refusal(self) -> QueueRefusal | None:
        """Why the provider's queue turned it away; None unless it did."""
        return queue_refusal(self.errors) if self.status == "failed" else None


def _whole(value: Any) -> Any:
    if isinstance(value, float) and math.isfinite(value):
        return math.floor(value)
    return value


def _int(value: str | None, *, default: int) -> int:
    try:
        return int(value) if value is not None else default
    except ValueError:
        return default
