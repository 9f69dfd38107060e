"""One paged pass over each provider's live batch list, keeping only batches we own.

A plan costs about one request per hundred live batches, not one per job.  Paging stops
early only when it is safe: every desired job already has a recorded batch of its current
generation, nothing is pending, and every recorded batch has been seen.  Otherwise an
owned batch missing from the state could hide further down, and we would create it twice.
"""

from __future__ import annotations

from collections.abc import Mapping

from reconciler.api.batch import LiveBatch
from reconciler.api.reader import BatchReader
from reconciler.plans.changes import DesiredJob
from reconciler.state.model import State


def observe(
    readers: Mapping[str, BatchReader],
    owner_tag: str,
    desired: Mapping[str, DesiredJob],
    state: State,
) -> list[LiveBatch]:
    live: list[LiveBatch] = []
    for provider, reader in sorted(readers.items()):
        known = _known_ids(provider, state)
        stop_early = _safe_to_stop_early(provider, desired, state)
        live.extend(_observe_provider(provider, reader, owner_tag, known, stop_early))
    return live


def _observe_provider(
    provider: str, reader: BatchReader, owner_tag: str, known: set[str], stop_early: bool
) -> list[LiveBatch]:
    owned: list[LiveBatch] = []
    unseen = set(known)
    for batch in reader.iter_batches(owner_tag=owner_tag):
        if batch.owned_by(owner_tag):
            owned.append(LiveBatch(provider=provider, batch=batch))
        unseen.discard(batch.id)
        if stop_early and not unseen:
            break
    return owned


def _known_ids(provider: str, state: State) -> set[str]:
    return {
        record.batch_id for job in state.jobs.values() if job.provider == provider for record in job.batches
    }


def _safe_to_stop_early(provider: str, desired: Mapping[str, DesiredJob], state: State) -> bool:
    for name, job in desired.items():
        if job.provider != provider:
            continue
        recorded = state.jobs.get(name)
        if recorded is None or recorded.pending or not recorded.batches:
            return False
        if recorded.generation != job.generation or recorded.provider != provider:
            return False
    recorded_here = [job for job in state.jobs.values() if job.provider == provider]
    return bool(recorded_here) and not any(job.pending for job in recorded_here)
