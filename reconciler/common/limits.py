"""Bounds on numbers: the Batch API's limits and the share of them the reconciler keeps (one home
for each number), and the bounds on every number of seconds read from a flag or the environment.

Seconds must be finite and within bounds.  `float()` accepts `inf` and `nan`. An infinite wait
overflows the timers it reaches (a `threading` wait refuses anything past TIMEOUT_MAX, about
292 years, and so does `time.sleep` on huge values), and `nan` compares false with every bound,
so it slips through a range check and then waits never or forever. Both are refused where the
number is read (`parse_seconds`), as is anything beyond a year: no wait of this tool is meant
to be longer.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from reconciler.common.ownership import RESERVED_KEYS

MAX_INPUT_REQUESTS = 50_000
MAX_INPUT_BYTES = 200 * 1024 * 1024
# Embeddings count inputs, not requests: a request's `input` may be a list of texts.
MAX_EMBEDDING_INPUTS_PER_REQUEST = 2_048
MAX_EMBEDDING_INPUTS = 50_000  # across every request of one embeddings batch

# A file's `expires_after` on upload; purpose=batch files expire after the most by default.
MIN_FILE_EXPIRY_SECONDS = 3600
MAX_FILE_EXPIRY_SECONDS = 30 * 24 * 3600

MAX_METADATA_PAIRS = 16
MAX_USER_METADATA_PAIRS = MAX_METADATA_PAIRS - len(RESERVED_KEYS)
MAX_METADATA_KEY_CHARS = 64
MAX_METADATA_VALUE_CHARS = 512

# What an omitted `provider` means: the built-in sandbox. No Provider may take the name.
SANDBOX = "sandbox"

# At most this many requests at once, and never more threads than there are requests to send:
# 64 is the connection pool's size (engine/connect.LIMITS).  Against a provider 50 ms away, 16
# left apply no faster than a 16-thread SDK script; 100 jobs now go out in two rounds.
DEFAULT_PARALLELISM = 64


@dataclass(frozen=True)
class InputLimits:
    """What one batch's input may hold: checked by validate, and where split cuts parts."""

    max_requests: int = MAX_INPUT_REQUESTS
    max_bytes: int = MAX_INPUT_BYTES
    max_inputs: int = MAX_EMBEDDING_INPUTS  # embedding inputs; only embeddings jobs count them
    max_tokens: int | None = None  # estimated prompt tokens: a queue limit to fit (split-to-fit)


# A job with `split` is cut into parts that each fit the limits, so its whole input may exceed them.
API_LIMITS = InputLimits()
NO_LIMITS = InputLimits(max_requests=2**62, max_bytes=2**62, max_inputs=2**62)


LONGEST = 366 * 24 * 3600.0


def parse_seconds(raw: str | float, *, least: float = 0.0, above: bool = False) -> float:
    """`raw` as a number of seconds from `least` (excluded when `above`) up to a year;
    ValueError words what is wrong, to follow the value in a message."""
    try:
        value = float(raw)
    except (TypeError, ValueError):
        raise ValueError("is not a number of seconds") from None
    if not math.isfinite(value):
        raise ValueError("is not a finite number of seconds")
    if value < least or (above and value == least):
        raise ValueError(f"must be {'more than' if above else 'at least'} {least:g} seconds")
    if value > LONGEST:
        raise ValueError(f"must be at most {LONGEST:.0f} seconds (a year)")
    return value
