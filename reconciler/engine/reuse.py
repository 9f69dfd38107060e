"""Incremental runs (`spec.reuse`): the answer store, where its answers come from, and what a run
reuses instead of sending.

A request's identity is its endpoint and canonical body (specs/inputs/digest.request_identity);
its custom_id is only a label.  Answers are kept in the answer store (engine/answers.py), by
identity.  Errors, expired and cancelled requests are never stored, so never reused.

Where answers come from: the provider's files.  Every finished batch of ours in the live list
(the state recorded it, or a rebuilt state found it) whose answers the store has not read yet is
read once: its input file (the requests' bodies) and its output file (their answers).  So a
fresh checkout, with no state folder, reuses too, for as long as the provider keeps the files.

Bounded: answers older than the longest `max_age` of the jobs (plus `PRUNE_MARGIN`, for runs
still collecting what they chose) are pruned, and the store's size bound after that.

A run's choice, once, when it starts (`with_reuse`): each request whose identity has an answer
within `max_age` from an earlier run (of this job; with `scope: owner`, of any job of the
owner) is reused, the others are sent.  The sent requests, in input order, are written to a file
under the work folder named by the sha256 of their custom_ids; it becomes the DesiredJob's
`input_path`, so split, upload, retry, resume and metering work on what is sent.  The choice is
recorded with the run (`state.model.ReuseRecord`) and its custom_ids in the store, so every later
pass, here or on a checkout sharing the store, sends the same requests.  A run already started
keeps its choice whatever --no-reuse or the spec's `reuse` now says (removed, added, another
max_age: its answers stay in the store from its `since`); a run started without reuse sends
everything.  Request identities come from `specs/inputs/cache`, kept by the input's digest.

`plan` writes nothing of this (`PlannedAnswers`): it reads the store as it is (none when there
is no file or no table yet: nothing is created), holds in memory what the pass would add (the
answers of finished batches not read yet, a starting run's choice), and writes the file of what
a run would send to a scratch folder.  apply and reconcile make the same choice and keep it.
"""

from __future__ import annotations

import hashlib
import tempfile
from collections import Counter
from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from reconciler.api.reader import BatchReader
from reconciler.common import fileops
from reconciler.common.errors import ApiStatusError, StateError
from reconciler.engine.answers import Answers, AnswerStore, Source, max_store_bytes
from reconciler.engine.outcomes import classify, result_lines
from reconciler.engine.results import ReusedLines, answer_line
from reconciler.engine.retries import part_lines
from reconciler.plans.changes import DesiredJob, LiveBatch, Reuse
from reconciler.plans.runs import RunChoice
from reconciler.specs.inputs.cache import read_identities, write_identities
from reconciler.specs.inputs.digest import line_identity
from reconciler.specs.parts import split_input
from reconciler.specs.slices import PartSpec
from reconciler.state.model import ReuseRecord, State

PRUNE_MARGIN = 7 * 86400  # a run collects what it chose within days: its answers stay that long


# -- reading finished batches


def read_finished(
    store: Answers,
    live: Sequence[LiveBatch],
    readers: Mapping[str, BatchReader],
    jobs: Collection[str] | None,
    oldest: int,
    now: int,
) -> int:
    """Reads each finished batch of `jobs` (None: any job of ours) ended since `oldest` that the
    store has not read yet; returns how many answers it stored."""
    candidates = {
        b.id: b
        for b in live
        if b.terminal
        and b.record.output_file_id
        and b.record.input_file_id
        and b.job
        and (jobs is None or b.job in jobs)
        and _ended(b) >= oldest
        and b.provider in readers
    }
    stored = 0
    for batch_id in sorted(store.unread(candidates)):
        batch = candidates[batch_id]
        stored += store.add(batch_id, _answers_of(batch, readers[batch.provider]), now)
    return stored


def _ended(live: LiveBatch) -> int:
    b = live.record
    return b.completed_at or b.failed_at or b.expired_at or b.cancelled_at or b.created_at or 0


