"""The dashboard's runs: the current one, the next scheduled slot, and a job's run history."""

from __future__ import annotations

import time

from reconciler.daemon.dashboard_parts import esc, status
from reconciler.engine import clock
from reconciler.engine.clock import slots_at
from reconciler.plans.changes import Slot
from reconciler.plans.runs import shown_run, slot_run
from reconciler.state.model import JobState, RunRecord


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
