"""Seeded dice for injected faults: the same seed and request order give the same faults."""

from __future__ import annotations

import math
import random
import threading

from reconciler.sandbox.config import SandboxConfig
from reconciler.sandbox.problems import ApiProblem

_FAULTS = {
    429: ("Rate limit reached for requests. Please try again later.", "requests", "rate_limit_exceeded"),
    500: ("The server had an error while processing your request. Sorry about that!", "server_error", None),
    503: ("The engine is currently overloaded, please try again later.", "server_error", None),
}


class Dice:
    def __init__(self, seed: int | None) -> None:
        self._lock = threading.Lock()
        self._random = random.Random(seed)

    def reseed(self, seed: int | None) -> None:
        with self._lock:
            self._random = random.Random(seed)

    def hits(self, rate: float) -> bool:
        if rate <= 0:
            return False  # no roll: a zero rate must not shift the sequence other knobs see
        with self._lock:
            return self._random.random() < rate

    def pick(self, options: list[int]) -> int:
        with self._lock:
            return self._random.choice(options)


def injected_fault(dice: Dice, config: SandboxConfig) -> ApiProblem | None:
    """A 429, 500 or 503 for a `fault_rate` share of requests, before anything is done."""
    if not dice.hits(config.fault_rate):
        return None
    return server_fault(dice.pick(sorted(_FAULTS)), config)


def server_fault(status: int, config: SandboxConfig) -> ApiProblem:
    message, kind, code = _FAULTS[status]
    headers = {}
    if status in (429, 503):
        # HTTP allows only whole seconds in Retry-After; the precise wait goes in retry-after-ms.
        seconds = config.retry_after_seconds
        headers = {"Retry-After": str(math.ceil(seconds)), "retry-after-ms": str(round(seconds * 1000))}
    return ApiProblem(status, message, kind=kind, code=code, headers=headers)
