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
from reconciler.common import ownership
from reconciler.plans.changes import DesiredJob
from reconciler.plans.runs import run_base, slot_run
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
    return [_as_current_format(batch, desired) for batch in live]


def _as_current_format(live: LiveBatch, desired: Mapping[str, DesiredJob]) -> LiveBatch:
    """A batch made before runs existed carries a generation that also hashed its metadata:
    read as the generation the same spec has now, so an upgrade re-creates nothing."""
    batch = live.batch
    job = desired.get(batch.job or "")
    if job is None or batch.meta(ownership.KEY_RUN) is not None or batch.generation != job.legacy_generation:
        return live
    metadata = {**(batch.metadata or {}), ownership.KEY_GENERATION: job.generation}
    return live.model_copy(update={"batch": batch.model_copy(update={"metadata": metadata})})


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
        if not _on_wanted_run(job, recorded.run):
            return False
    recorded_here = [job for job in state.jobs.values() if job.provider == provider]
    return bool(recorded_here) and not any(job.pending for job in recorded_here)


def _on_wanted_run(job: DesiredJob, run: str | None) -> bool:
    """Whether the recorded run is the one the spec asks for now: a slot's run may have been
    started by someone else, further down the list."""
    if run is None:
        return False
    slot = job.schedule
    if slot is None:
        return run_base(run) == job.run_label
    return slot.due is not None and run_base(run) == slot_run(slot.due)
