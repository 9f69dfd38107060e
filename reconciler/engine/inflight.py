"""Creates that may still be in flight: sent, never answered, and not in the live list yet.

A create that got no answer (the read timed out, the connection dropped, the process died
mid-request) may still be under way at the server, which can take longer than our timeout to
make the batch.  Sending its intent again at once is how one attempt became two batches.  So
an unanswered intent waits a quarantine, counted from its POST, during which passes only look
for it in the live list; after that it is sent again with the same attempt id, and the
duplicate guard (plans/decide.py) cancels a late arrival.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from reconciler.api.batch import LiveBatch
from reconciler.common.errors import UserError
from reconciler.common.limits import parse_seconds
from reconciler.common.ownership import DEFAULT_RUN
from reconciler.plans.changes import InFlight
from reconciler.state.model import State

QUARANTINE_ENV = "RECONCILER_CREATE_QUARANTINE"
DEFAULT_QUARANTINE_SECONDS = 120.0  # four times the client's 30 s read timeout


def quarantine_seconds() -> float:
    raw = os.environ.get(QUARANTINE_ENV)
    try:
        return parse_seconds(raw) if raw else DEFAULT_QUARANTINE_SECONDS
    except ValueError as error:
        raise UserError(f"${QUARANTINE_ENV}={raw!r} {error}") from None


def in_flight(state: State, live: Sequence[LiveBatch], now: float, quarantine: float) -> InFlight:
    """(job, generation, run, part, retry) → seconds left, for each intent still in quarantine."""
    seen = {b.batch.attempt for b in live}
    waiting = {}
    for name, job in state.jobs.items():
        for intent in job.pending:
            if intent.sent_at is None or intent.attempt in seen:
                continue
            left = intent.sent_at + quarantine - now
            if left > 0:
                waiting[(name, intent.generation, intent.run or DEFAULT_RUN, intent.part, intent.retry)] = (
                    left
                )
    return waiting
