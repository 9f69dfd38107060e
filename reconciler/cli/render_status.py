"""`reconciler status`: what it shows, and how.

What it shows (`StatusView`): the state, the specs beside it (for sync), and the live list
observed over it, read-only: by default when the provider answers within `LIVE_SECONDS`, else
the state as recorded with a note saying so (`--refresh` waits for it, and fails without it;
`--save` writes what it observed; `--offline` asks no one).  How: every job as a table, or as
JSON; one job in detail (`status JOB`), a line per batch with its files; and what runs used and
cost, a job's cells and a line per provider.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import click

from reconciler.api.responses import CommandTimeoutError
from reconciler.api.transport import DEFAULT_BACKOFF, Backoff
from reconciler.common.errors import ApiError, StateError, UserError
from reconciler.common.usage import TokenUsage, short_count, usd
from reconciler.daemon.passes import Loaded, load
from reconciler.engine import clock
from reconciler.engine.clock import at_time
from reconciler.engine.connect import open_clients
from reconciler.engine.converge import observe_and_record, readers_of, utc_now
from reconciler.engine.observe import observe
from reconciler.engine.results import recorded_location, results_problem
from reconciler.engine.workspace import SEE_STATUS, behind, load_state, read_recorded
from reconciler.plans.admission import as_booked, congestion_share, declared_limit
from reconciler.plans.changes import DesiredJob
from reconciler.plans.jobstatus import duration, job_progress, job_sync, parse_time, reused_note
from reconciler.plans.record import record
from reconciler.plans.wording import queue_limit_words, queue_place_words
from reconciler.specs import identity
from reconciler.specs.fields import closest
from reconciler.specs.repo import RepoPaths
from reconciler.state.model import BatchRecord, JobState, RunRecord, State

COMMAND = "reconciler status --save"
# How `status` reads: the live list if it comes quickly (the default), the live list however long
# it takes (--refresh), that and written down (--save), or the state alone (--offline).
Reading = Literal["live", "refresh", "save", "offline"]
# Plain `status` is a glance: a provider slower than this (or down) gets the recorded figures
# shown, with a note; one quick retry, since a provider that is down is not waited out.
LIVE_SECONDS = 5.0
LIVE_BACKOFF = Backoff(attempts=2)


@dataclass(frozen=True)
class StatusView:
    state: State
    desired: Mapping[str, DesiredJob] | None  # None: no specs folder to compare with
    problems: tuple[str, ...]  # invalid specs, one line each
    repo_root: Path
    note: str | None = None  # why the figures are as recorded, when the live list was not read


def status_view(
    paths: RepoPaths,
    *,
    reading: Reading = "live",
    owner_flag: str | None = None,
    named: tuple[str, ...] = (),
    targets: tuple[str, ...] = (),
) -> StatusView:
    """The state, with the live list observed over it unless `reading` is offline.  Never
    written, but with --save; no lock taken but --save's.  A job `named` (or a --target) that
    names no job is an error before anything is asked."""
    recorded = read_recorded(paths, owner_flag)  # read without a lock: a pass is never held up
    loaded = load(paths, "", None)  # the owner matters only to the live list
    found = paths.specs.is_dir()
    view = StatusView(
        recorded,
        loaded.ws.desired if found else None,
        tuple(map(str, loaded.problems)) if found else (),
        paths.repo,
    )
    check_names(view, named, targets)
    if reading == "offline" or not loaded.ws.providers(recorded):
        return view
    if reading == "live" and not recorded.jobs:
        return view  # nothing applied yet: nothing to look up (--refresh looks for lost batches)
    try:
        return dataclasses.replace(view, state=_observed(paths, loaded, owner_flag, reading))
    except (ApiError, UserError, StateError) as error:
        if reading != "live":
            raise
        return dataclasses.replace(view, note=recorded_note(recorded, error))


def _observed(paths: RepoPaths, loaded: Loaded, owner_flag: str | None, reading: Reading) -> State:
    """The state with the live list observed over it: recorded (under the state lock) with
    --save, else only in memory."""
    owner = identity.resolve_owner(paths.repo, owner_flag, paths.repo_settings())
    ws = dataclasses.replace(loaded.ws, owner=owner)
    state = load_state(ws)  # refuses a state of another owner
    quick = reading == "live"
    ends_at = time.monotonic() + LIVE_SECONDS if quick else None
    backoff = LIVE_BACKOFF if quick else DEFAULT_BACKOFF
    with open_clients(ws.repo, ws.providers(state), paths, ends_at=ends_at, backoff=backoff) as apis:
        if reading == "save":
            return observe_and_record(ws, readers_of(apis), COMMAND)
        desired = at_time(ws.desired, clock.now())
        live = observe(readers_of(apis), ws.owner_tag, desired, state)
    newer = behind(ws, state, desired)  # shown as the newer checkout left them
    observed = as_booked(record(desired, state, live, now=utc_now(), observed_only=newer), state)
    # A job the live list shows nothing of is shown as the state has it: not created yet.
    return observed.with_jobs(
        {name: job for name, job in observed.jobs.items() if name in state.jobs or job.batches or job.pending}
    )


def recorded_note(state: State, error: Exception) -> str:
    """One line: the figures are the state's, as of when, and why the live list was not read."""
    observed = max((job.observed_at for job in state.jobs.values() if job.observed_at), default=None)
    when = f"as recorded at {observed}" if observed else "as recorded"
    if isinstance(error, CommandTimeoutError):
        why = f"the provider did not answer within {LIVE_SECONDS:.0f}s"
    else:
        why = f"no live list ({str(error).splitlines()[0]})"
    return f"figures {when}: {why}; `status --refresh` waits for it, `--offline` does not ask"


