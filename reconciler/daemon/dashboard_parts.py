"""The pieces of the dashboard: the stylesheet, the page around a fragment, bars, times.

Every text that came from a server, a spec or the state goes through `esc`.
"""

from __future__ import annotations

import html
import time

from reconciler.api.batch import is_terminal
from reconciler.state.model import JobState

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
