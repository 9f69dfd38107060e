"""What the state file should say after a pass: pure, from desired jobs and live batches."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import Literal

from reconciler.api.batch import is_terminal
from reconciler.plans.changes import DesiredJob, LiveBatch
from reconciler.plans.decide import split_duplicates
from reconciler.plans.jobstatus import job_status, request_counts, updated_history
from reconciler.plans.runs import newest
from reconciler.state.model import (
    MAX_FORGOTTEN,
    AppliedFrom,
    BatchRecord,
    JobState,
    PendingCreate,
    ReuseRecord,
    State,
    unresolved,
)


def record(
    desired: Mapping[str, DesiredJob],
    state: State,
    live: Sequence[LiveBatch],
    *,
    forgotten: Iterable[str] = (),
    now: str,
    runs: Mapping[str, str | None] | None = None,
    untouched: Collection[str] = (),
    missed: Mapping[str, str] | None = None,
    observed_only: Collection[str] = (),
    only: Collection[str] | None = None,
) -> State:
    """The state with every job's batches and status taken from `live`; `runs` names each job's
    current run as the plan chose it, and jobs in `untouched` (outside --target) stay as they were;
    `missed` names the slot each job skipped for its starting_deadline.  Jobs in `observed_only`
    (left to a newer checkout) keep their recorded generation and run: only their batches' status
    is taken from `live`, as for a job whose spec is gone.  `only` (a pass over some jobs): the
    jobs recorded, every other one kept as it was without being looked at, and `live` need hold
    only their batches."""
    if only is not None:
        desired = {name: desired[name] for name in only if name in desired}
    desired = {name: job for name, job in desired.items() if name not in observed_only}
    gone = set(forgotten)
    by_job: dict[str, list[LiveBatch]] = {}
    for batch in live:  # grouped once: scanning every live batch for each job is quadratic
        by_job.setdefault(batch.job, []).append(batch)
    jobs: dict[str, JobState] = {}
    if only is not None:  # every job as it was, each recorded one replaced in its place
        jobs = dict(state.jobs)
    recorded_ones = (
        state.jobs.items() if only is None else [(n, state.jobs[n]) for n in only if n in state.jobs]
    )
    for name, previous in recorded_ones:
        if name in untouched:
            jobs[name] = previous
        elif name not in desired and name not in gone:
            jobs[name] = observed_job(name, previous, by_job.get(name, []), now, previous=previous)
        elif name not in desired:
            jobs.pop(name, None)  # forgotten
    for name, job in desired.items():
        if name in untouched:
            continue
        mine = by_job.get(name, [])
        recorded = state.jobs.get(name)
        run = _run_of(name, runs or {}, recorded, mine)
        base = _as_desired(job, recorded, run, mine)
        jobs[name] = observed_job(name, base, mine, now, job, previous=recorded)
        if name in (missed or {}):
            jobs[name] = jobs[name].model_copy(update={"missed_slot": (missed or {})[name]})
    return state.with_jobs(jobs)


def observed_job(
    name: str,
    base: JobState,
    live: Sequence[LiveBatch],
    now: str,
    desired: DesiredJob | None = None,
    *,
    previous: JobState | None = None,
) -> JobState:
    """`base` with its batches and status as `live` says.  A settled job that `live` shows as
    `previous` recorded it is `previous` itself, `observed_at` and all: a pass hands back the
    very objects it did not change, so a write can tell by identity what to write."""
    ours = [b for b in live if b.job == name and b.provider == base.provider]
    # A duplicate of a unit is never recorded, so it is never counted: the oldest speaks for it.
    mine, _ = split_duplicates(b for b in ours if b.generation == base.generation and b.run == base.run)
    mine.sort(key=lambda b: (b.part, b.retry, b.created_at or 0, b.id))
    attempts = {b.attempt for b in mine if b.attempt}
    # An intent is resolved once its batch is live; one of a superseded generation or run is dropped.
    this_run = (
        p for p in base.pending if p.generation == base.generation and (p.run or base.run) == base.run
    )
    pending = unresolved(this_run, attempts)
    batches = tuple(b.record for b in mine)
    results = base.results if base.results and set(base.results.batches) == _ids(batches) else None
    # Results join the batches' lines to the spec's input: only a run of this generation has them.
    results_due = bool(desired and desired.results_path and desired.generation == base.generation)
    results_due = results_due and results is None
    restarts = desired is not None and not desired.suspend
    status = job_status(batches, pending, results_due=results_due, restarts=restarts)
    if status == "none" and base.all_reused:  # a run answered from earlier runs alone: nothing to wait for
        status = "collecting" if results_due else "completed"
    current = base.model_copy(
        update={
            "status": status,
            "request_counts": request_counts(batches),
            "batches": batches,
            "pending": pending,
            "results": results,
            "observed_at": now,
        }
    )
    limit = desired.history_limit if desired else max(len(base.history), 1)
    if previous is not None and _as_recorded(previous, current, len(ours) == len(mine), limit):
        return previous
    return current.model_copy(update={"history": updated_history(current, ours, limit)})


def _as_recorded(previous: JobState, current: JobState, only_current_run: bool, limit: int) -> bool:
    """Whether `current` is `previous` but for when it was observed: a settled job whose live
    batches are all its current run's (so its history has nothing new either)."""
    settled = current.status == "none" or is_terminal(current.status)
    if not (settled and only_current_run and len(previous.history) <= limit):
        return False
    kept = {"observed_at": previous.observed_at, "history": previous.history}
    return current.model_copy(update=kept) == previous


