"""Backoff delays as data: which failures are worth another try, and how long to wait.

A server's own word wins, as in the official SDK (openai-python `_base_client.py`:
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
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC

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
