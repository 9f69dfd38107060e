"""Reading one streamed response: bounded in bytes and in time, and what an error body says.

A server decides how much it sends and how fast; the client decides how much it will take.
A body past its cap, or a body still arriving at the deadline, is refused with a clear error
instead of filling memory or holding a command for ever.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from typing import Any, BinaryIO
from urllib.parse import urlsplit

import httpx

from reconciler.common.errors import ApiConnectionError

MIB = 1 << 20
MAX_JSON_BYTES = 32 * MIB  # a list page of 100 batches is ~100 KB, a batch with 50,000 errors ~10 MB
MAX_ERROR_BYTES = 64 * 1024  # of an error body only the message is read
MAX_MESSAGE_CHARS = 500


class Limits:
    """How much one request may take: bytes of body, and a monotonic deadline (`by_command`:
    the deadline is the command's own, e.g. `reconcile --timeout`, not the request's)."""

    def __init__(
        self,
        max_bytes: int,
        ends_at: float,
        clock: Callable[[], float] = time.monotonic,
        *,
        by_command: bool = False,
    ) -> None:
        self.max_bytes = max_bytes
        self.ends_at = ends_at
        self.clock = clock
        self.by_command = by_command

    def remaining(self) -> float:
        return self.ends_at - self.clock()


class DeadlineError(ApiConnectionError):
    """No complete answer before the request's (or the command's) deadline."""


class CommandTimeoutError(DeadlineError):
    """The command's own time limit ran out during a request: the server was not at fault."""


def deadline_error(label: str, limits: Limits, what: str) -> DeadlineError:
    """Whose deadline it was, said: a command's --timeout is the user's to raise."""
    if limits.by_command:
        return CommandTimeoutError(f"{label}: the command's --timeout ran out {what}")
    return DeadlineError(f"{label}: the request's deadline passed {what}")


class TooLargeError(ApiConnectionError):
    pass


def read_body(label: str, response: httpx.Response, limits: Limits, *, truncate: bool = False) -> bytes:
    """The whole body, or an error: past `max_bytes` (unless `truncate`), or past the deadline."""
    chunks = bytearray()
    for chunk in _chunks(label, response, limits, truncate=truncate):
        chunks += chunk
        if truncate and len(chunks) >= limits.max_bytes:
            return bytes(chunks[: limits.max_bytes])
    return bytes(chunks)


def copy_body(label: str, response: httpx.Response, limits: Limits, out: BinaryIO) -> int:
    written = 0
    for chunk in _chunks(label, response, limits, truncate=False):
        written += out.write(chunk)
    return written


def _chunks(label: str, response: httpx.Response, limits: Limits, *, truncate: bool) -> Any:
    declared = response.headers.get("content-length", "")
    if not truncate and declared.isdigit() and int(declared) > limits.max_bytes:
        raise _too_large(label, limits.max_bytes, f"it announces {_size(int(declared))}")
    received = 0
    # Chunks as they arrive: a fixed chunk size would wait for a drip to fill it.
    for chunk in response.iter_bytes():
        received += len(chunk)
        if not truncate and received > limits.max_bytes:
            raise _too_large(label, limits.max_bytes, "more kept coming")
        if limits.remaining() <= 0:
            arriving = f"while the answer was still arriving ({_size(received)} so far)"
            raise deadline_error(label, limits, arriving)
        yield chunk


def _too_large(label: str, cap: int, why: str) -> TooLargeError:
    return TooLargeError(f"{label}: response refused: larger than the {_size(cap)} limit ({why})")


def _size(count: int) -> str:
    return f"{count / MIB:.1f} MiB" if count >= MIB else f"{count} bytes"


def parse_json(label: str, body: bytes) -> dict[str, Any]:
    try:
        value = json.loads(body)
    except ValueError:
        raise ApiConnectionError(f"{label}: response is not JSON") from None
    if not isinstance(value, dict):
        raise ApiConnectionError(f"{label}: response is not a JSON object")
    return value


def error_fields(body: bytes, content_type: str) -> tuple[str | None, str]:
    """(code, message) from an error body in the shapes providers use: OpenAI's
    `{"error": {...}}`, a bare `{"error": "…"}`, Portkey's `{"status": "failure", "message": …}`
    and `{"html-message": …}`; else what kind of body it was."""
    try:
        value = json.loads(body)
    except ValueError:
        value = None
    if isinstance(value, dict):
        error = value.get("error")
        if isinstance(error, dict) and (error.get("message") or error.get("code")):
            code = error.get("code")
            return (str(code) if code else None), _short(str(error.get("message") or "no message"))
        for text in (error, value.get("message"), value.get("html-message")):
            if isinstance(text, str) and text.strip():
                return None, _short(_untagged(text))
    return None, f"{content_type or 'no content type'} body"


def _untagged(text: str) -> str:
    return " ".join(re.sub(r"<[^>]*>", " ", text).split())


def _short(text: str) -> str:
    return text if len(text) <= MAX_MESSAGE_CHARS else text[:MAX_MESSAGE_CHARS] + "…"


def redirect_message(response: httpx.Response) -> str:
    """Names where the redirect pointed (its origin only: a path or query could carry a token)."""
    location = response.headers.get("location", "")
    parts = urlsplit(location)
    origin = f"{parts.scheme}://{parts.netloc}" if parts.netloc else "the same server"
    return f"redirected to {origin} (not followed: credentials go only to the configured base_url)"
