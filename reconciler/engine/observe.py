"""One paged pass over each provider's live batch list, keeping only batches we own; and the daemon
leader's live view, kept up to date between such passes without reading the whole list.

A plan costs about one request per hundred live batches, not one per job.  Paging stops
early only when it is safe: every desired job already has a recorded batch of its current
generation, nothing is pending, every recorded batch has been seen, and no part's latest
recorded attempt was seen cut short (cancelled, failed, expired, or completed with failures).
Otherwise an owned batch missing from the state could hide further down, and we would create
it twice; or the attempt cut short is a twin the duplicate guard cancelled, and resuming it
would start the twin again, while the batch the guard kept lies further down.

A list may leave out batches that exist (an eventually consistent list lags behind a create):
a recorded batch the whole list did not show is retrieved by id, so the plan never takes
"not listed" for "gone" and creates its unit again.  Only a 404 says it is gone.  The batches
of an earlier run last seen running (a replace cancelled them) count as recorded until seen
ended, so the run's history shows how it ended and what it had answered.

The daemon's leader holds the owner's writer lock for each pass, so between two full lists the
only writer of its batches is itself (another writer of the same owner, say CI on another
machine, shows at the top of the list).  `LiveView` is what the last full list said, brought up
to date by the leader's own creates and cancels as it makes them, by batches retrieved by id
(a webhook's, an active one polled), and by the newest list pages: read from the top until a
batch seen before, so an added spec costs one page, not the list.  A full list (the resync)
replaces it, and is what catches everything else: a batch the list left out, a foreign cancel.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace

from reconciler.api.batch import Batch, is_terminal
from reconciler.api.reader import BatchReader
from reconciler.common import ownership
from reconciler.common.errors import ApiStatusError
from reconciler.plans.changes import DesiredJob, LiveBatch
from reconciler.plans.jobstatus import latest_per_part
from reconciler.plans.runs import run_base, slot_run
from reconciler.state.model import State


def observe(
    readers: Mapping[str, BatchReader],
    owner_tag: str,
    desired: Mapping[str, DesiredJob],
    state: State,
    newest: dict[str, set[str]] | None = None,
) -> list[LiveBatch]:
    """`newest`: filled with the ids at the top of each provider's list (anyone's), where a
    `LiveView` stops reading the newest pages."""
    live: list[LiveBatch] = []
    for provider, reader in sorted(readers.items()):
        known = _known_ids(provider, state)
        stop_early = _safe_to_stop_early(provider, desired, state)
        top = newest.setdefault(provider, set()) if newest is not None else set()
        latest = _latest_attempts(provider, state)
        listed, unseen = _observe_provider(
            provider, reader, owner_tag, desired, known, latest, stop_early, top
        )
        live.extend(listed)
        live.extend(_retrieve(provider, reader, owner_tag, unseen, desired))
    return live


def live_batch(provider: str, batch: Batch, desired: Mapping[str, DesiredJob]) -> LiveBatch:
    """A batch of ours as the pass reads it.  One made before runs existed carries a generation
    that also hashed its metadata: read as the generation the same spec has now, so an upgrade
    re-creates nothing."""
    live = LiveBatch.of(provider, batch)
    job = desired.get(live.job)
    if job is None or live.generation == job.generation:  # the legacy one is worked out only past here
        return live
    if batch.meta(ownership.KEY_RUN) is not None or live.generation != job.legacy_generation:
        return live
    return replace(live, generation=job.generation)


def _observe_provider(
    provider: str,
    reader: BatchReader,
    owner_tag: str,
    desired: Mapping[str, DesiredJob],
    known: set[str],
    latest: set[str],
    stop_early: bool,
    top: set[str],
) -> tuple[list[LiveBatch], set[str]]:
    """(our batches in the list, the recorded ids it did not show); the first page's ids into `top`.
    Anyone else's batch is only looked at: its id, its owner, whether it is one we recorded."""
    owned: list[LiveBatch] = []
    unseen = set(known)
    for batch_id, batch in reader.iter_listed(owner_tag):
        if len(top) < TOP_IDS:
            top.add(batch_id)
        if batch is not None and batch.owned_by(owner_tag):
            owned.append(live_batch(provider, batch, desired))  # the parsed Batch is let go
        unseen.discard(batch_id)
        if batch is not None and batch_id in latest and _cut_short(batch):
            stop_early = False  # a resume or retry may follow: the rest of the list may hold its twin
        if stop_early and not unseen:
            return owned, set()
    return owned, unseen


def _retrieve(
    provider: str, reader: BatchReader, owner_tag: str, ids: set[str], desired: Mapping[str, DesiredJob]
) -> list[LiveBatch]:
    """The recorded batches the list left out, each as the provider has it now; a 404 is gone."""
    found: list[LiveBatch] = []
    for batch_id in sorted(ids):
        try:
            batch = reader.retrieve_batch(batch_id)
        except ApiStatusError as error:
            if error.status == 404:
                continue
            raise
        if batch.owned_by(owner_tag):
            found.append(live_batch(provider, batch, desired))
    return found


def _cut_short(batch: Batch) -> bool:
    """Finished without every request answered: a part the plan may resume or retry."""
    if not batch.terminal:
        return False
    counts = batch.request_counts
    return (
        batch.status != "completed" or counts is None or counts.failed > 0 or counts.completed < counts.total
    )