def check_names(view: StatusView, named: tuple[str, ...], targets: tuple[str, ...] = ()) -> None:
    """Each name the user gave is a job of the state or the specs, or one line says which
    one is not, and the job probably meant."""
    known = set(view.state.jobs) | set(view.desired or {})
    for name in sorted(set(targets) - known):
        hint = closest(name, known) or SEE_STATUS
        raise UserError(f"--target {name}: no job of that name in the state or the specs{hint}")
    for name in (name for name in named if name not in known):
        raise UserError(f"no job {name!r} in the state or the specs{closest(name, known) or SEE_STATUS}")


def only(view: StatusView, targets: tuple[str, ...]) -> StatusView:
    """The view narrowed to `targets` (all jobs when none; check_names has checked them)."""
    if not targets:
        return view
    jobs = {name: job for name, job in view.state.jobs.items() if name in targets}
    desired = {n: j for n, j in view.desired.items() if n in targets} if view.desired is not None else None
    return dataclasses.replace(view, state=view.state.with_jobs(jobs), desired=desired)


def usage_cells(job: JobState) -> tuple[str, str]:
    """(tokens in/out, cost) of the job's current run; `-` before any batch has finished."""
    if not job.usage:
        return "-", "-"
    total = job.total_usage
    return f"{_short(total.input)}/{_short(total.output)}", _cost(job.cost_usd, total)


def usage_lines(state: State) -> list[str]:
    """One line per provider: its jobs' current runs added up."""
    by_provider: dict[str, tuple[TokenUsage, float | None]] = {}
    for job in state.jobs.values():
        if job.usage:
            usage, cost = by_provider.get(job.provider, (TokenUsage(), 0.0))
            job_cost = job.cost_usd
            total = None if cost is None or job_cost is None else cost + job_cost
            by_provider[job.provider] = (usage.plus(job.total_usage), total)
    return [
        f"Usage {provider}: {u.input:,} input tokens ({u.cached_input:,} cached), "
        f"{u.output:,} output ({u.reasoning:,} reasoning), {u.requests:,} "
        f"request{'' if u.requests == 1 else 's'}: {_cost(cost, u)}"
        for provider, (u, cost) in sorted(by_provider.items())
    ]


def _cost(cost: float | None, usage: TokenUsage) -> str:
    if cost is None:
        return "no price"
    return f"≥{usd(cost)}" if usage.unread else usd(cost)


def _short(count: int) -> str:
    return short_count(count)


STATUS_COLOURS = {
    "completed": "green",
    "failed": "red",
    "expired": "red",
    "cancelled": "yellow",
    "cancelling": "yellow",
    "suspended": "yellow",
}
COLUMNS = (
    "JOB",
    "STATUS",
    "SYNC",
    "DONE/FAILED/TOTAL",
    "RATE",
    "ETA",
    "BATCHES",
    "OBSERVED",
    "RESULTS",
    "TOKENS IN/OUT",
    "COST",
)
MAX_ERRORS_SHOWN = 3


