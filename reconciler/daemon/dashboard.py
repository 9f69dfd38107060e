"""`GET /` and `GET /jobs/<name>`: the state of every job at a glance, server-rendered.

Read-only by construction: it renders the loop's last snapshot (board.py) and has no route
that changes anything.  Here the figures are worked out — bars, times, a job's runs (the
current one, the next scheduled slot at render time, its history), its sync with its spec and
what its current run cost — into plain values; the markup is in `templates/` (Jinja2).

Every template is autoescaped, whatever its name: a name, an error or a path from a spec, the
state or a server is always text, in an element or in an attribute.  Nothing is exempted from
escaping (tests/test_daemon_web.py checks the sources for it); the page takes its fragment by
`include`, not as a string.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import quote

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from reconciler.api.batch import is_terminal
from reconciler.common.usage import usd
from reconciler.daemon.board import Snapshot
from reconciler.engine import clock
from reconciler.engine.clock import slots_at
from reconciler.engine.events import describe
from reconciler.plans.changes import Slot
from reconciler.plans.jobstatus import Sync, job_sync, reused_note
from reconciler.plans.runs import shown_run, slot_run
from reconciler.plans.wording import ordinal
from reconciler.state.model import BatchRecord, JobState, QueuePlace, RunRecord

TEMPLATES = Environment(
    loader=PackageLoader("reconciler.daemon", "templates"),
    autoescape=select_autoescape(enabled_extensions=("html",), default_for_string=True, default=True),
    undefined=StrictUndefined,  # a name the template misspells fails the test, never renders empty
    trim_blocks=True,
    lstrip_blocks=True,
)
GONE = "<p>This job is no longer in the state.</p>"  # what a job page's stream shows once it is
MAX_ERRORS_SHOWN = 50
MAX_BATCH_ERRORS_SHOWN = 3
NONE = "—"


@dataclass(frozen=True)
class Moment:
    """`<time title="14:02:07">3m ago</time>`."""

    stamp: str
    relative: str


@dataclass(frozen=True)
class Bar:
    status: str
    done: int
    total: int
    failed: int
    reused: int = 0  # answered by earlier runs (spec.reuse): not in done or total, which count what was sent

    @property
    def reused_note(self) -> str:
        return reused_note(self.reused)

    @property
    def share(self) -> str:
        """The filled width, in percent."""
        return f"{100.0 * self.done / self.total if self.total else 0.0:.2f}"


@dataclass(frozen=True)
class PassLine:
    number: int
    at: Moment
    result: str
    next_at: Moment | None  # None: the next pass waits for a change
    webhooks: tuple[str, ...]
    up: str


@dataclass(frozen=True)
class Shared:
    """What every page shows: the repo, the last pass, the errors."""

    repo: str
    named_from: str
    owner_tag: str
    version: int
    last_pass: PassLine | None
    errors: tuple[str, ...]


@dataclass(frozen=True)
class JobRow:
    name: str
    link: str | None  # None: in the specs, not in the state yet
    status: str
    sync: str
    sync_class: str
    bar: Bar
    eta: str
    run: str
    next_run: str
    batches: int
    observed: str
    cost: str


@dataclass(frozen=True)
class BatchRow:
    batch_id: str
    part: int
    retry: int
    status: str
    counts: str
    errors: tuple[str, ...]  # the server's first few, `line 2: invalid_json_line: …`


@dataclass(frozen=True)
class RunRow:
    run: str
    status: str
    counts: str
    started: str
    ended: str
    cost: str


@dataclass(frozen=True)
class JobView:
    row: JobRow
    provider: str
    generation: str
    summary: str
    results: str | None
    labels: tuple[tuple[str, str], ...]
    batches: tuple[BatchRow, ...]
    runs: tuple[RunRow, ...]


def overview(snap: Snapshot, nonce: str | None = None) -> str:
    """The page of every job; without a nonce, only the fragment an event carries."""
    now = time.time()
    jobs = snap.state.jobs if snap.state else {}
    names = sorted(set(jobs) | set(snap.specced or {}))
    tally = sorted(Counter(job.status for job in jobs.values()).items())
    return _render(
        "overview.html",
        nonce,
        shared=shared(snap, now),
        title=f"reconciler · {_repo(snap)[0]}",
        rows=[job_row(snap, name, jobs.get(name), now) for name in names],
        recorded=len(jobs),
        tally=tally,
        notifications=snap.notifications,
    )


def job_page(snap: Snapshot, name: str, nonce: str | None = None) -> str | None:
    """One job's page (or its fragment); None when the state has no such job."""
    job = snap.state.jobs.get(name) if snap.state else None
    if job is None:
        return None
    now = time.time()
    view = JobView(
        row=job_row(snap, name, job, now),
        provider=job.provider,
        generation=job.generation,
        summary=describe(job),
        results=job.results.path if job.results else None,
        labels=tuple(sorted(snap.labels.get(name, {}).items())),
        batches=tuple(_batch_row(batch) for batch in job.batches),
        runs=tuple(_run_row(record) for record in job.history),
    )
    return _render("job.html", nonce, shared=shared(snap, now), title=f"{name} · reconciler", job=view)


