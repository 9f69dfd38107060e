"""Writing a finished batch's output and error files, streaming from its input line by line.

Successful answers go to the output file; requests the model refused (4xx) and, on expiry,
requests never run (`batch_expired`) go to the error file — the real API's split. File ids are
derived from the batch, so a second process finishing the same batch writes the same files.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from pathlib import Path
from typing import Any, BinaryIO

from reconciler.sandbox import responder
from reconciler.sandbox.disk import BatchRecord, Outcome, Usage, sortable_id
from reconciler.sandbox.file_store import FileStore, scaled
from reconciler.sandbox.lifecycle import Moment
from reconciler.sandbox.responder import Fragments

OUTPUT_LIFETIME_SECONDS = 30 * 24 * 3600
_COMPACT = json.JSONEncoder(separators=(",", ":"))  # built once: json.dumps(separators=) builds one per call
_EXPIRED = {
    "code": "batch_expired",
    "message": "This request could not be executed before the completion window expired.",
}


def write_results(record: BatchRecord, ended: Moment, source: Path, files: FileStore) -> Outcome:
    """Answers the first `ended.processed` requests; on expiry, lists the rest as unrun."""
    finished_at = ended.events[ended.status]
    output, errors = files.spool_path(), files.spool_path()
    try:
        with open(output, "wb") as out, open(errors, "wb") as err:
            usage = _answer_all(record, ended, source, out, err)
        return Outcome(
            output_file_id=_keep(files, output, record, "output", finished_at),
            error_file_id=_keep(files, errors, record, "error", finished_at),
            usage=usage,
        )
    finally:
        for leftover in (output, errors):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(leftover)


def _answer_all(record: BatchRecord, ended: Moment, source: Path, out: BinaryIO, err: BinaryIO) -> Usage:
    expired = ended.status == "expired"
    input_tokens = output_tokens = 0
    with open(source, "rb") as lines:
        requests = (json.loads(raw) for raw in lines if raw.strip())
        for index, request in enumerate(requests):
            if index >= ended.processed:
                if not expired:
                    break
                err.write(_line(record.id, request["custom_id"], None, _EXPIRED))
                continue
            answer = responder.answer(record.endpoint, request["body"])
            response = {"status_code": answer.status_code, "body": answer.body}
            target = out if answer.status_code == 200 else err
            target.write(_line(record.id, request["custom_id"], response, None, answer.fragments))
            input_tokens += answer.usage.input_tokens
            output_tokens += answer.usage.output_tokens
    return Usage(input_tokens=input_tokens, output_tokens=output_tokens)


def _line(
    batch_id: str,
    custom_id: str,
    response: dict[str, Any] | None,
    error: dict[str, str] | None,
    fragments: Fragments | None = None,
) -> bytes:
    digest = hashlib.sha256(f"{batch_id}\x00{custom_id}".encode()).hexdigest()
    if response is not None:
        response = {
            "status_code": response["status_code"],
            "request_id": f"req_{digest[32:]}",
            "body": response["body"],
        }
    line = {"id": f"batch_req_{digest[:32]}", "custom_id": custom_id, "response": response, "error": error}
    encoded = _COMPACT.encode(line)
    if fragments is not None:
        encoded = fragments.splice(encoded)
    return encoded.encode() + b"\n"


def _keep(files: FileStore, temp: Path, record: BatchRecord, kind: str, finished_at: float) -> str | None:
    if temp.stat().st_size == 0:
        return None
    tail = hashlib.sha256(f"{record.id}\x00{kind}".encode()).hexdigest()[:16]
    file_id = sortable_id("file-", int(finished_at * 1e9), tail)
    requested = record.output_expires_seconds or OUTPUT_LIFETIME_SECONDS
    lifetime = scaled(requested, record.timeline.file_lifetime_scale)
    filename = f"{record.id}_{kind}.jsonl"
    expires = int(finished_at) + lifetime
    return files.adopt(temp, file_id, filename, "batch_output", finished_at, expires).id
