"""The Batch API: create, list, retrieve, cancel, and Portkey's `/output`."""

from __future__ import annotations

from typing import Any

from reconciler.sandbox.config import server_fault
from reconciler.sandbox.disk import BatchRecord
from reconciler.sandbox.exchange import Call, Reply, listing
from reconciler.sandbox.lifecycle import batch_json, moment
from reconciler.sandbox.wire import ApiProblem, bad_request, invalid_value, missing, not_found

ENDPOINTS = (
    "/v1/responses",
    "/v1/chat/completions",
    "/v1/embeddings",
    "/v1/completions",
    "/v1/moderations",
    "/v1/images/generations",
    "/v1/images/edits",
    "/v1/videos",
)
_FIELDS = ("input_file_id", "endpoint", "completion_window", "metadata", "output_expires_after")
MAX_PAIRS, MAX_KEY, MAX_VALUE = 16, 64, 512


def create(call: Call) -> Reply:
    request = call.body.read_json()
    if not isinstance(request, dict):
        raise bad_request("The request body must be a JSON object.")
    unknown = sorted(set(request) - set(_FIELDS))
    if unknown:
        raise bad_request(f"Unrecognized request argument supplied: {unknown[0][:64]}")
    record = call.batches.create(
        call.config,
        input_file_id=_required_text(request, "input_file_id"),
        endpoint=_choice(request, "endpoint", ENDPOINTS),
        completion_window=_choice(request, "completion_window", ("24h",)),
        metadata=_metadata(request.get("metadata")),
        output_expires_seconds=_output_expiry(request.get("output_expires_after")),
    )
    if call.dice.hits(call.config.lost_response_rate):
        raise server_fault(500, call.config)  # the batch exists; only the answer is lost
    return Reply(json=batch_json(record, moment(record, call.now)))


def list_batches(call: Call) -> Reply:
    limit = call.int_query("limit", 20, 1, 100)
    records, has_more = call.batches.page(after=call.query.get("after"), limit=limit, now=call.now)
    return Reply(json=listing([_shown(call, record) for record in records], has_more))


def retrieve(call: Call) -> Reply:
    return Reply(json=_shown(call, _existing(call)))


def cancel(call: Call) -> Reply:
    record = call.batches.cancel(call.params["id"], call.now, call.config.cancel_seconds)
    if record is None:
        raise _no_such_batch(call.params["id"])
    return Reply(json=_shown(call, record))


def output(call: Call) -> Reply:
    """Portkey's shortcut to a batch's output file content."""
    shown = _shown(call, _existing(call))
    stream = call.files.open(shown["output_file_id"]) if shown["output_file_id"] else None
    if stream is None:
        message = f"Batch {shown['id']} has no output file (status '{shown['status']}')."
        raise not_found(message)
    return Reply(stream=stream)


def _existing(call: Call) -> BatchRecord:
    record = call.batches.get(call.params["id"], call.now)
    if record is None:
        raise _no_such_batch(call.params["id"])
    return record


def _shown(call: Call, record: BatchRecord) -> dict[str, Any]:
    return batch_json(record, moment(record, call.now))


def _no_such_batch(batch_id: str) -> ApiProblem:
    return not_found(f"No batch found with id '{batch_id[:80]}'.", param="batch_id")


def _required_text(request: dict[str, Any], name: str) -> str:
    value = request.get(name)
    if value is None:
        raise missing(name)
    if not isinstance(value, str) or not value:
        raise bad_request(f"Invalid type for '{name}': expected a string.", param=name, code="invalid_type")
    return value


def _choice(request: dict[str, Any], name: str, allowed: tuple[str, ...]) -> str:
    value = _required_text(request, name)
    if value not in allowed:
        supported = ", ".join(f"'{option}'" for option in allowed)
        raise invalid_value(name, f"Invalid value: '{value[:64]}'. Supported values are: {supported}.")
    return value


def _metadata(value: Any) -> dict[str, str] | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise bad_request(
            "Invalid type for 'metadata': expected an object.", param="metadata", code="invalid_type"
        )
    if len(value) > MAX_PAIRS:
        message = f"Invalid 'metadata': too many properties. Expected at most {MAX_PAIRS}, got {len(value)}."
        raise bad_request(message, param="metadata", code="object_above_max_properties")
    for key, item in value.items():
        if len(key) > MAX_KEY:
            message = f"Invalid 'metadata': key '{key[:20]}…' is longer than {MAX_KEY} characters."
            raise bad_request(message, param="metadata", code="string_above_max_length")
        if not isinstance(item, str):
            message = f"Invalid type for 'metadata.{key}': expected a string."
            raise bad_request(message, param=f"metadata.{key}", code="invalid_type")
        if len(item) > MAX_VALUE:
            message = f"Invalid 'metadata.{key}': string longer than {MAX_VALUE} characters."
            raise bad_request(message, param=f"metadata.{key}", code="string_above_max_length")
    return value


def _output_expiry(value: Any) -> int | None:
    """`{"anchor": "created_at", "seconds": 3600..2592000}`; None keeps the 30-day default."""
    if value is None:
        return None
    seconds = value.get("seconds") if isinstance(value, dict) else None
    anchor_ok = isinstance(value, dict) and value.get("anchor") == "created_at"
    if not anchor_ok or not isinstance(seconds, int) or not 3600 <= seconds <= 2_592_000:
        message = "Invalid 'output_expires_after': expected anchor 'created_at' and 3600-2592000 seconds."
        raise bad_request(message, param="output_expires_after", code="invalid_value")
    return seconds
