"""Requests to one provider over an injected `httpx.Client`: retries, error bodies, paging.

Retries 429/5xx/timeouts with backoff, except where a retry could act twice (`idempotent=False`:
only a request that never reached the server is sent again).  Nothing from httpx escapes;
every message passes through `redact`.  The reading and writing halves (reader.py,
writer.py) share one transport per provider.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from typing import Any, BinaryIO
from urllib.parse import quote

import httpx
from pydantic import ValidationError

from reconciler.api.backoff import RETRYABLE_STATUSES, Backoff, parse_retry_after
from reconciler.api.batch import Batch
from reconciler.common.errors import ApiConnectionError, ApiError, ApiStatusError

MAX_PAGES = 10_000
DEFAULT_BACKOFF = Backoff()


class Transport:
    def __init__(
        self,
        http: httpx.Client,
        *,
        secrets: Sequence[str] = (),
        backoff: Backoff = DEFAULT_BACKOFF,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
    ) -> None:
        self.http = http
        self._secrets = [s for s in secrets if s]
        self._backoff = backoff
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._lock = threading.Lock()
        self.requests: Counter[str] = Counter()

    def call(self, method: str, path: str, *, idempotent: bool = True, **kwargs: Any) -> dict[str, Any]:
        return self.with_retries(
            f"{method} {path}", lambda: self.http.request(method, path, **kwargs), idempotent=idempotent
        )

    def with_retries(
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

    def download(self, path: str, out: BinaryIO) -> int:
        """Streams a response body into `out`; returns the byte count."""
        label = f"GET {path}"
        for attempt in range(1, self._backoff.attempts + 1):
            self._count(_route(label))
            try:
                with self.http.stream("GET", path) as response:
                    if response.status_code >= 400:
                        response.read()
                        raise self._status_error(label, response)
                    out.seek(0)
                    out.truncate()
                    written = 0
                    for chunk in response.iter_bytes(1 << 20):
                        written += out.write(chunk)
                    return written
            except (ApiStatusError, httpx.TransportError) as error:
                if not self._should_retry(error, attempt):
                    raise self._wrap(label, error) from None
        raise AssertionError("unreachable")

    def pages(self, path: str, params: dict[str, str | int], max_pages: int = MAX_PAGES) -> Iterator[Any]:
        """The items of a cursor-paged list.  A next page that does not move on (the server
        ignores `after`, or its cursors go round in circles) is an error, never a quiet end:
        a list cut short could hide a batch of ours, which would then be created twice."""
        after: str | None = None
        cursors: set[str] = set()
        for _ in range(max_pages):
            page = self.call("GET", path, params=params | ({"after": after} if after else {}))
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

    def redact(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text

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

    def _count(self, route: str) -> None:
        with self._lock:
            self.requests[route] += 1


def parse_batch(body: Any) -> Batch:
    try:
        return Batch.model_validate(body)
    except ValidationError as error:
        field = ".".join(str(p) for p in error.errors()[0]["loc"])
        raise ApiConnectionError(f"malformed batch object from the server ({field})") from None


def segment(server_id: str) -> str:
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
