"""The public JSON of a batch at one moment, shaped like the real API's Batch object."""

from __future__ import annotations

from typing import Any

from reconciler.sandbox.lifecycle import WITH_RESULTS, Moment, expires_at, request_counts
from reconciler.sandbox.records import BatchRecord, Usage

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
    return {"object": "list", "data": [item.model_dump() for item in items]}
