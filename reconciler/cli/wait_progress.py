"""Per-job progress while `reconcile --wait` waits: a live bar on a terminal, plain lines otherwise.

The bar is rich's; off a terminal (CI logs, pipes) a line is printed when a job has moved by
a tenth of its requests, or a minute has passed while it moves, so a 50,000-request job
logs a dozen lines, not one per poll.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from types import TracebackType
from typing import TYPE_CHECKING

from reconciler.api.batch import is_terminal
from reconciler.engine.events import EventLog
from reconciler.plans.jobstatus import Progress as Figures
from reconciler.plans.jobstatus import duration, job_progress
from reconciler.state.model import State

if TYPE_CHECKING:
    from rich.progress import Progress, TaskID

PLAIN_STEP = 0.1  # of a job's requests, between two plain lines
PLAIN_EVERY_SECONDS = 60.0  # at least this often while a job moves


def describe(figures: Figures) -> str:
    """`1,200/50,000 requests (2%), 1,100/min, about 44m to go`."""
    share = f" ({figures.done * 100 // figures.total}%)" if figures.total else ""
    return ", ".join([f"{figures.done:,}/{figures.total:,} requests{share}", *pace(figures)])


def pace(figures: Figures) -> list[str]:
    """`1,100/min`, `about 44m to go`: what is known of them."""
    parts = [f"{figures.per_minute:,.0f}/min"] if figures.per_minute is not None else []
    if figures.eta_seconds is not None:
        parts.append(f"about {duration(figures.eta_seconds)} to go")
    return parts


class WaitProgress:
    """`update(state)` after every pass; a context manager so the live bar is always closed."""

    def __init__(self, log: EventLog, *, live: bool) -> None:
        self._log = log
        self._bar = _bar() if live else None
        self._tasks: dict[str, TaskID] = {}
        self._last: dict[str, tuple[int, float]] = {}  # job → (done, when) of its last plain line

    def __enter__(self) -> WaitProgress:
        if self._bar is not None:
            self._bar.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._bar is not None:
            self._bar.stop()

    def update(self, state: State, jobs: Iterable[str]) -> None:
        now = time.time()
        for name in jobs:
            job = state.jobs.get(name)
            if job is None or job.status == "none":
                continue
            figures = job_progress(job, now)
            if self._bar is not None:
                self._show_bar(name, figures, job.status)
            elif figures.total and not is_terminal(job.status) and self._plain_due(name, figures, now):
                self._log.info("progress", f"{name}: {describe(figures)}", job=name, done=figures.done)

    def _show_bar(self, name: str, figures: Figures, status: str) -> None:
        assert self._bar is not None
        if name not in self._tasks:
            self._tasks[name] = self._bar.add_task(name, total=None, figures="", status=status)
        self._bar.update(
            self._tasks[name],
            total=figures.total or None,
            completed=figures.done,
            status=status,
            figures=", ".join(pace(figures)),
        )

    def _plain_due(self, name: str, figures: Figures, now: float) -> bool:
        done, total = figures.done, figures.total
        last_done, last_when = self._last.get(name, (-1, 0.0))
        moved = done != last_done
        due = (
            last_done < 0
            or done - last_done >= max(total * PLAIN_STEP, 1)
            or now - last_when >= PLAIN_EVERY_SECONDS
        )
        if moved and due:
            self._last[name] = (done, now)
            return True
        return False


def _bar() -> Progress:
    # rich only for a live bar: every other `reconcile` is ~40 ms quicker to start without it
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    return Progress(
        TextColumn("{task.description}"),
        TextColumn("{task.fields[status]}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[figures]}"),
        console=Console(),
        refresh_per_second=4,
        redirect_stdout=True,
        redirect_stderr=True,
    )