def _render(fragment: str, nonce: str | None, **context: object) -> str:
    """The fragment alone, or the whole page around it (which includes it by name)."""
    template = TEMPLATES.get_template("page.html" if nonce else fragment)
    return template.render(fragment=fragment, nonce=nonce, **context)


def shared(snap: Snapshot, now: float) -> Shared:
    errors = list(snap.problems) + list(snap.last_pass.errors if snap.last_pass else ())
    repo, named_from = _repo(snap)
    return Shared(
        repo=repo,
        named_from=named_from,
        owner_tag=(snap.state.owner or "") if snap.state else "",
        version=snap.version,
        last_pass=_pass_line(snap, now),
        errors=tuple(errors[:MAX_ERRORS_SHOWN]),
    )


def _repo(snap: Snapshot) -> tuple[str, str]:
    if snap.repo is None:
        return "starting", "the daemon, still starting"
    return snap.repo.name, snap.repo.source


def job_row(snap: Snapshot, name: str, job: JobState | None, now: float) -> JobRow:
    sync = job_sync(name, job, snap.specced, bool(snap.problems))
    schedule = snap.schedules.get(name)
    shown = job or JobState(generation="", provider="", status="none")
    place = snap.state.queue.places.get(name) if snap.state is not None else None
    return JobRow(
        name=name,
        link=f"/jobs/{quote(name, safe='')}" if job else None,
        status=queued_status(shown.status, place),
        sync=sync.value,
        sync_class=_sync_class(sync),
        bar=progress(shown),
        eta=queued_start(place, now) if place is not None and shown.status == "queued" else eta(shown, now),
        run=run_shown(shown, schedule),
        next_run=next_run(schedule),
        batches=len(shown.batches),
        observed=shown.observed_at or NONE,
        cost=cost(shown),
    )


def queued_status(status: str, place: QueuePlace | None) -> str:
    """`queued (2nd)`: a queued job with its place in its model's queue (plans/admission.py)."""
    if status != "queued" or place is None:
        return status
    return f"queued ({ordinal(place.position)})" if not place.never_fits else "queued (never fits)"


def queued_start(place: QueuePlace, now: float) -> str:
    """A queued job's estimated start: `starts ~3m`; `—` until a running batch shows progress."""
    if place.estimated_start is None:
        return NONE
    return "starts ~" + duration(place.estimated_start - now)


def _sync_class(sync: Sync) -> str:
    if sync is Sync.IN_SYNC:
        return "in-sync"
    return "unknown" if sync in (Sync.UNKNOWN, Sync.SPEC_INVALID) else "out-of-sync"


