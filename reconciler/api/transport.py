"""Requests to one provider over an injected `httpx.Client`: retries, deadlines, size caps.

Retries 429/5xx/timeouts with backoff, except where a retry could act twice
(`idempotent=False`: only a request that never reached the server is sent again).  Every
request ends by its deadline, retries included, and no body is taken past its cap
(responses.py).  A redirect is an error, never followed.  Nothing from httpx escapes; every
server text passes through the scrubber (scrub.py) before anyone stores or shows it.  The
reading and writing halves (reader.py, writer.py) share one transport per provider.

Backoff delays are data (`Backoff`): which failures are worth another try, and how long to
wait.  A server's own word wins, as in the official SDK (openai-python `_base_client.py`:
`_should_retry`, `_calculate_retry_timeout`, `MAX_RETRY_AFTER_DELAY`): `x-should-retry: true`
or `false` decides whether to try again; a wait it names (`retry-after-ms`, else `Retry-After`
in seconds or as an HTTP date) is kept when it is within two minutes, and a longer one is not
waited out inside the request at all: the error goes up, carrying the wait, for whoever can
schedule the next try (the daemon does).  Anything else gets capped, jittered exponential
backoff.
"""

from __future__ import annotations

import email.utils
import math
import random
import socket
import ssl
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC
from typing import Any, BinaryIO
from urllib.parse import quote

import httpx
from pydantic import ValidationError

from reconciler.api.batch import Batch
from reconciler.api.responses import (
    MAX_ERROR_BYTES,
    MAX_JSON_BYTES,
    Limits,
    copy_body,
    deadline_error,
    error_fields,
    parse_json,
    read_body,
    redirect_message,
)
from reconciler.api.scrub import Scrubber
from reconciler.common.errors import ApiConnectionError, ApiError, ApiStatusError

# 520-524 are what a proxy in front of the provider (Cloudflare and the like) answers when the
# origin was slow or unreachable: as passing as a 502.
RETRYABLE_STATUSES = frozenset({408, 429, 500, 502, 503, 504, 520, 521, 522, 523, 524})
# The official SDK's MAX_RETRY_AFTER_DELAY (2 minutes since openai-python 7fa79464, July 2026;
# 60 s before): a longer wait is not retried in the request.
MAX_RETRY_AFTER = 120.0


@dataclass(frozen=True)
class Backoff:
    """Capped exponential backoff, jittered between half and all of the step; a server's wait
    wins when it is more than 0 and at most `max_retry_after`."""

    attempts: int = 5
    initial: float = 0.25
    factor: float = 2.0
    cap: float = 8.0
    max_retry_after: float = MAX_RETRY_AFTER

    def delay(self, attempt: int, retry_after: float | None, rng: random.Random) -> float:
        """Seconds to wait before try number `attempt + 1` (attempt counts from 1)."""
        if retry_after is not None and 0 < retry_after <= self.max_retry_after:
            return retry_after
        ceiling = min(self.cap, self.initial * self.factor ** (attempt - 1))
        return rng.uniform(ceiling / 2, ceiling)

    def too_long(self, retry_after: float | None) -> bool:
        """The server asks for a wait longer than a request may sleep: not retried now."""
        return retry_after is not None and retry_after > self.max_retry_after


def retry_after_of(headers: Mapping[str, str], now: float | None = None) -> float | None:
    """Seconds to wait, from `retry-after-ms` (OpenAI's precise one) or else `Retry-After`."""
    precise = _non_negative(headers.get("retry-after-ms"))
    return precise / 1000 if precise is not None else parse_retry_after(headers.get("retry-after"), now)


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds from a `Retry-After` header: a number (fractions accepted) or an HTTP date."""
    seconds = _non_negative(value)
    if seconds is not None or not value:
        return seconds
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:  # "-0000": UTC, with no claim about the sender's zone
        when = when.replace(tzinfo=UTC)
    left = when.timestamp() - (time.time() if now is None else now)
    return max(left, 0.0)  # a date passed already: no wait of the server's (the backoff's own)


def should_retry_of(headers: Mapping[str, str]) -> bool | None:
    """`x-should-retry: true|false`, the server's own verdict; None when it gives none."""
    return {"true": True, "false": False}.get(headers.get("x-should-retry", "").strip().lower())