def status_table(view: StatusView, *, colour: bool, now: float | None = None) -> str:
    now = time.time() if now is None else now
    names = sorted(set(view.state.jobs) | set(view.desired or {}))
    if not names and not view.problems:
        return "No jobs in the state yet: run `reconciler plan`, then `reconciler apply`."
    rows = [_row(view, name, now) for name in names]
    widths = [max(len(r[i]) for r in [COLUMNS, *rows]) for i in range(len(COLUMNS))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(COLUMNS, widths, strict=True)).rstrip()]
    for name, row in zip(names, rows, strict=True):
        cells = [c.ljust(w) for c, w in zip(row, widths, strict=True)]
        shade = STATUS_COLOURS.get(row[1].split(" ")[0])  # `suspended (cancelled)` as suspended
        if colour and shade:
            cells[1] = click.style(cells[1], fg=shade)
        lines.append("  ".join(cells).rstrip())
        job = view.state.jobs.get(name)
        lines.extend(f"    {line}" for line in queue_lines(view.state, name, now))
        lines.extend(f"    {line}" for line in (first_errors(job) if job else []))
    lines += invalid_lines(view)
    if not view.state.jobs:
        lines += ["", "No jobs in the state yet: run `reconciler plan`, then `reconciler apply`."]
    return "\n".join(lines + usage_lines(view.state) + queue_limit_lines(view.state, view.desired, now))


def _row(view: StatusView, name: str, now: float) -> tuple[str, ...]:
    job = view.state.jobs.get(name)
    if job is None:
        return (name, status_cell(view, name), sync(view, name), "-", "-", "-", "0", "-", "-", "-", "-")
    figures = job_progress(job, now)
    observed = parse_time(job.observed_at)
    batches = str(len(job.batches)) + (f" +{len(job.pending)} pending" if job.pending else "")
    return (
        name,
        status_cell(view, name),
        sync(view, name),
        f"{figures.done - figures.failed}/{figures.failed}/{figures.total}" + reused_note(job.reused),
        f"{figures.per_minute:,.0f}/min" if figures.per_minute is not None else "-",
        duration(figures.eta_seconds) if figures.eta_seconds is not None else "-",
        batches,
        f"{duration(now - observed)} ago" if observed is not None else "-",
        results_cell(view, name, job),
        *usage_cells(job),
    )


def queue_lines(state: State, name: str, now: float) -> list[str]:
    """`queued: 2nd for gpt-4o-mini, 1.6k tokens ahead, estimated start in 2m`, for a job with
    parts waiting for room in its model's queue; and each limit learnt for it."""
    place = state.queue.places.get(name)
    if place is None:
        return []
    return [f"queued: {queue_place_words(place, now)}"]


def queue_limit_lines(state: State, desired: Mapping[str, DesiredJob] | None, now: float) -> list[str]:
    """The queue limits refusals taught (`reconciler state forget-limit`), per provider and model;
    where the Provider declares one, that one, which admission uses."""
    return [
        "Queue limit "
        + queue_limit_words(
            provider,
            model,
            learning,
            congestion_share(learning, now),
            declared_limit((provider, model), desired or {}),
        )
        for provider, models in sorted(state.queue.learnt.items())
        for model, learning in sorted(models.items())
    ]


def status_cell(view: StatusView, name: str) -> str:
    """The job's status; a suspended job says so, with where its batches got to (`suspended
    (cancelled)`: the figures beside it are what its run did before it was stopped)."""
    job = view.state.jobs.get(name)
    status = job.status if job is not None else "none"
    wanted = (view.desired or {}).get(name)
    if wanted is None or not wanted.suspend:
        return status
    return "suspended" if status == "none" else f"suspended ({status})"


def sync(view: StatusView, name: str) -> str:
    """`in sync`, `out of sync: …` or `unknown`: the recorded generation against the spec's."""
    return job_sync(name, view.state.jobs.get(name), view.desired, bool(view.problems)).value


def results_cell(view: StatusView, name: str, job: JobState) -> str:
    results = job.results
    if results is None:
        return "-"
    shown = Path(results.path).as_posix()
    wanted = (view.desired or {}).get(name)
    problem = _results_problem(wanted, job, view.repo_root)
    if problem is None:
        return shown
    return f"{shown} LOST ({problem})" if results.lost else f"{shown} ({problem})"


def _results_problem(wanted: DesiredJob | None, job: JobState, repo_root: Path) -> str | None:
    assert job.results is not None
    if wanted is not None and wanted.results_path:
        problem = results_problem(wanted, job, repo_root)
        return None if problem is None else problem.removeprefix("is ").removeprefix("has ")
    return None if recorded_location(job.results, repo_root).is_file() else "missing"


def invalid_lines(view: StatusView) -> list[str]:
    if not view.problems:
        return []
    return ["", f"Invalid specs ({len(view.problems)}): their jobs' sync is unknown until they validate"] + [
        f"  {line}" for line in view.problems
    ]


def first_errors(job: JobState) -> list[str]:
    lines: list[str] = []
    for batch in job.batches:
        for error in ((batch.errors or {}).get("data") or [])[:MAX_ERRORS_SHOWN]:
            if isinstance(error, dict):
                line = f" line {error['line']}" if error.get("line") else ""
                lines.append(f"{batch.batch_id}{line}: {error.get('code')}: {error.get('message')}")
    return lines