def with_applied_from(
    state: State, changed: Iterable[str], forgotten: Iterable[str], commit: AppliedFrom | None
) -> State:
    """The state with `commit` recorded as where each job in `changed` was last changed from
    (None: from outside git), and kept for each job in `forgotten`; a job recorded again sheds
    its forgotten commit, and only the newest MAX_FORGOTTEN are kept."""
    changed, dropped = list(changed), set(forgotten)
    if not changed and not dropped and state.forgotten.keys().isdisjoint(state.jobs):
        return state  # the common pass: nothing to write down, and no copy of 10,000 jobs
    jobs = dict(state.jobs)
    for name in changed:
        if name in jobs:
            jobs[name] = jobs[name].model_copy(update={"applied_from": commit})
    kept = {name: c for name, c in state.forgotten.items() if name not in jobs and name not in dropped}
    if commit is not None:
        kept |= dict.fromkeys(dropped, commit)
    newest = sorted(kept.items(), key=lambda item: (item[1].committed_at, item[0]), reverse=True)
    return state.with_jobs(jobs).model_copy(update={"forgotten": dict(sorted(newest[:MAX_FORGOTTEN]))})


def with_intents(
    state: State,
    desired: Mapping[str, DesiredJob],
    intents: Mapping[str, tuple[PendingCreate, ...]],
    now: str,
) -> State:
    """The state with create intents recorded as far as they got (engine/apply/intents.py): each
    replaces the job's intent for its part and attempt, and a resolved one leaves `pending`."""
    jobs = dict(state.jobs)
    for name, pending in intents.items():
        base = _as_desired(desired[name], jobs.get(name), pending[0].run if pending else None)
        keep = tuple(p for p in base.pending if (p.part, p.retry) not in {(i.part, i.retry) for i in pending})
        all_pending = unresolved(keep + pending, ())
        status = job_status(base.batches, all_pending, restarts=True)
        jobs[name] = base.model_copy(update={"pending": all_pending, "status": status, "observed_at": now})
    return state.with_jobs(jobs)


def _run_of(
    name: str, runs: Mapping[str, str | None], previous: JobState | None, live: Sequence[LiveBatch]
) -> str | None:
    if name in runs:
        return runs[name]
    if previous is not None and previous.run is not None:
        return previous.run
    return newest(b.run for b in live)


def _as_desired(
    job: DesiredJob, previous: JobState | None, run: str | None, live: Sequence[LiveBatch] = ()
) -> JobState:
    """The recorded job carried over to the desired generation, run, provider and policy; its
    history goes along whatever changed.  A run of an earlier spec that stays the current one
    (a schedule's edit waits for the next slot) stays recorded as it was made."""
    policy: Literal["cancel", "orphan"] = "orphan" if job.deletion_policy == "orphan" else "cancel"
    if previous is not None and _kept_from_earlier_spec(job, previous, run, live):
        return previous.model_copy(update={"deletion_policy": policy})
    definition = dict(job.definition)
    if previous is not None and _same_run(job, previous, run):
        update = {
            "deletion_policy": policy,
            "generation": job.generation,
            "definition": definition,
            "run": run,
            "reuse": _reuse_record(job, run) or previous.reuse,
        }
        return previous.model_copy(update=update)
    return JobState(
        generation=job.generation,
        provider=job.provider,
        status="none",
        deletion_policy=policy,
        run=run,
        history=previous.history if previous is not None else (),
        definition=definition,
        applied_from=previous.applied_from if previous is not None else None,
        reuse=_reuse_record(job, run),
    )


def _reuse_record(job: DesiredJob, run: str | None) -> ReuseRecord | None:
    """What the run reuses, as the pass chose it (engine/reuse.py); None when it reuses nothing."""
    reuse = job.reuse
    if reuse is None or run is None:
        return None
    return ReuseRecord(
        run=run,
        generation=job.generation,
        requests=job.requests,
        reused=reuse.reused,
        from_run=reuse.from_run,
        sent_sha256=reuse.sent_sha256,
        since=reuse.since,
        from_several=reuse.from_several,
    )


def _kept_from_earlier_spec(
    job: DesiredJob, previous: JobState, run: str | None, live: Sequence[LiveBatch]
) -> bool:
    if run is None or previous.run != run or previous.provider != job.provider:
        return False
    made = {b.generation for b in live if b.run == run}
    return made == {previous.generation} and job.generation not in made


def _same_run(job: DesiredJob, previous: JobState, run: str | None) -> bool:
    return (
        previous.provider == job.provider
        and job.made_from_this_spec(previous.generation)
        and (previous.run or run) == run
    )


def _ids(batches: tuple[BatchRecord, ...]) -> set[str]:
    return {b.batch_id for b in batches}