def progress(job: JobState) -> Bar:
    counts = job.request_counts
    done, total = counts.get("completed", 0), counts.get("total", 0)
    return Bar(job.status, done, total, counts.get("failed", 0), job.reused)


def cost(job: JobState) -> str:
    """The current run's cost, as `status` shows it: `—` before one of its batches has finished,
    `no price` without one, `≥` while some output could not be read (the figure falls short)."""
    if not job.usage:
        return NONE
    amount = job.cost_usd
    if amount is None:
        return "no price"
    return f"≥{usd(amount)}" if job.total_usage.unread else usd(amount)


def eta(job: JobState, now: float) -> str:
    """`~2m` from the pace so far of the batches still running; `—` without one."""
    running = [b for b in job.batches if not is_terminal(b.status) and b.created_at]
    counts = [b.request_counts or {} for b in running]
    done = sum(c.get("completed", 0) + c.get("failed", 0) for c in counts)
    left = sum(c.get("total", 0) for c in counts) - done
    if not running or done <= 0 or left <= 0:
        return NONE
    elapsed = now - min(b.created_at or now for b in running)
    return "~" + duration(left * elapsed / done)


def duration(seconds: float) -> str:
    seconds = max(0, int(seconds))
    if seconds < 90:
        return f"{seconds}s"
    if seconds < 90 * 60:
        return f"{round(seconds / 60)}m"
    return f"{seconds // 3600}h {seconds % 3600 // 60}m"


def when(timestamp: float, now: float) -> Moment:
    delta = now - timestamp
    relative = f"{duration(delta)} ago" if delta >= 0 else f"in {duration(-delta)}"
    return Moment(time.strftime("%H:%M:%S", time.localtime(timestamp)), relative)


def run_shown(job: JobState, schedule: Slot | None) -> str:
    return shown_run(job.run, schedule.timezone if schedule else "UTC") if job.run else NONE


def next_run(schedule: Slot | None) -> str:
    """The next slot of a schedule as of now, in its time zone; `—` for an unscheduled job."""
    if schedule is None:
        return NONE
    upcoming = slots_at(schedule, clock.now()).next
    return shown_run(slot_run(upcoming), schedule.timezone) if upcoming else "no later slot"


def _batch_row(batch: BatchRecord) -> BatchRow:
    got = batch.request_counts or {}
    failed = f", {got['failed']} failed" if got.get("failed") else ""
    return BatchRow(
        batch.batch_id,
        batch.part,
        batch.retry,
        batch.status,
        f"{got.get('completed', 0)}/{got.get('total', 0)}{failed}",
        _batch_errors(batch),
    )


def _batch_errors(batch: BatchRecord) -> tuple[str, ...]:
    found = [e for e in (batch.errors or {}).get("data") or [] if isinstance(e, dict)]
    return tuple(
        (f"line {error['line']}: " if error.get("line") else "")
        + f"{error.get('code')}: {error.get('message')}"
        for error in found[:MAX_BATCH_ERRORS_SHOWN]
    )


def _run_row(record: RunRecord) -> RunRow:
    counts: Mapping[str, int] = record.request_counts
    return RunRow(
        run=record.run,
        status=record.status,
        counts=f"{counts.get('completed', 0)}/{counts.get('total', 0)}" + reused_note(record.reused),
        started=_stamp(record.started_at),
        ended=_stamp(record.ended_at),
        cost=usd(record.cost_usd) if record.cost_usd is not None else NONE,
    )


def _stamp(unix: int | None) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(unix)) if unix is not None else NONE


def _pass_line(snap: Snapshot, now: float) -> PassLine | None:
    last = snap.last_pass
    if last is None:
        return None
    return PassLine(
        number=last.number,
        at=when(last.at, now),
        result=last.result,
        next_at=when(snap.next_pass_at, now) if snap.next_pass_at else None,
        webhooks=snap.webhooks,
        up=duration(now - snap.started),
    )
