"""`GET /` and `GET /jobs/<name>`: the state of every job at a glance, server-rendered.

Read-only by construction: it renders the loop's last snapshot (board.py) and has no route
that changes anything.  A scheduled job's next slot is worked out at render time.
"""

from __future__ import annotations

import time
from collections import Counter
from urllib.parse import quote

from reconciler.daemon.board import Snapshot
from reconciler.daemon.dashboard_parts import duration, esc, eta, progress, status, when
from reconciler.daemon.dashboard_runs import next_run, run_shown, runs_table
from reconciler.engine.events import describe
from reconciler.plans.changes import Slot
from reconciler.state.model import JobState


def overview(snap: Snapshot) -> str:
    now = time.time()
    parts = [f"<h1>reconciler <span class=mute>· {_owner(snap)}</span></h1>", _pass_line(snap, now)]
    parts.append(_errors(snap))
    jobs = snap.state.jobs if snap.state else {}
    if not jobs:
        parts.append("<p class=mute>No jobs recorded yet.</p>")
        return "".join(parts)
    rows = "".join(_row(name, job, now, snap.schedules.get(name)) for name, job in sorted(jobs.items()))
    tally = Counter(job.status for job in jobs.values())
    counts = " · ".join(f"{n} {status(s)}" for s, n in sorted(tally.items()))
    told = f" · notifying {esc(', '.join(snap.notifications))}" if snap.notifications else ""
    parts.append(f"<p>{len(jobs)} jobs: {counts}{told}</p>")
    parts.append(
        "<div class=scroll><table><thead><tr><th>Job</th><th>Status</th><th>Progress</th><th>ETA</th>"
        "<th class=wide>Run</th><th class=wide>Next run</th><th class=wide>Batches</th>"
        "<th class=wide>Observed</th></tr></thead>"
        f"<tbody>{rows}</tbody></table></div>"
    )
    return "".join(parts)


def job_page(snap: Snapshot, name: str) -> str | None:
    job = snap.state.jobs.get(name) if snap.state else None
    if job is None:
        return None
    now = time.time()
    facts = [
        ("Status", status(job.status)),
        ("Progress", progress(job)),
        ("ETA", esc(eta(job, now))),
        ("Provider", esc(job.provider)),
        ("Generation", f"<code>{esc(job.generation)}</code>"),
        ("Run", esc(run_shown(job, snap.schedules.get(name)))),
        ("Next run", esc(next_run(snap.schedules.get(name)))),
        ("Summary", esc(describe(job))),
        ("Observed", esc(job.observed_at or "—")),
    ]
    table = "".join(f"<tr><th>{label}</th><td>{value}</td></tr>" for label, value in facts)
    batches = "".join(
        _batch_row(b.batch_id, b.part, b.retry, b.status, b.request_counts) for b in job.batches
    )
    return (
        f'<p><a href="/">← all jobs</a></p><h1>{esc(name)}</h1>{_pass_line(snap, now)}'
        f"<div class=scroll><table>{table}</table></div><h2>Batches</h2>"
        + (
            "<div class=scroll><table><thead><tr><th>Batch</th><th>Part</th><th>Attempt</th><th>Status</th>"
            f"<th>Requests</th></tr></thead><tbody>{batches}</tbody></table></div>"
            if batches
            else "<p class=mute>No batches yet.</p>"
        )
        + runs_table(job)
    )


def _row(name: str, job: JobState, now: float, schedule: Slot | None) -> str:
    link = f'<a href="/jobs/{quote(name, safe="")}">{esc(name)}</a>'
    return (
        f'<tr data-job="{esc(name)}"><td>{link}</td><td>{status(job.status)}</td><td>{progress(job)}</td>'
        f"<td>{esc(eta(job, now))}</td><td class=wide>{esc(run_shown(job, schedule))}</td>"
        f"<td class=wide>{esc(next_run(schedule))}</td><td class=wide>{len(job.batches)}</td>"
        f"<td class=wide>{esc(job.observed_at or '—')}</td></tr>"
    )


def _batch_row(batch_id: str, part: int, retry: int, state: str, counts: dict[str, int] | None) -> str:
    got = counts or {}
    shown = f"{got.get('completed', 0)}/{got.get('total', 0)}" + (
        f", {got['failed']} failed" if got.get("failed") else ""
    )
    return (
        f"<tr><td><code>{esc(batch_id)}</code></td><td>{part}</td><td>{retry}</td>"
        f"<td>{status(state)}</td><td>{esc(shown)}</td></tr>"
    )


def _pass_line(snap: Snapshot, now: float) -> str:
    last = snap.last_pass
    if last is None:
        return "<p class=mute>Waiting for the first pass…</p>"
    upcoming = f" · next {when(snap.next_pass_at, now)}" if snap.next_pass_at else " · next on a change"
    hooks = f" · webhooks from {esc(', '.join(snap.webhooks))}" if snap.webhooks else ""
    return (
        f"<p>Last pass #{last.number} {when(last.at, now)}: {status(last.result)}{upcoming}{hooks}"
        f" <span class=mute>· up {esc(duration(now - snap.started))}</span></p>"
    )


def _errors(snap: Snapshot) -> str:
    errors = list(snap.problems) + list(snap.last_pass.errors if snap.last_pass else ())
    if not errors:
        return ""
    items = "".join(f"<li>{esc(error)}</li>" for error in errors[:50])
    return f"<h2>Errors</h2><ul class=errors>{items}</ul>"


def _owner(snap: Snapshot) -> str:
    return esc(snap.state.owner or "no owner yet") if snap.state else "starting"
