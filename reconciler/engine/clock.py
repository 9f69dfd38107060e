"""The reconciler's clock: what time it is for schedules, `--replace`'s run names and when a
failed start's restart is due (plans/status.py).

`RECONCILER_NOW` (ISO 8601 with a zone, e.g. `2026-12-01T01:59:58Z`) starts this clock at that
instant, from where it runs at the real pace: a test, or a rehearsal of a schedule, reaches a
cron slot (or a restart's time) without waiting for the wall clock.  Read here and nowhere else.
"""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime, timedelta

from reconciler.common.errors import UserError

NOW_ENV = "RECONCILER_NOW"
_started: dict[str, tuple[float, datetime]] = {}  # env value → (monotonic, the instant it named)


def now() -> datetime:
    """The current time, aware, in UTC."""
    given = os.environ.get(NOW_ENV)
    if not given:
        return datetime.now(UTC)
    if given not in _started:
        _started[given] = (time.monotonic(), _parse(given))
    began, instant = _started[given]
    return instant + timedelta(seconds=time.monotonic() - began)


def _parse(value: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        parsed = None
    if parsed is None or parsed.tzinfo is None:
        raise UserError(
            f"${NOW_ENV}: {value[:40]!r} is not an ISO 8601 time with a zone, e.g. 2026-12-01T02:00:00Z"
        )
    return parsed.astimezone(UTC)
