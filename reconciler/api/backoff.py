"""Backoff delays as data: which failures are worth another try, and how long to wait."""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass

# 520-524 are what a proxy in front of the provider (Cloudflare and the like) answers when the
# origin was slow or unreachable: as passing as a 502.
RETRYABLE_STATUSES = frozenset({408, 429, 500, 502, 503, 504, 520, 521, 522, 523, 524})


@dataclass(frozen=True)
class Backoff:
    """Capped exponential backoff, jittered between half and all of the step; `Retry-After` wins."""

    attempts: int = 5
    initial: float = 0.25
    factor: float = 2.0
    cap: float = 8.0
    max_retry_after: float = 60.0

    def delay(self, attempt: int, retry_after: float | None, rng: random.Random) -> float:
        """Seconds to wait before try number `attempt + 1` (attempt counts from 1)."""
        if retry_after is not None:
            return min(max(retry_after, 0.0), self.max_retry_after)
        ceiling = min(self.cap, self.initial * self.factor ** (attempt - 1))
        return rng.uniform(ceiling / 2, ceiling)


def retry_after_of(headers: Mapping[str, str]) -> float | None:
    """Seconds to wait, from `retry-after-ms` (OpenAI's precise one) or else `Retry-After`."""
    precise = _non_negative(headers.get("retry-after-ms"))
    return precise / 1000 if precise is not None else parse_retry_after(headers.get("retry-after"))


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a `Retry-After` header; fractional seconds accepted, HTTP dates ignored."""
    return _non_negative(value)


def _non_negative(value: str | None) -> float | None:
    if not value:
        return None
    try:
        number = float(value)
    except ValueError:
        return None
    return number if number >= 0 and number != float("inf") else None