def status_json(state: State, jobs: tuple[str, ...] = ()) -> str:
    if jobs:
        state = state.model_copy(update={"jobs": {n: j for n, j in state.jobs.items() if n in jobs}})
    document: dict[str, Any] = state.model_dump(mode="json")
    return json.dumps(document, indent=2, sort_keys=True)


BATCH_COLUMNS = ("BATCH", "PART", "ATTEMPT", "STATUS", "DONE/FAILED/TOTAL", "OUTPUT", "ERRORS")


def status_detail(view: StatusView, name: str, now: float) -> str:
    job = view.state.jobs.get(name)
    if job is None:
        check_names(view, (name,))  # outside --target, or unknown
        return f"{name}: {status_cell(view, name)}, no batch yet ({sync(view, name)})"
    figures = job_progress(job, now)
    lines = [
        f"{name}: {status_cell(view, name)}, {sync(view, name)}",
        f"  provider     {job.provider}, generation {job.generation}",
        f"  observed     {job.observed_at or '-'}",
        f"  requests     {figures.done - figures.failed} done, {figures.failed} failed, "
        f"{figures.total} total",
    ]
    if job.reused and job.reuse is not None:
        source = f", most from run {job.reuse.from_run}" if job.reuse.from_run else ""
        lines.append(
            f"  reused       {job.reused:,} of {job.reuse.requests:,} answered by earlier runs{source}"
        )
    if figures.per_minute is not None:
        eta = duration(figures.eta_seconds) if figures.eta_seconds is not None else "-"
        lines.append(f"  rate         {figures.per_minute:,.0f} requests/min, about {eta} to go")
    if job.results is not None:
        lines.append(f"  results      {results_cell(view, name, job)}, sha256 {job.results.sha256}")
        if job.results.lost:
            lines.append(f"  results lost {job.results.lost}")
    lines += [f"  pending      create {p.attempt} (part {p.part}, attempt {p.retry})" for p in job.pending]
    lines += [f"  {line}" for line in queue_lines(view.state, name, now)]
    lines += ["", *_batch_table(job)] if job.batches else []
    lines += [f"  {line}" for line in first_errors(job)]
    lines += ["", *history_table(job)]
    return "\n".join(lines)


def _batch_table(job: JobState) -> list[str]:
    rows = [_batch_row(b, set(job.deleted_files)) for b in job.batches]
    widths = [max(len(r[i]) for r in [BATCH_COLUMNS, *rows]) for i in range(len(BATCH_COLUMNS))]
    return [
        "  " + "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
        for r in [BATCH_COLUMNS, *rows]
    ]


def _batch_row(batch: BatchRecord, deleted: set[str]) -> tuple[str, ...]:
    counts = batch.request_counts or {}
    return (
        batch.batch_id,
        str(batch.part),
        str(batch.retry),
        batch.status,
        f"{counts.get('completed', 0)}/{counts.get('failed', 0)}/{counts.get('total', 0)}",
        file_cell(batch.output_file_id, deleted),
        file_cell(batch.error_file_id, deleted),
    )


def file_cell(file_id: str | None, deleted: set[str]) -> str:
    if not file_id:
        return "-"
    return f"{file_id} (deleted)" if file_id in deleted else file_id


HISTORY_COLUMNS = ("RUN", "STATUS", "DONE/FAILED/TOTAL", "STARTED", "ENDED", "BATCHES", "RESULTS", "COST")


def history_table(job: JobState) -> list[str]:
    """The job's runs, newest first."""
    if not job.history:
        return ["No runs recorded yet."]
    rows = [
        (
            record.run
            + (" (current)" if record.run == job.run and record.generation == job.generation else ""),
            record.status,
            _counts(record.request_counts) + reused_note(record.reused),
            _when(record.started_at),
            _when(record.ended_at),
            str(len(record.batches)),
            _run_results(record),
            usd(record.cost_usd) if record.cost_usd is not None else "-",
        )
        for record in job.history
    ]
    widths = [max(len(r[i]) for r in [HISTORY_COLUMNS, *rows]) for i in range(len(HISTORY_COLUMNS))]
    lines = ["Runs (newest first, at most the spec's history_limit):"]
    for row in [HISTORY_COLUMNS, *rows]:
        lines.append("  " + "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    return lines


def _run_results(record: RunRecord) -> str:
    if record.results_overwritten_by is not None:
        return f"overwritten by run {record.results_overwritten_by}"
    return record.results or "-"


def _counts(counts: dict[str, int]) -> str:
    return f"{counts.get('completed', 0)}/{counts.get('failed', 0)}/{counts.get('total', 0)}"


def _when(stamp: int | None) -> str:
    if stamp is None:
        return "-"
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(stamp))
