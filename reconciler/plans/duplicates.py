"""The duplicate guard: two live batches of ours for one unit are one too many.

A unit is a job's generation, run, part and retry.  A writer without the shared lock, an older
reconciler or a create still in flight when its intent was sent again can each leave a second
batch for a unit.  The oldest (by creation time, then id) is the one kept and counted; the
younger ones are cancelled while they run and never counted, in the plan, the state or status.
"""

from __future__ import annotations

from collections.abc import Iterable

from reconciler.api.batch import LiveBatch
from reconciler.plans.changes import Dedupe

UnitKey = tuple[str, str, str, int, int]  # job, generation, run, part, retry


def unit_of(batch: LiveBatch) -> UnitKey:
    return (batch.batch.job or "", batch.generation or "", batch.run, batch.batch.part, batch.batch.retry)


def split_duplicates(batches: Iterable[LiveBatch]) -> tuple[list[LiveBatch], list[LiveBatch]]:
    """(the batch kept for each unit, the younger duplicates), each in the order given."""
    live = list(batches)
    oldest: dict[UnitKey, LiveBatch] = {}
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


def dedupe_reason(current: list[LiveBatch], doubled: list[LiveBatch]) -> Dedupe:
    kept = {unit_of(b): b for b in current}[unit_of(doubled[0])]
    younger = tuple(b.id for b in doubled if unit_of(b) == unit_of(kept))
    return Dedupe(kept.batch.part, kept.batch.retry, kept.id, younger, len(doubled) - len(younger))