def _answers_of(live: LiveBatch, reader: BatchReader) -> Iterator[tuple[str, Source, int, bytes]]:
    """(identity, source, answered_at, results line) of each request the batch answered with 200."""
    batch = live.record
    source = Source(live.job, live.generation or "", live.run)
    with tempfile.TemporaryDirectory(prefix="reconciler-answers-") as scratch:
        sent, answered = Path(scratch) / "input.jsonl", Path(scratch) / "output.jsonl"
        try:
            _download(reader, str(batch.input_file_id), sent)
            _download(reader, str(batch.output_file_id), answered)
        except ApiStatusError as error:
            if error.status != 404:
                raise
            return  # the provider no longer has them: nothing to read, now or later
        identities = {
            custom_id: identity
            for custom_id, identity in (
                line_identity(live.endpoint or "", raw)
                for _, raw in part_lines(sent, PartSpec(index=0, requests=0))
            )
        }
        for _, line in result_lines(answered, identities):
            custom_id = str(line["custom_id"])
            response = line.get("response")
            if (
                classify(line) is not None
                or not isinstance(response, dict)
                or response.get("status_code") != 200
            ):
                continue
            text = answer_line(custom_id, response, line.get("error"), batch.batch_id, batch.retry)
            yield identities[custom_id], source, _ended(live), text


def _download(reader: BatchReader, file_id: str, target: Path) -> None:
    with target.open("wb") as out:
        reader.download_file(file_id, out)


# -- a run's choice


@dataclass(frozen=True)
class ReuseFolders:
    """Where a pass keeps what reuse works with: `root` the work folder (the files of what runs
    send), `inputs` the input cache's folder (each input's request identities), and `scratch`,
    for a read-only pass (`plan`), where a new choice's file goes instead of the work folder."""

    root: Path
    inputs: Path
    scratch: Path | None = None


@dataclass(frozen=True)
class _Choice:
    sent: list[str]  # custom_ids, in input order
    reused: int
    from_run: str | None
    since: int
    from_several: bool = False  # the reused answers come from more than one run

    @property
    def sha256(self) -> str:
        return hashlib.sha256("\n".join(self.sent).encode()).hexdigest()


def with_reuse(
    desired: Mapping[str, DesiredJob],
    state: State,
    live: Sequence[LiveBatch],
    choices: Mapping[str, RunChoice],
    readers: Mapping[str, BatchReader],
    store: Answers,
    work: ReuseFolders,
    now: int,
    *,
    no_reuse: bool = False,
) -> dict[str, DesiredJob]:
    """The desired jobs with each reusing run's choice applied: its input_path what is sent.  A run
    that recorded a choice keeps it whatever the spec's `reuse` now says (removed, added, another
    max_age): only a run that starts now chooses."""
    kept = {name: record for name, job in desired.items() if (record := kept_record(job, state, choices))}
    fresh = {
        n: j for n, j in desired.items() if j.reuse_max_age is not None and not j.suspend and n not in kept
    }
    if not kept and not fresh:
        return dict(desired)
    oldest = min([now - (j.reuse_max_age or 0) for j in fresh.values()] + [r.since for r in kept.values()])
    owner_wide = bool(kept) or any(j.reuse_scope == "owner" for j in fresh.values())
    read_finished(store, live, readers, None if owner_wide else set(fresh), oldest, now)
    store.prune(oldest - PRUNE_MARGIN, max_store_bytes())
    found = dict(desired)
    for name, record in kept.items():
        found[name] = _applied(desired[name], _kept_choice(desired[name], record, store, work), work)
    for name, job in fresh.items():
        run = choices[name].run if name in choices else None
        if run is not None and not no_reuse and not _started_without_reuse(job, state, run):
            choice = _choose(job, run, store, work, now - (job.reuse_max_age or 0))
            store.remember_choice(choice.sha256, choice.sent, now)
            found[name] = _applied(job, choice, work)
    return found


def kept_record(job: DesiredJob, state: State, choices: Mapping[str, RunChoice]) -> ReuseRecord | None:
    """The choice the job's current run recorded when it started, if it recorded one."""
    recorded = state.jobs.get(job.name)
    choice = choices.get(job.name)
    if recorded is None or recorded.reuse is None or choice is None or choice.run is None:
        return None
    record, run = recorded.reuse, choice.run
    if (recorded.run, recorded.generation) != (run, job.generation):
        return None
    return record if (record.run, record.generation) == (run, job.generation) else None


