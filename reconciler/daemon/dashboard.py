"""`GET /` and `GET /jobs/<name>`: the state of every job at a glance, server-rendered.

Read-only by construction: it renders the loop's last snapshot (board.py) and has no route
that changes anything.  The pieces: the stylesheet, the page around a fragment, bars, times;
a job's runs (the current one, the next scheduled slot, worked out at render time, and its run
history).  Every text that came from a server, a spec or the state goes through `esc`.
"""

from __future__ import annotations

import html
import time
from collections import Counter
from urllib.parse import quote

from reconciler.api.batch import is_terminal
from reconciler.daemon.board import Snapshot
from reconciler.engine import clock
from reconciler.engine.clock import slots_at
from reconciler.engine.events import describe
from reconciler.plans.changes import Slot
from reconciler.plans.runs import shown_run, slot_run
from reconciler.state.model import JobState, RunRecord

STYLE = """
:root{color-scheme:light dark;--ok:#1a7f37;--bad:#cf222e;--run:#0969da;--mute:#6e7781}
body{font:14px/1.45 system-ui,sans-serif;margin:0 auto;max-width:72rem;padding:1rem}
h1{font-size:1.25rem;margin:0 0 .5rem}h2{font-size:1rem;margin:1.25rem 0 .5rem}
table{border-collapse:collapse;width:100%}th,td{text-align:left;padding:.4rem .5rem;vertical-align:top}
tr+tr td,thead+tbody td{border-top:1px solid #8884}th{font-weight:600;color:var(--mute)}
.scroll{overflow-x:auto}.mute{color:var(--mute)}.errors{color:var(--bad)}
.status{font-weight:600}.completed{color:var(--ok)}.failed,.expired{color:var(--bad)}
.in_progress,.validating,.finalizing,.pending,.collecting{color:var(--run)}
.bar{background:#8883;border-radius:4px;height:.6rem;min-width:6rem;overflow:hidden}
.fill{background:var(--run);height:100%}.completed .fill{background:var(--ok)}
code{font-size:.9em;word-break:break-all}
@media (max-width:40rem){body{padding:.5rem}td,th{padding:.3rem}.wide{display:none}}
"""

SCRIPT = """
const since = document.body.dataset.version;
const source = new EventSource(location.pathname.replace(/\\/$/, "") + "/events?since=" + since);
source.onmessage = (event) => { document.getElementById("board").innerHTML = event.data; };
"""


def esc(value: object) -> str:
    return html.escape(str(value), quote=True)


def page(title: str, fragment: str, version: int, nonce: str) -> str:
    return (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        '<meta name=viewport content="width=device-width,initial-scale=1">'
        f"<title>{esc(title)}</title><style>{STYLE}</style>"
        "<noscript><meta http-equiv=refresh content=10></noscript></head>"
        f'<body data-version="{version}"><main id=board>{fragment}</main>'
        f'<script nonce="{nonce}">{SCRIPT}</script></body></html>'
    )


def progress(job: JobState) -> str:
    counts = job.request_counts
    done, total = counts.get("completed", 0), counts.get("total", 0)
    share = 100.0 * done / total if total else 0.0
    failed = f' <span class="errors">{counts["failed"]} failed</span>' if counts.get("failed") else ""
    return (
        f'<div class="bar {esc(job.status)}" role=progressbar aria-valuemin=0 aria-valuemax="{total}" '
        f'aria-valuenow="{done}" data-done="{done}" data-total="{total}">'
        f'<div class=fill style="width:{share:.2f}%"></div></div>'
        f"<span class=counts>{done}/{total}</span>{failed}"
    )


def eta(job: JobState, now: float) -> str:
    """`~2m` from the pace so far of the batches still running; `—` without one."""
    running = [b for b in job.batches if not is_terminal(b.status) and b.created_at]
    counts = [b.request_counts or {} for b in running]
    done = sum(c.get("completed", 0) + c.get("failed", 0) for c in counts)
    left = sum(c.get("total", 0) for c in counts) - done
    if not running or done <= 0 or left <= 0:
        return "—"
    elapsed = now - min(b.created_at or now for b in running)
    return "~" + duration(left * elapsed / done)


def duration(seconds: float) -> str:
    seconds = max(0, int(seconds))
    if seconds < 90:
        return f"{seconds}s"
    if seconds < 90 * 60:
        return f"{round(seconds / 60)}m"
    return f"{seconds // 3600}h {seconds % 3600 // 60}m"


def when(timestamp: float | None, now: float | None = None) -> str:
    if timestamp is None:
        return "—"
    stamp = time.strftime("%H:%M:%S", time.localtime(timestamp))
    delta = (now or time.time()) - timestamp
    relative = f"{duration(delta)} ago" if delta >= 0 else f"in {duration(-delta)}"
    return f'<time title="{esc(stamp)}">{esc(relative)}</time>'


def status(value: str) -> str:
    return f'<span class="status {esc(value)}">{esc(value)}</span>'


def run_shown(job: JobState, schedule: Slot | None) -> str:
    return shown_run(job.run, schedule.timezone if schedule else "UTC") if job.run else "—"


def next_run(schedule: Slot | None) -> str:
    """The next slot of a schedule as of now, in its time zone; `—` for an unscheduled job."""
    if schedule is None:
        return "—"
    upcoming = slots_at(schedule, clock.now()).next
    return shown_run(slot_run(upcoming), schedule.timezone) if upcoming else "no later slot"


def runs_table(job: JobState) -> str:
    if not job.history:
        return ""
    rows = "".join(_run_row(record) for record in job.history)
    return (
        "<h2>Runs</h2><div class=scroll><table><thead><tr><th>Run</th><th>Status</th><th>Requests</th>"
        f"<th class=wide>Started</th><th class=wide>Ended</th><th>Cost</th></tr></thead><tbody>{rows}</tbody>"
        "</table></div>"
    )


def _run_row(record: RunRecord) -> str:
    counts = record.request_counts
    done = f"{counts.get('completed', 0)}/{counts.get('total', 0)}"
    cost = f"${record.cost_usd:.6g}" if record.cost_usd is not None else "—"
    return (
        f"<tr><td>{esc(record.run)}</td><td>{status(record.status)}</td><td>{esc(done)}</td>"
        f"<td class=wide>{esc(_stamp(record.started_at))}</td>"
        f"<td class=wide>{esc(_stamp(record.ended_at))}</td>"
        f"<td>{esc(cost)}</td></tr>"
    )


def _stamp(unix: int | None) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(unix)) if unix is not None else "—"


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