def _known_ids(provider: str, state: State) -> set[str]:
    """The recorded batches, and those of earlier runs last seen still running (a run a
    replace cut short, still cancelling): seen again until they end, so their runs show how."""
    known: set[str] = set()
    for job in state.jobs.values():
        if job.provider == provider:
            known.update(record.batch_id for record in job.batches)
            known.update(i for run in job.history if not is_terminal(run.status) for i in run.batches)
    return known


def _latest_attempts(provider: str, state: State) -> set[str]:
    """The recorded batch of each part's highest attempt: the one a resume or retry starts from."""
    latest: set[str] = set()
    for job in state.jobs.values():
        if job.provider == provider:
            latest |= {record.batch_id for record in latest_per_part(job.batches)}
    return latest


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


TOP_IDS = 100  # ids kept from the top of a full list: where reading the newest pages stops
NEWEST_PAGE = 20  # the newest pages are read this many at a time: usually one page holds what is new


@dataclass
class LiveView:
    """The daemon leader's owned batches between full lists (see the module's docstring)."""

    batches: dict[str, LiveBatch] = field(default_factory=dict)  # by id
    newest: dict[str, set[str]] = field(default_factory=dict)  # provider → ids seen at its list's top
    _by_job: dict[str, dict[str, LiveBatch]] = field(default_factory=dict)
    # The batches not finished, or failed (a queue's refusal is a failure): what a poll reads again
    # and what admission counts the queues from.  Kept as `take` and `drop` go, so a pass over a
    # few jobs does not walk every batch held (most of an added spec's CPU at 10,000 jobs).
    _open: dict[str, LiveBatch] = field(default_factory=dict)

    @classmethod
    def listed(
        cls, live: Iterable[LiveBatch], newest: dict[str, set[str]], made: Iterable[LiveBatch] = ()
    ) -> LiveView:
        view = cls(newest=newest)
        view.take(live)
        view.made(made)
        return view

    def made(self, batches: Iterable[LiveBatch]) -> None:
        """Records batches this daemon just created or cancelled: a created one tops its list."""
        batches = list(batches)
        self.take(batches)
        for batch in batches:
            self.newest.setdefault(batch.provider, set()).add(batch.id)

    def all(self) -> list[LiveBatch]:
        return list(self.batches.values())

    def of_jobs(self, names: Iterable[str]) -> list[LiveBatch]:
        return [batch for name in names for batch in self._by_job.get(name, {}).values()]

    def active(self) -> list[LiveBatch]:
        return [batch for batch in self._open.values() if not batch.terminal]

    def for_queues(self) -> list[LiveBatch]:
        """The batches admission reads (plans/admission.py): unfinished ones hold a queue's room,
        and only a failed one can carry a refusal; a finished batch tells it nothing."""
        return list(self._open.values())

    def take(self, batches: Iterable[LiveBatch]) -> set[str]:
        """Records these as they are now; the jobs whose batches are new or changed."""
        changed: set[str] = set()
        for batch in batches:
            before = self.batches.get(batch.id)
            if before == batch:
                continue
            job = batch.job
            self.batches[batch.id] = batch
            self._by_job.setdefault(job, {})[batch.id] = batch
            if not batch.terminal or batch.status == "failed":
                self._open[batch.id] = batch
            else:
                self._open.pop(batch.id, None)
            changed.add(job)
        return changed

    def drop(self, batch_id: str) -> set[str]:
        gone = self.batches.pop(batch_id, None)
        self._open.pop(batch_id, None)
        if gone is None:
            return set()
        job = gone.job
        self._by_job.get(job, {}).pop(batch_id, None)
        return {job}


def read_newest(
    view: LiveView,
    readers: Mapping[str, BatchReader],
    owner_tag: str,
    desired: Mapping[str, DesiredJob],
    providers: Collection[str],
) -> tuple[set[str], set[str]]:
    """Reads each provider's list from the top: the whole first page, and on until a batch seen
    before.  (The jobs whose batches are new or changed, the ids those pages showed.)"""
    changed: set[str] = set()
    shown: set[str] = set()
    for provider in sorted(providers):
        top = view.newest.setdefault(provider, set())
        read: list[tuple[str, Batch | None]] = []
        met = False
        listed = readers[provider].iter_listed(owner_tag, page_size=NEWEST_PAGE)
        for index, (batch_id, batch) in enumerate(listed):
            known = batch_id in top
            if known and index >= NEWEST_PAGE:
                break  # a later page reached what was seen before
            read.append((batch_id, batch))
            met = met or known
            if met and index == NEWEST_PAGE - 1:
                break  # the first page held what was seen before: no next page is asked for
        top.update(batch_id for batch_id, _ in read)
        shown.update(batch_id for batch_id, _ in read)
        ours = (b for _, b in read if b is not None and b.owned_by(owner_tag))
        changed |= view.take(live_batch(provider, b, desired) for b in ours)
    return changed, shown


def read_by_id(
    view: LiveView,
    readers: Mapping[str, BatchReader],
    owner_tag: str,
    desired: Mapping[str, DesiredJob],
    batches: Sequence[LiveBatch],
) -> set[str]:
    """Retrieves these batches of the view: the jobs whose batches changed (a 404: gone)."""
    changed: set[str] = set()
    for live in batches:
        try:
            batch = readers[live.provider].retrieve_batch(live.id)
        except ApiStatusError as error:
            if error.status != 404:
                raise
            changed |= view.drop(live.id)
            continue
        if batch.owned_by(owner_tag):
            changed |= view.take([live_batch(live.provider, batch, desired)])
    return changed
