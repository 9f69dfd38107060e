"""The writing half of the Batch and Files API: upload, create, cancel, delete.

Held only by the engine's apply step.  A create is never retried blindly: one whose outcome
is unknown raises OutcomeUnknownError and is resolved from the live list by the next pass.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import httpx

from reconciler.api.batch import Batch
from reconciler.api.transport import RETRYABLE_STATUSES, Transport, may_have_acted, parse_batch, segment
from reconciler.api.uploads import UploadSource
from reconciler.common.errors import (
    ApiConnectionError,
    ApiStatusError,
    InputChangedError,
    OutcomeUnknownError,
)

UPLOAD_TIMEOUT = httpx.Timeout(600.0, connect=10.0)
UPLOAD_DEADLINE = 3600.0  # a 200 MB input over a slow link, retries included


class BatchWriter:
    def __init__(self, transport: Transport) -> None:
        self.transport = transport

    def create_batch(
        self,
        *,
        input_file_id: str,
        endpoint: str,
        completion_window: str,
        metadata: Mapping[str, str],
        output_expires_after: int | None = None,
    ) -> Batch:
        """`output_expires_after`: seconds the output and error files are kept; None sends nothing."""
        body: dict[str, object] = {
            "input_file_id": input_file_id,
            "endpoint": endpoint,
            "completion_window": completion_window,
            "metadata": dict(metadata),
        }
        if output_expires_after is not None:
            body["output_expires_after"] = {"anchor": "created_at", "seconds": output_expires_after}
        try:
            return parse_batch(self.transport.call("POST", "/batches", json=body, idempotent=False))
        except (ApiConnectionError, ApiStatusError) as error:
            if isinstance(error, ApiStatusError) and error.status not in RETRYABLE_STATUSES - {429}:
                raise
            in_flight = isinstance(error, ApiConnectionError)
            status = error.status if isinstance(error, ApiStatusError) else None
            raise OutcomeUnknownError(
                f"create batch: outcome unknown ({error})", in_flight=in_flight, status=status
            ) from None

    def cancel_batch(self, batch_id: str) -> Batch:
        # Cancelling twice is harmless, so this one may be retried like a read.
        return parse_batch(self.transport.call("POST", f"/batches/{segment(batch_id)}/cancel"))

    def upload_file(self, source: UploadSource, *, leftover: Callable[[], None] | None = None) -> str:
        """Streams the file (or the part of it) from disk; returns the file id.  An upload is
        retried like a read, and a try that failed after the server may have stored the file
        (a 5xx, a lost answer) can leave one behind: `leftover` is told so, before the next try,
        for the pass to sweep it (engine/apply/leftovers.py)."""
        http = self.transport.http

        def send(timeout: httpx.Timeout) -> httpx.Response:
            # The body is sent before `send` returns (the answer's headers follow it), so the
            # file may close here while the answer is still read.
            with source.open() as stream:
                files = {"file": (source.filename, stream, "application/jsonl")}
                request = http.build_request("POST", "/files", data=data, files=files, timeout=timeout)
                return http.send(request, stream=True)

        data = {"purpose": "batch"}
        if source.expires_after is not None:  # form fields as the official SDK sends them
            data |= {
                "expires_after[anchor]": "created_at",
                "expires_after[seconds]": str(source.expires_after),
            }
        before = source.stamp()

        def retrying(error: Exception) -> None:
            if leftover is not None and may_have_acted(error):
                leftover()

        body = self.transport.with_retries(
            "POST /files", send, deadline=UPLOAD_DEADLINE, timeout=UPLOAD_TIMEOUT, retrying=retrying
        )
        if source.stamp() != before:
            raise InputChangedError(
                f"{source.path} changed while it was being uploaded; that upload is not used, "
                "and the create waits for the next run"
            )
        file_id = body.get("id")
        if not isinstance(file_id, str):
            raise ApiConnectionError("POST /files: response has no file id")
        return file_id

    def delete_file(self, file_id: str) -> None:
        self.transport.call("DELETE", f"/files/{segment(file_id)}")