def _non_negative(value: str | None) -> float | None:
    if not value:
        return None
    try:
        number = float(value)
    except ValueError:
        return None
    return number if number >= 0 and math.isfinite(number) else None


MAX_PAGES = 10_000
DEFAULT_BACKOFF = Backoff()
# Every request has an overall deadline, its retries included: a server dripping a byte at a
# time cannot hold a command for ever.  Downloads and uploads move whole files, so get longer.
REQUEST_DEADLINE = 120.0
DOWNLOAD_DEADLINE = 3600.0
MAX_DOWNLOAD_BYTES = 8 << 30  # a batch of 50,000 requests, each answer a few tens of KB at most


class Transport:
    def __init__(
        self,
        http: httpx.Client,
        *,
        secrets: Sequence[str] = (),
        backoff: Backoff = DEFAULT_BACKOFF,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
        provider: str | None = None,
        deadline: float = REQUEST_DEADLINE,
        max_json_bytes: int = MAX_JSON_BYTES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.http = http
        self.scrubber = Scrubber(secrets)
        self._backoff = backoff
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._lock = threading.Lock()
        self._prefix = f"provider {provider}: " if provider else ""
        self._deadline = deadline
        self._max_json = max_json_bytes
        self._clock = clock
        self.command_ends_at: float | None = None  # monotonic; set by a command's --timeout
        self.requests: Counter[str] = Counter()

    def call(self, method: str, path: str, *, idempotent: bool = True, **kwargs: Any) -> dict[str, Any]:
        def send(timeout: httpx.Timeout) -> httpx.Response:
            request = self.http.build_request(method, path, timeout=timeout, **kwargs)
            return self.http.send(request, stream=True)

        return self.with_retries(f"{method} {path}", send, idempotent=idempotent)

    def with_retries(
        self,
        label: str,
        send: Callable[[httpx.Timeout], httpx.Response],
        *,
        idempotent: bool = True,
        deadline: float | None = None,
        timeout: httpx.Timeout | None = None,
        out: BinaryIO | None = None,
        retrying: Callable[[Exception], None] | None = None,
    ) -> dict[str, Any]:
        """`send` opens a streamed response with the timeout it is given; its body is read here,
        bounded in size and in time.  With `out`, the body is copied there instead of parsed.
        `retrying` hears of each failed try that is sent again."""
        route, shown = _route(label), self.describe(label)
        limits = self._limits(MAX_DOWNLOAD_BYTES if out else self._max_json, deadline)
        for attempt in range(1, self._backoff.attempts + 1):
            self._count(route)
            try:
                return self._attempt(shown, send(self.timeout(limits, timeout)), limits, out)
            except (ApiStatusError, httpx.TransportError) as error:
                if limits.remaining() <= 0:
                    raise deadline_error(shown, limits, _unanswered(error)) from None
                retry = idempotent or not may_have_acted(error)
                if not retry or not self._should_retry(error, attempt, limits):
                    raise self._wrap(shown, error) from None
                if retrying is not None:
                    retrying(error)
        raise AssertionError("unreachable")

    def _attempt(
        self, shown: str, response: httpx.Response, limits: Limits, out: BinaryIO | None
    ) -> dict[str, Any]:
        try:
            if response.status_code >= 300:
                raise self._status_error(shown, response, limits)
            if out is None:
                raw = read_body(shown, response, limits)
                body: dict[str, Any] = self.scrubber.clean_body(raw, parse_json(shown, raw))
                return body
            out.seek(0)
            out.truncate()
            return {"bytes": copy_body(shown, response, limits, out)}
        finally:
            response.close()

    def download(self, path: str, out: BinaryIO) -> int:
        """Streams a response body into `out`, bounded by what a batch's file can hold; returns
        the byte count."""

        def send(timeout: httpx.Timeout) -> httpx.Response:
            return self.http.send(self.http.build_request("GET", path, timeout=timeout), stream=True)

        answer = self.with_retries(f"GET {path}", send, deadline=DOWNLOAD_DEADLINE, out=out)
        return int(answer["bytes"])

    def timeout(self, limits: Limits, base: httpx.Timeout | None = None) -> httpx.Timeout:
        """The client's timeouts, none longer than what is left of the deadline."""
        base = base or self.http.timeout
        left = max(limits.remaining(), 0.001)
        clamp = {k: min(v, left) if v is not None else left for k, v in base.as_dict().items()}
        return httpx.Timeout(**clamp)

    def _limits(self, max_bytes: int, deadline: float | None) -> Limits:
        """The request's bounds: its own deadline, or the command's when that comes first."""
        ends = self._clock() + (self._deadline if deadline is None else deadline)
        if self.command_ends_at is not None and self.command_ends_at <= ends:
            return Limits(max_bytes, self.command_ends_at, self._clock, by_command=True)
        return Limits(max_bytes, ends, self._clock)

    def _should_retry(self, error: Exception, attempt: int, limits: Limits) -> bool:
        if attempt >= self._backoff.attempts:
            return False
        retry_after = None
        if isinstance(error, ApiStatusError):
            if not self._worth_another_try(error):
                return False
            retry_after = error.retry_after
        delay = self._backoff.delay(attempt, retry_after, self._rng)
        if delay >= limits.remaining():
            return False  # the wait alone would pass the deadline
        self._sleep(delay)
        return True

    def _worth_another_try(self, error: ApiStatusError) -> bool:
        """In the official SDK's order: a wait too long for a request, then the server's own
        x-should-retry, then the status."""
        if self._backoff.too_long(error.retry_after):
            return False
        if error.should_retry is not None:
            return error.should_retry
        return error.status in RETRYABLE_STATUSES

    def _status_error(self, shown: str, response: httpx.Response, limits: Limits) -> ApiStatusError:
        if response.status_code < 400:
            code, message = None, redirect_message(response)
        else:
            body = read_body(
                shown,
                response,
                Limits(MAX_ERROR_BYTES, limits.ends_at, self._clock, by_command=limits.by_command),
                truncate=True,
            )
            code, message = error_fields(body, response.headers.get("content-type", ""))
        retry_after = retry_after_of(response.headers)
        if self._backoff.too_long(retry_after):
            message += f" (the server asks to wait {_duration(retry_after)} before trying again)"
        return ApiStatusError(
            self.scrubber.text(f"{shown}: HTTP {response.status_code}: {message}"),
            status=response.status_code,
            code=code,
            retry_after=retry_after,
            should_retry=should_retry_of(response.headers),
        )

    def _wrap(self, shown: str, error: Exception) -> ApiError:
        if isinstance(error, ApiError):
            return error  # built here, from our label and the already scrubbed server text
        if isinstance(error, httpx.ConnectError):
            where = f"cannot connect to {self.http.base_url}"
            return ApiConnectionError(self.scrubber.text(f"{shown}: {where} ({connect_reason(error)})"))
        return ApiConnectionError(self.scrubber.text(f"{shown}: {failure_words(error)}"))

    def describe(self, label: str) -> str:
        """`GET /batches` → `provider portkey: GET /v1/batches`: the request as the server saw it."""
        method, path = label.split(" ", 1)
        return f"{self._prefix}{method} {self.http.base_url.path.rstrip('/')}{path}"

    def _count(self, route: str) -> None:
        with self._lock:
            self.requests[route] += 1


def parse_batch(body: Any) -> Batch:
    try:
        return Batch.model_validate(body)
    except ValidationError as error:
        field = ".".join(str(p) for p in error.errors()[0]["loc"])
        batch_id = body.get("id") if isinstance(body, dict) else None
        which = f" {batch_id}" if isinstance(batch_id, str) else ""
        raise ApiConnectionError(f"malformed batch object from the server ({field}){which}") from None


def segment(server_id: str) -> str:
    """An id from the server, quoted into one path segment: `../` in it cannot steer a request."""
    return quote(server_id, safe="")


def may_have_acted(error: Exception) -> bool:
    """Whether the server may have done what a failed try asked: not when it never got the
    request (a refused connection) or turned it away unread (429)."""
    never_reached = isinstance(error, httpx.ConnectError) or (
        isinstance(error, ApiStatusError) and error.status == 429
    )
    return not never_reached


def _duration(seconds: float | None) -> str:
    """`90s`, `45m`, `3h`: a server's wait, as a person reads it."""
    left = seconds or 0.0
    if left < 600:
        return f"{left:.0f}s"
    return f"{left / 60:.0f}m" if left < 3 * 3600 else f"{left / 3600:.0f}h"


# What a try that got no answer ran into, in words: an HTTP library's class name (`ReadTimeout`)
# or its text means nothing to the user.  The most specific kinds first.
_TRANSPORT_WORDS: tuple[tuple[type[Exception], str], ...] = (
    (httpx.ConnectTimeout, "no connection within the connect timeout"),
    (httpx.ReadTimeout, "no answer within the read timeout"),
    (httpx.WriteTimeout, "the request was not sent within the write timeout"),
    (httpx.PoolTimeout, "no free connection within the pool timeout"),
    (httpx.ReadError, "the connection broke while the answer was read"),
    (httpx.WriteError, "the connection broke while the request was sent"),
    (httpx.RemoteProtocolError, "the server hung up or answered malformed HTTP"),
    (httpx.LocalProtocolError, "the request could not be sent as valid HTTP"),
    (httpx.ProxyError, "the proxy would not connect"),
    (httpx.UnsupportedProtocol, "the URL is not http:// or https://"),
)


def failure_words(error: Exception) -> str:
    """What went wrong with one try of a request, in words: `HTTP 503`, `cannot connect
    (connection refused)`, `no answer within the read timeout`."""
    if isinstance(error, ApiStatusError):
        return f"HTTP {error.status}"
    if isinstance(error, httpx.ConnectError):
        return f"cannot connect ({connect_reason(error)})"
    return next(
        (words for kind, words in _TRANSPORT_WORDS if isinstance(error, kind)), "the connection failed"
    )


def connect_reason(error: Exception) -> str:
    """Why a connection could not be made, from the operating system's error beneath the HTTP
    library's: `connection refused`, `the host name does not resolve`."""
    cause = error.__cause__ or error.__context__
    for _ in range(8):  # httpx's error wraps httpcore's, which wraps the OSError
        if cause is None:
            break
        if isinstance(cause, ssl.SSLCertVerificationError):
            return "the server's TLS certificate is not trusted"
        if isinstance(cause, ssl.SSLError):
            return "the TLS handshake failed"
        if isinstance(cause, socket.gaierror):
            return "the host name does not resolve"
        if isinstance(cause, OSError) and cause.strerror:
            return cause.strerror[:1].lower() + cause.strerror[1:]
        cause = cause.__cause__ or cause.__context__
    return "no connection"


def _unanswered(error: Exception) -> str:
    """How a deadline's message ends: a timeout needs no more words, since the deadline is why."""
    if isinstance(error, httpx.TimeoutException):
        return "before an answer came"
    return f"before an answer came (last try: {failure_words(error)})"


def _route(label: str) -> str:
    """`GET /batches/batch_1` → `GET /batches/{id}`, so counts group by endpoint."""
    method, path = label.split(" ", 1)
    parts = [p if p in {"batches", "files", "cancel", "content"} else "{id}" for p in path.split("/")[1:]]
    return f"{method} /" + "/".join(parts)
