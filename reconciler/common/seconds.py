"""Numbers of seconds from flags and the environment: finite, and within bounds.

`float()` accepts `inf` and `nan`. An infinite wait overflows the timers it reaches (a
`threading` wait refuses anything past TIMEOUT_MAX, about 292 years, and so does
`time.sleep` on huge values), and `nan` compares false with every bound, so it slips
through a range check and then waits never or forever. Both are refused where the
number is read, as is anything beyond a year: no wait of this tool is meant to be longer.
"""

from __future__ import annotations

import math

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
