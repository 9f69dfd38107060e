"""A job whose spec is gone: its running batches are cancelled or left running, each as the
deletion policy written into its own metadata says, so an orphan stays orphaned even after the
job is forgotten and the state is lost.  A batch of ours with no policy in its metadata and no
state record to take one from is left running and reported, never cancelled silently."""

from __future__ import annotations

from reconciler.api.batch import LiveBatch
from reconciler.plans.changes import Action, Change
from reconciler.state.model import JobState


def plan_removed(name: str, recorded: JobState | None, running: list[LiveBatch]) -> Change | None:
    provider = recorded.provider if recorded else (running[0].provider if running else "")
    generation = recorded.generation if recorded else None
    policies = {
        b.id: b.batch.deletion_policy or (recorded.deletion_policy if recorded else None) for b in running
    }
    cancel = tuple(b.id for b in running if policies[b.id] == "cancel")
    orphans = [b.id for b in running if policies[b.id] == "orphan"]
    unknown = [b.id for b in running if policies[b.id] is None]
    if cancel:
        reason = f"spec removed; deletion_policy cancel stops {_ids(list(cancel))}"
        if orphans:
            reason += f"; deletion_policy orphan leaves {_ids(orphans)} running"
        return Change(name, Action.CANCEL, reason, provider, generation, cancel=cancel)
    if recorded is not None:
        reason = (
            f"spec removed; deletion_policy orphan leaves {_ids(orphans + unknown)} running"
            if running
            else "spec removed; its batches are finished"
        )
        return Change(name, Action.FORGET, reason, provider, generation)
    if unknown:
        reason = (
            f"no spec, no state record and no deletion policy in its metadata: {_ids(unknown)} "
            "left running; cancel it by hand if it should stop"
        )
        return Change(name, Action.NOOP, reason, provider, generation, attention=True)
    if orphans:
        return Change(name, Action.NOOP, f"orphaned: {_ids(orphans)} left running", provider, generation)
    return None


def _ids(ids: list[str]) -> str:
    return ids[0] if len(ids) == 1 else f"{ids[0]} and {len(ids) - 1} more"
