"""The duplicate guard: two live batches of ours for one unit are one too many.

A unit is a job's generation, run, part and retry: the `IntentKey` of the one create meant for
it.  A writer without the shared lock, an older reconciler or a create still in flight when its
intent was sent again can each leave a second batch for a unit.  The oldest (by creation time,
then id) is the one kept and counted; the younger ones are cancelled while they run and never
counted, in the plan, the state or status.
"""

from __future__ import annotations

from collections.abc import Iterable

from reconciler.api.batch import LiveBatch
from reconciler.state.model import IntentKey


def unit_of(batch: LiveBatch) -> IntentKey:
    return IntentKey.of_batch(batch.batch)


def split_duplicates(batches: Iterable[LiveBatch]) -> tuple[list[LiveBatch], list[LiveBatch]]:
    """(the batch kept for each unit, the younger duplicates), each in the order given."""
    live = list(batches)
    oldest: dict[IntentKey, LiveBatch] = {}
    for batch in live:
        unit = unit_of(batch)
        if unit not in oldest or _age_key(batch) < _age_key(oldest[unit]):
            oldest[unit] = batch
    kept_ids = {b.id for b in oldest.values()}
    kept: list[LiveBatch] = []
    extra: list[LiveBatch] = []
    for batch in live:
        (kept if batch.id in kept_ids else extra).append(batch)
    return kept, extra


def _age_key(batch: LiveBatch) -> tuple[int, str]:
    created = batch.batch.created_at
    return (created if created is not None else 2**62, batch.id)


def dedupe_reason(current: list[LiveBatch], doubled: list[LiveBatch]) -> str:
    kept = {unit_of(b): b for b in current}[unit_of(doubled[0])]
    younger = ", ".join(b.id for b in doubled if unit_of(b) == unit_of(kept))
    part, retry = kept.batch.part, kept.batch.retry
    more = len(doubled) - len(younger.split(", "))
    also = f" (and {more} more)" if more else ""
    return (
        f"part {part} attempt {retry} has more than one batch: keeping the oldest {kept.id}, "
        f"cancelling {younger}{also}"
    )
