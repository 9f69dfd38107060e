"""The Batch and Files API over an injected `httpx.Client`.

Retries 429/5xx/timeouts with backoff, except where a retry could act twice: a batch create
whose outcome is unknown raises OutcomeUnknownError and is resolved from the live list.
Nothing from httpx escapes; every message passes through `redact`.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
from pydantic import ValidationError

from reconciler.api.backoff import RETRYABLE_STATUSES, Backoff, parse_retry_after
from reconciler.api.batch import Batch
from reconciler.api.uploads import UploadSource
from reconciler.common.errors import ApiConnectionError, ApiError, ApiStatusError, OutcomeUnknownError

PAGE_SIZE = 100
FILE_PAGE_SIZE = 10_000  # the Files API allows up to 10,000 a page
MAX_PAGES = 10_000
UPLOAD_TIMEOUT = httpx.Timeout(600.0, connect=10.0)
DEFAULT_BACKOFF = Backoff()


class BatchClient:
    def __init__(
        self,
        http: httpx.Client,
        *,
        secrets: Sequence[str] = (),
        backoff: Backoff = DEFAULT_BACKOFF,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
    ) -> None:
        self._http = http
        self._secrets = [s for s in secrets if s]
        self._backoff = backoff
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._lock = threading.Lock()
        self.requests: Counter[str] = Counter()

    # -- batches ---------------------------------------------------------------------------
    def create_batch(
        self, *, input_file_id: str, endpoint: str, completion_window: str, metadata: Mapping[str, str]
    ) -> Batch:
        body = {
            "input_file_id": input_file_id,
            "endpoint": endpoint,
            "completion_window": completion_window,
            "metadata": dict(metadata),
        }
        try:
            return self._batch(self._call("POST", "/batches", json=body, idempotent=False))
        except (ApiConnectionError, ApiStatusError) as error:
            if isinstance(error, ApiStatusError) and error.status not in RETRYABLE_STATUSES - {429}:
                raise
            raise OutcomeUnknownError(f"create batch: outcome unknown ({error})") from None

    def retrieve_batch(self, batch_id: str) -> Batch:
        return self._batch(self._call("GET", f"/batches/{_segment(batch_id)}"))

    def cancel_batch(self, batch_id: str) -> Batch:
        # Cancelling twice is harmless, so this one may be retried like a read.
        return self._batch(self._call("POST", f"/batches/{_segment(batch_id)}/cancel"))

    def iter_batches(self, page_size: int = PAGE_SIZE, max_pages: int = MAX_PAGES) -> Iterator[Batch]:
        """Every batch, newest first, one page at a time; bounded against lists that never end."""
        for item in self._pages("/batches", {"limit": page_size}, max_pages):
            yield self._batch(item)

    # -- files -----------------------------------------------------------------------------
    def upload_file(self, source: UploadSource) -> str:
        """Streams the file (or the part of it) from disk; returns the file id."""

        def send() -> httpx.Response:
            with source.open() as stream:
                return self._http.post(
                    "/files",
                    data={"purpose": "batch"},
                    files={"file": (source.filename, stream, "application/jsonl")},
                    timeout=UPLOAD_TIMEOUT,
                )

        body = self._with_retries("POST /files", send)
        file_id = body.get("id")
        if not isinstance(file_id, str):
            raise ApiConnectionError("POST /files: response has no file id")
        return file_id

    def download_file(self, file_id: str, destination: Path) -> int:
        """Streams a file's content to `destination`; returns the byte count."""
        for attempt in range(1, self._backoff.attempts + 1):
            self._count("GET /files/{id}/content")
            try:
                with self._http.stream("GET", f"/files/{_segment(file_id)}/content") as response:
                    if response.status_code >= 400:
                        response.read()
                        raise self._status_error(f"GET /files/{file_id}/content", response)
                    written = 0
                    with destination.open("wb") as out:
                        for chunk in response.iter_bytes(1 << 20):
                            written += out.write(chunk)
                    return written
            except (ApiStatusError, httpx.TransportError) as error:
                if not self._should_retry(error, attempt):
                    raise self._wrap(f"GET /files/{file_id}/content", error) from None
        raise AssertionError("unreachable")

    def delete_file(self, file_id: str) -> None:
        self._call("DELETE", f"/files/{_segment(file_id)}")

    def iter_files(self, purpose: str = "batch", max_pages: int = MAX_PAGES) -> Iterator[dict[str, Any]]:
        """Every file of `purpose` with an id, as the server describes it."""
        for item in self._pages("/files", {"purpose": purpose, "limit": FILE_PAGE_SIZE}, max_pages):
            if isinstance(item, dict) and isinstance(item.get("id"), str):
                yield item

    def _pages(self, path: str, params: dict[str, str | int], max_pages: int) -> Iterator[Any]:
        """The items of a cursor-paged list.  A next page that does not move on (the server
        ignores `after`, or its cursors go round in circles) is an error, never a quiet end:
        a list cut short could hide a batch of ours, which would then be created twice."""
        after: str | None = None
        cursors: set[str] = set()
        for _ in range(max_pages):
            page = self._call("GET", path, params=params | ({"after": after} if after else {}))
            data = page.get("data")
            if not isinstance(data, list):
                raise ApiConnectionError(f"GET {path}: response has no `data` list")
            yield from data
            if not page.get("has_more") or not data:
                return
            last = data[-1].get("id") if isinstance(data[-1], dict) else None
            if not isinstance(last, str) or last in cursors:
                raise ApiConnectionError(
                    f"GET {path}: has_more is true but the next page repeats an earlier one "
                    "(does the server ignore `after`?)"
                )
            cursors.add(last)
            after = last
        raise ApiConnectionError(f"GET {path}: the list did not end after {max_pages} pages")

    # -- plumbing --------------------------------------------------------------------------
    def _call(self, method: str, path: str, *, idempotent: bool = True, **kwargs: Any) -> dict[str, Any]:
        label = f"{method} {path}"
        return self._with_retries(
            label, lambda: self._http.request(method, path, **kwargs), idempotent=idempotent
        )

    def _with_retries(
        self, label: str, send: Callable[[], httpx.Response], *, idempotent: bool = True
    ) -> dict[str, Any]:
        for attempt in range(1, self._backoff.attempts + 1):
            self._count(_route(label))
            try:
                response = send()
                if response.status_code >= 400:
                    raise self._status_error(label, response)
                return self._json(label, response)
            except (ApiStatusError, httpx.TransportError) as error:
                retry = idempotent or _never_reached_server(error)
                if not retry or not self._should_retry(error, attempt):
                    raise self._wrap(label, error) from None
        raise AssertionError("unreachable")

    def _should_retry(self, error: Exception, attempt: int) -> bool:
        if attempt >= self._backoff.attempts:
            return False
        retry_after = None
        if isinstance(error, ApiStatusError):
            if error.status not in RETRYABLE_STATUSES:
                return False
            retry_after = error.retry_after
        self._sleep(self._backoff.delay(attempt, retry_after, self._rng))
        return True

    def _status_error(self, label: str, response: httpx.Response) -> ApiStatusError:
        code, message = _error_fields(response)
        return ApiStatusError(
            self.redact(f"{label}: HTTP {response.status_code}: {message}"),
            status=response.status_code,
            code=code,
            retry_after=parse_retry_after(response.headers.get("retry-after")),
        )

    def _wrap(self, label: str, error: Exception) -> ApiError:
        if isinstance(error, ApiError):
            return error
        return ApiConnectionError(self.redact(f"{label}: {type(error).__name__}: {error}"))

    def _json(self, label: str, response: httpx.Response) -> dict[str, Any]:
        try:
            body = response.json()
        except ValueError:
            raise ApiConnectionError(f"{label}: response is not JSON") from None
        if not isinstance(body, dict):
            raise ApiConnectionError(f"{label}: response is not a JSON object")
        return body

    def _batch(self, body: Any) -> Batch:
        try:
            return Batch.model_validate(body)
        except ValidationError as error:
            field = ".".join(str(p) for p in error.errors()[0]["loc"])
            raise ApiConnectionError(f"malformed batch object from the server ({field})") from None

    def _count(self, route: str) -> None:
        with self._lock:
            self.requests[route] += 1

    def redact(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text


def _segment(server_id: str) -> str:
    """An id from the server, quoted into one path segment: `../` in it cannot steer a request."""
    return quote(server_id, safe="")


def _never_reached_server(error: Exception) -> bool:
    return isinstance(error, httpx.ConnectError) or (
        isinstance(error, ApiStatusError) and error.status == 429
    )


def _error_fields(response: httpx.Response) -> tuple[str | None, str]:
    try:
        error = response.json().get("error")
    except (ValueError, AttributeError):
        error = None
    if isinstance(error, dict):
        code = error.get("code")
        return (str(code) if code else None), str(error.get("message") or "no message")
    return None, f"{response.headers.get('content-type', 'no content type')} body"


def _route(label: str) -> str:
    """`GET /batches/batch_1` → `GET /batches/{id}`, so counts group by endpoint."""
    method, path = label.split(" ", 1)
    parts = [p if p in {"batches", "files", "cancel", "content"} else "{id}" for p in path.split("/")[1:]]
    return f"{method} /" + "/".join(parts)
