"""A batch Portkey could not start is submitted again: twice at most, 1 and then 5 minutes on.

`file_upload_failed` (the gateway could not upload the input to the provider) and
`batch_start_failed` (the provider would not start the batch) end a batch before anything ran:
nothing was answered and nothing billed.  So the part's next batch sends again what the failed
one was to send, decided from the attempts before it as it was then: a *restart*.  Like a
resume after a cancel, a restart is not a retry and spends none of `retry.max_attempts`.

It waits first, since what stopped the start (an outage, a rate limit at the provider) passes
in minutes if at all: the first restart goes 60 s after the failed batch ended (its
`failed_at`, else its `created_at`: the server's clock), the second 300 s after the next one
failed.  A part whose batch fails to start three times in a row stays
failed; `retry.on: [batch_failed]` may still send it again then, as an ordinary retry that
counts.  While a restart is owed, the job's status is `pending`.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from reconciler.api.batch import START_FAILURES
from reconciler.state.model import BatchRecord

RESTART_DELAYS = (60.0, 300.0)  # seconds after the Nth failed start before restart N


def failed_starts(attempts: Sequence[BatchRecord]) -> int:
    """How many of a part's attempts (oldest first) a start failure ended, in a row, at the end."""
    count = 0
    for record in reversed(attempts):
        if record.status not in START_FAILURES:
            break
        count += 1
    return count


def restart_owed(attempts: Sequence[BatchRecord]) -> bool:
    return 0 < failed_starts(attempts) <= len(RESTART_DELAYS)


def restart_at(attempts: Sequence[BatchRecord]) -> float:
    """Unix seconds from which the owed restart may go (only when `restart_owed`)."""
    latest = attempts[-1]
    ended = latest.failed_at or latest.created_at or 0
    return ended + RESTART_DELAYS[failed_starts(attempts) - 1]


def before_failed_starts(attempts: Sequence[BatchRecord]) -> list[BatchRecord]:
    """The attempts that ran (or were cancelled) before the failed starts at the end."""
    return list(attempts[: len(attempts) - failed_starts(attempts)])


def is_restart(ordered: Sequence[BatchRecord], index: int) -> bool:
    """Attempt `index` (of a part's attempts, oldest first) restarted a failed start."""
    return restart_owed(ordered[:index])


def restart_note(by_part: dict[int, list[BatchRecord]]) -> str | None:
    """`batch_start_failed (nothing ran): part 0 is sent again from 03:10:00Z, restart 1 of 2`."""
    for part, attempts in sorted(by_part.items()):
        if restart_owed(attempts):
            when = datetime.fromtimestamp(restart_at(attempts), UTC).isoformat(timespec="seconds")
            return (
                f"{attempts[-1].status} (nothing ran): part {part} is sent again from "
                f"{when.replace('+00:00', 'Z')}, restart {failed_starts(attempts)} of {len(RESTART_DELAYS)}"
            )
    return None


def restart_reason(attempts: Sequence[BatchRecord], part: int, requests: int) -> str:
    return (
        f"{attempts[-1].status} (nothing ran): part {part}'s {requests:,} requests sent again, "
        f"restart {failed_starts(attempts)} of {len(RESTART_DELAYS)}"
    )