def _started_without_reuse(job: DesiredJob, state: State, run: str) -> bool:
    """A run that began without reuse sends everything, as it began."""
    recorded = state.jobs.get(job.name)
    if recorded is None or (recorded.run, recorded.generation) != (run, job.generation):
        return False
    return bool(recorded.batches or recorded.pending)


def _choose(job: DesiredJob, run: str, store: Answers, work: ReuseFolders, since: int) -> _Choice:
    requests = request_identities(job, work.inputs)
    scope = job.name if job.reuse_scope == "job" else None
    excluded = Source(job.name, job.generation, run)
    found = store.find([identity for _, identity in requests], job=scope, since=since, excluded=excluded)
    sent = [custom_id for custom_id, identity in requests if identity not in found]
    runs = Counter(found[identity].source.run for _, identity in requests if identity in found).most_common()
    from_run = runs[0][0] if runs else None
    return _Choice(sent, len(requests) - len(sent), from_run, since, len(runs) > 1)


def _kept_choice(job: DesiredJob, kept: ReuseRecord, store: Answers, work: ReuseFolders) -> _Choice:
    """The choice the run started with: from its file, the store, or made again the same way."""
    path = _sent_file(work.root, job, kept.sent_sha256)
    if path.exists():
        sent = [custom_id for custom_id, _ in _input_lines(str(path))]
    else:
        remembered = store.choice(kept.sent_sha256)
        sent = remembered if remembered is not None else _choose(job, kept.run, store, work, kept.since).sent
    choice = _Choice(sent, kept.reused, kept.from_run, kept.since, kept.from_several)
    if choice.sha256 != kept.sent_sha256:
        raise StateError(
            f"{job.name}: which requests run {kept.run} sent is no longer known here (the answer store "
            f"changed); `reconcile --replace {job.name}` starts a new run"
        )
    return choice


def request_identities(job: DesiredJob, inputs: Path) -> list[tuple[str, str]]:
    """(custom_id, identity) of each request of the job's input, in input order: kept beside the
    input cache by the input's digest, so an unchanged input is hashed once."""
    kept = read_identities(inputs, job.input_sha256, job.endpoint) if job.input_sha256 else None
    if kept is not None and len(kept) == job.requests:
        return kept
    identities = [line_identity(job.endpoint, raw) for _, raw in _input_lines(job.input_path)]
    if job.input_sha256:
        write_identities(inputs, job.input_sha256, job.endpoint, identities)
    return identities


def _applied(job: DesiredJob, choice: _Choice, work: ReuseFolders) -> DesiredJob:
    path = _sent_file(work.root, job, choice.sha256)
    if not path.exists():
        path = _sent_file(work.scratch, job, choice.sha256) if work.scratch else path
        wanted = set(choice.sent)
        with fileops.replacing(path) as out:
            for custom_id, raw in _input_lines(job.input_path):
                if custom_id in wanted:
                    out.write(raw)
    count = len(choice.sent)
    if not count:
        parts: tuple[PartSpec, ...] = ()
    elif job.split is not None:
        parts = split_input(path, job.split, display=str(path), endpoint=job.endpoint)
    else:
        parts = (PartSpec(index=0, requests=count),)
    reuse = Reuse(
        job.input_path, choice.reused, choice.from_run, choice.sha256, choice.since, choice.from_several
    )
    return replace(job, input_path=str(path), parts=parts, input_bytes=path.stat().st_size, reuse=reuse)


def _sent_file(work_root: Path, job: DesiredJob, sha256: str) -> Path:
    return work_root / job.name / job.generation / f"sent-{sha256[:32]}.jsonl"


def _input_lines(path: str) -> Iterator[tuple[str, bytes]]:
    return part_lines(Path(path), PartSpec(index=0, requests=0))


# -- the reused lines of a run's results


def reused_lines(store: AnswerStore, job: DesiredJob, run: str | None) -> ReusedLines:
    """The lookup engine/results.py splices a reusing run's results with."""
    reuse = job.reuse
    excluded = Source(job.name, job.generation, run or "")

    # The run chose what to reuse when it started; whatever the spec's `reuse` says now (scope
    # narrowed, reuse removed), its answers are looked up owner-wide, this job's own first: the
    # same answers as its choice found.
    def lookup(identities: Sequence[str]) -> Mapping[str, bytes]:
        return store.lines(identities, job=None, since=reuse.since if reuse else 0, excluded=excluded)

    return lookup
