"""The Files API: upload (multipart, streamed to disk), list, retrieve, content, delete."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from reconciler.sandbox.config import server_fault
from reconciler.sandbox.disk import FileRecord
from reconciler.sandbox.exchange import Call, Reply, listing
from reconciler.sandbox.file_store import scaled
from reconciler.sandbox.wire import (
    ApiProblem,
    Form,
    bad_request,
    boundary_of,
    invalid_value,
    missing,
    not_found,
    parse_form,
)

PURPOSES = ("assistants", "batch", "fine-tune", "vision", "user_data", "evals")
MAX_UPLOAD_BYTES = 512 * 1024 * 1024  # the Files API's own limit; batch inputs are checked later
BATCH_FILE_LIFETIME_SECONDS = 30 * 24 * 3600  # purpose=batch files expire after 30 days by default
MIN_EXPIRY_SECONDS, MAX_EXPIRY_SECONDS = 3600, 30 * 24 * 3600


def upload(call: Call) -> Reply:
    spooled: list[Path] = []

    def spool() -> Path:
        spooled.append(call.files.spool_path())
        return spooled[-1]

    try:
        boundary = boundary_of(call.headers.get("content-type", ""))
        form = parse_form(call.body, boundary, spool, MAX_UPLOAD_BYTES)
        stored = _store(call, form)
        if call.dice.hits(call.config.lost_upload_rate):
            raise server_fault(500, call.config)  # the file is kept; only the answer is lost
        return Reply(json=stored.model_dump())
    finally:
        for path in spooled:  # whatever was not adopted as a file
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)


def _store(call: Call, form: Form) -> FileRecord:
    purpose = form.fields.get("purpose")
    if purpose is None:
        raise missing("purpose")
    if purpose not in PURPOSES:
        raise invalid_value("purpose", f"Invalid value for 'purpose': '{purpose[:40]}'.")
    sent = form.files.get("file")
    if sent is None:
        raise missing("file")
    if purpose == "batch" and not sent.filename.lower().endswith(".jsonl"):
        raise bad_request("Invalid file format for Batch API. Must be .jsonl", param="file")
    lifetime = _lifetime(form, purpose)
    if lifetime is not None:
        lifetime = scaled(lifetime, call.config.file_lifetime_scale)
    return call.files.add(sent.path, os.path.basename(sent.filename), purpose, expires_after=lifetime)


def _lifetime(form: Form, purpose: str) -> int | None:
    """`expires_after[anchor]=created_at` and `expires_after[seconds]=3600..2592000`, as the
    official SDK sends them; without them a batch file lives 30 days, any other for ever."""
    anchor, seconds = form.fields.get("expires_after[anchor]"), form.fields.get("expires_after[seconds]")
    if anchor is None and seconds is None:
        return BATCH_FILE_LIFETIME_SECONDS if purpose == "batch" else None
    if anchor != "created_at":
        message = "Invalid 'expires_after[anchor]': expected 'created_at'."
        raise invalid_value("expires_after.anchor", message)
    if seconds is None or not seconds.isascii() or not seconds.isdigit():
        raise invalid_value("expires_after.seconds", "Invalid 'expires_after[seconds]': expected an integer.")
    if not MIN_EXPIRY_SECONDS <= int(seconds) <= MAX_EXPIRY_SECONDS:
        span = f"{MIN_EXPIRY_SECONDS} to {MAX_EXPIRY_SECONDS}"
        message = f"Invalid 'expires_after[seconds]': expected {span} seconds."
        raise invalid_value("expires_after.seconds", message)
    return int(seconds)


def list_files(call: Call) -> Reply:
    order = call.query.get("order", "desc")
    if order not in ("asc", "desc"):
        raise invalid_value("order", f"Invalid value for 'order': '{order[:40]}'.")
    records, has_more = call.files.page(
        after=call.query.get("after"),
        limit=call.int_query("limit", 10_000, 1, 10_000),
        newest_first=order == "desc",
        purpose=call.query.get("purpose"),
    )
    return Reply(json=listing([record.model_dump() for record in records], has_more))


def retrieve(call: Call) -> Reply:
    return Reply(json=_existing(call).model_dump())


def content(call: Call) -> Reply:
    stream = call.files.open(call.params["id"])
    if stream is None:
        raise _no_such_file(call.params["id"])
    return Reply(stream=stream)


def delete(call: Call) -> Reply:
    file_id = call.params["id"]
    if not call.files.delete(file_id):
        raise _no_such_file(file_id)
    return Reply(json={"id": file_id, "object": "file", "deleted": True})


def _existing(call: Call) -> FileRecord:
    record = call.files.get(call.params["id"])
    if record is None:
        raise _no_such_file(call.params["id"])
    return record


def _no_such_file(file_id: str) -> ApiProblem:
    return not_found(f"No such File object: {file_id[:80]}", param="id")
