"""The state file as a table (`reconciler status`), one job in detail, and as JSON."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import click

from reconciler.cli.render_usage import usage_cells, usage_lines
from reconciler.cli.status_view import StatusView
from reconciler.engine.results import recorded_location, results_problem
from reconciler.plans.changes import DesiredJob
from reconciler.plans.status import duration, job_progress, parse_time
from reconciler.state.model import JobState, State

STATUS_COLOURS = {
    "completed": "green",
    "failed": "red",
    "expired": "red",
    "cancelled": "yellow",
    "cancelling": "yellow",
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
        if colour and row[1] in STATUS_COLOURS:
            cells[1] = click.style(cells[1], fg=STATUS_COLOURS[row[1]])
        lines.append("  ".join(cells).rstrip())
        job = view.state.jobs.get(name)
        lines.extend(f"    {line}" for line in (first_errors(job) if job else []))
    lines += invalid_lines(view)
    if not view.state.jobs:
        lines += ["", "No jobs in the state yet: run `reconciler plan`, then `reconciler apply`."]
    return "\n".join(lines + usage_lines(view.state))


def _row(view: StatusView, name: str, now: float) -> tuple[str, ...]:
    job = view.state.jobs.get(name)
    if job is None:
        return (name, "none", sync(view, name), "-", "-", "-", "0", "-", "-", "-", "-")
    figures = job_progress(job, now)
    observed = parse_time(job.observed_at)
    batches = str(len(job.batches)) + (f" +{len(job.pending)} pending" if job.pending else "")
    return (
        name,
        job.status,
        sync(view, name),
        f"{figures.done - figures.failed}/{figures.failed}/{figures.total}",
        f"{figures.per_minute:,.0f}/min" if figures.per_minute is not None else "-",
        duration(figures.eta_seconds) if figures.eta_seconds is not None else "-",
        batches,
        f"{duration(now - observed)} ago" if observed is not None else "-",
        results_cell(view, name, job),
        *usage_cells(job),
    )


def sync(view: StatusView, name: str) -> str:
    """`in sync`, `out of sync: …` or `unknown`: the recorded generation against the spec's."""
    job = view.state.jobs.get(name)
    if view.desired is None:
        return "unknown"
    wanted = view.desired.get(name)
    if wanted is None:
        return "unknown: spec invalid" if view.problems else "out of sync: spec removed"
    if job is None or job.status == "none":
        return "out of sync: not created"
    if job.generation != wanted.generation or job.provider != wanted.provider:
        return "out of sync: spec changed"
    return "in sync"


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
