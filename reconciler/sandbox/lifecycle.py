"""Where a batch is at a given instant, computed from its record alone (pure; no I/O), and its
public JSON at that moment, shaped like the real API's Batch object.

The timeline is fixed once the batch is created and validated:

    created ──validation_seconds──► in_progress ──total/requests_per_second──► finalizing
            ──finalizing_seconds──► completed

unless created + expiry_seconds comes first (expired, with the requests answered by then), or a
cancel request arrives (cancelling, then cancelled after the cancel's own delay, keeping the
requests answered before the cancel). Evaluating lazily from stored times is what lets batches
progress while no server runs, and makes every process agree on the same answer.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from dataclasses import dataclass, field
from typing import Any

from reconciler.sandbox.disk import BatchRecord, Usage

# Statuses whose results must exist as files before the batch is shown.
WITH_RESULTS = frozenset({"completed", "expired", "cancelled"})
CANCELLABLE = frozenset({"validating", "in_progress", "finalizing"})
_EPSILON = 1e-9  # keeps 3 requests at 10/s from finishing at 2.9999999 requests


@dataclass(frozen=True)
class Moment:
    status: str
    processed: int  # requests answered so far, counted in input order
    events: dict[str, float] = field(default_factory=dict)  # status -> when it was entered


def validated_at(record: BatchRecord) -> float:
    return record.created + record.timeline.validation_seconds


def expires_at(record: BatchRecord) -> float:
    return record.created + record.timeline.expiry_seconds


def all_answered_at(record: BatchRecord) -> float:
    total = record.validation.total if record.validation else 0
    return validated_at(record) + total / record.timeline.requests_per_second


def needs_validation(record: BatchRecord, now: float) -> bool:
    start = validated_at(record)
    if record.validation is not None or now < start or expires_at(record) <= start:
        return False
    return record.cancel is None or record.cancel.at >= start


def moment(record: BatchRecord, now: float) -> Moment:
    cancel = record.cancel
    if cancel is None or now < cancel.at:
        return _uncancelled(record, now)
    before = _uncancelled(record, cancel.at)
    events = {**before.events, "cancelling": cancel.at}
    if now < cancel.at + cancel.seconds:
        return Moment("cancelling", before.processed, events)
    return Moment("cancelled", before.processed, {**events, "cancelled": cancel.at + cancel.seconds})


def _uncancelled(record: BatchRecord, now: float) -> Moment:
    start, expiry = validated_at(record), expires_at(record)
    if expiry <= start and now >= expiry:
        return Moment("expired", 0, {"expired": expiry})
    validation = record.validation
    if now < start or validation is None:
        return Moment("validating", 0)
    if validation.errors or record.refused is not None:
        return Moment("failed", 0, {"failed": start})
    if record.timeline.start_failure:
        return Moment(record.timeline.start_failure, 0, {"failed": start})
    events = {"in_progress": start}
    answered = all_answered_at(record)
    if expiry < answered and now >= expiry:
        return Moment("expired", _answered_by(record, expiry), {**events, "expired": expiry})
    if now < answered:
        return Moment("in_progress", _answered_by(record, now), events)
    events["finalizing"] = answered
    finished = answered + record.timeline.finalizing_seconds
    if now < finished:
        return Moment("finalizing", validation.total, events)
    return Moment("completed", validation.total, {**events, "completed": finished})


def _answered_by(record: BatchRecord, when: float) -> int:
    total = record.validation.total if record.validation else 0
    if when >= all_answered_at(record):
        return total
    elapsed = when - validated_at(record)
    done = math.floor(elapsed * record.timeline.requests_per_second + _EPSILON)
    return max(0, min(total - 1, done))


def request_counts(record: BatchRecord, now_at: Moment) -> dict[str, int]:
    validation = record.validation
    if validation is None or validation.errors or record.refused is not None:
        return {"total": 0, "completed": 0, "failed": 0}
    answered = now_at.processed
    errored = bisect_left(validation.failing, answered)
    # Requests an expiry cut off are failures too: they sit in the error file.
    unanswered = validation.total - answered if now_at.status == "expired" else 0
    return {
        "total": validation.total,
        "completed": answered - errored,
        "failed": errored + unanswered,
    }


_EVENT_FIELDS = {
    "in_progress": "in_progress_at",
    "finalizing": "finalizing_at",
    "completed": "completed_at",
    "failed": "failed_at",
    "expired": "expired_at",
    "cancelling": "cancelling_at",
    "cancelled": "cancelled_at",
}


def batch_json(record: BatchRecord, now_at: Moment) -> dict[str, Any]:
    validation = record.validation
    outcome = record.outcome if now_at.status in WITH_RESULTS else None
    failed = now_at.status == "failed" and validation is not None
    body: dict[str, Any] = {
        "id": record.id,
        "object": "batch",
        "endpoint": record.endpoint,
        "model": validation.model if validation else None,
        "errors": _errors(record) if failed else None,
        "input_file_id": record.input_file_id,
        "completion_window": record.completion_window,
        "status": now_at.status,
        "output_file_id": outcome.output_file_id if outcome else None,
        "error_file_id": outcome.error_file_id if outcome else None,
        "created_at": int(record.created),
        "expires_at": int(expires_at(record)),
    }
    for event, name in _EVENT_FIELDS.items():
        when = now_at.events.get(event)
        body[name] = int(when) if when is not None else None
    body["request_counts"] = request_counts(record, now_at)
    body["metadata"] = record.metadata
    body["usage"] = (outcome.usage if outcome else Usage()).public()
    return body


def _errors(record: BatchRecord) -> dict[str, Any]:
    items = record.validation.errors if record.validation else ()
    if not items and record.refused is not None:
        items = (record.refused,)
    return {"object": "list", "data": [item.model_dump() for item in items]}
