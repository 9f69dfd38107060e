"""Plans shown and kept, and what apply did: plans as text, JSON and Markdown (reasons in words
from plans/wording.py); saved plan files (`plan --out FILE` writes one, `apply FILE` reads it,
plans/plan_document.py checks it); how apply and reconcile tell the user what they did (one
line per failure or change refused over its budget, one summary); and how far the jobs have
got while `reconcile --wait` waits.  Colour only on a terminal, and never with NO_COLOR.

Progress while waiting (`WaitProgress`): a live bar (rich's) on a terminal; off a terminal (CI
logs, pipes) a line when a job has moved by a tenth of its requests, or a minute has passed
while it moves, so a 50,000-request job logs a dozen lines, not one per poll.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, TextIO

import click

from reconciler.api.batch import is_terminal
from reconciler.common import fileops
from reconciler.common.errors import UserError
from reconciler.engine.apply.effects import Outcome
from reconciler.engine.apply.failures import Failure, describe
from reconciler.engine.events import EventLog
from reconciler.plans.changes import STALE_PRICE_DAYS, SYMBOLS, Action, Change, Plan
from reconciler.plans.cost import plan_total
from reconciler.plans.jobstatus import Progress as Figures
from reconciler.plans.jobstatus import duration, job_progress
from reconciler.plans.plan_document import checked_document, plan_document
from reconciler.plans.wording import (
    budget_warning,
    change_words,
    cost_text,
    out_of_sync,
    over_budget_lines,
    over_budget_words,
    queued_words,
    saved_text,
    upcoming_words,
)
from reconciler.state.model import State

if TYPE_CHECKING:
    from rich.progress import Progress, TaskID

COLOURS = {
    Action.CREATE: "green",
    Action.REPLACE: "yellow",
    Action.RETRY: "green",
    Action.RESUME: "green",
    Action.CANCEL: "red",
    Action.ADOPT: "cyan",
    Action.DEDUPE: "bright_red",
    Action.FORGET: "magenta",
}


def use_colour(stream: TextIO | None = None) -> bool:
    stream = stream or sys.stdout
    return "NO_COLOR" not in os.environ and stream.isatty()


def plan_text(plan: Plan, *, colour: bool, verbose: bool = False) -> str:
    shown = plan.changes if verbose else [c for c in plan.changes if c.mutates or c.attention]
    width = max((len(c.job) for c in shown), default=0)
    lines = []
    for change in shown:
        lines.append(_change_line(change, width, colour))
        if change.over_budget:
            lines.append(_warn(f"  ! over budget: {over_budget_words(change.over_budget)}", colour))
        if change.queued and change.action is not Action.NOOP:  # some parts go now, the rest wait
            lines.append(f"  {queued_words(change.queued)}")
    lines += [f"! {note}" for note in plan.notes]
    lines.append(summary_line(plan))
    lines += [f"Launches {line}" for line in launch_lines(plan)]
    lines += [f"Next run of {c.job}: {upcoming_words(c.next_run)}" for c in plan.changes if c.next_run]
    lines += cost_lines(plan) + price_lines(plan)
    lines += [_warn(f"! {line}", colour) for line in _plan_warnings(plan) + stale_price_lines(plan)]
    return "\n".join(lines)


def cost_lines(plan: Plan) -> list[str]:
    total = plan_total(plan)
    return [f"Cost: {cost_text(total)}"] if total else []


def price_lines(plan: Plan) -> list[str]:
    """Where the estimate's prices came from, when from the shipped table: its date."""
    return [
        f"Prices of {', '.join(used.models)}: the shipped price table, taken {used.taken.isoformat()}"
        for used in plan.table_prices
    ]


def stale_price_lines(plan: Plan) -> list[str]:
    return [
        f"the shipped prices of {', '.join(used.models)} were taken {used.taken.isoformat()}, "
        f"{used.age_days} days ago (over {STALE_PRICE_DAYS}): check them on the provider's pricing "
        "page, or set pricing: in the Provider"
        for used in plan.table_prices
        if used.stale
    ]


def _plan_warnings(plan: Plan) -> list[str]:
    """What apply will leave out (each change's budget is shown under it), then runs past theirs."""
    over = sorted({c.job for c in plan.pending if c.over_budget})
    refusal = (
        [
            f"apply will refuse {plural(len(over), 'change')} over budget ({', '.join(over)}) and "
            f"carry out the rest; --allow-over-budget sends {'them' if len(over) > 1 else 'it'} too"
        ]
        if over
        else []
    )
    return refusal + [budget_warning(w) for w in plan.warnings]


def _warn(line: str, colour: bool) -> str:
    return click.style(line, fg="red", bold=True) if colour else line


def launch_lines(plan: Plan) -> list[str]:
    """Per model, what the plan would send: a reviewer sees the size of what a merge launches."""
    per_model: dict[str, list[int]] = {}
    for change in plan.pending:
        if change.launch_requests:
            totals = per_model.setdefault(change.model or "unknown model", [0, 0])
            totals[0] += change.launch_requests
            totals[1] += change.launch_tokens
    return [
        f"{model}: {plural(requests, 'request')}, ~{tokens:,} input tokens"
        for model, (requests, tokens) in sorted(per_model.items())
    ]


def _change_line(change: Change, width: int, colour: bool) -> str:
    symbol, fg = SYMBOLS[change.action], COLOURS.get(change.action)
    head = f"{symbol} {change.action.value:<7} {change.job:<{width}}"
    if colour and fg:
        head = click.style(head, fg=fg)
    cost = f", {cost_text(change.estimate)}" if change.estimate else ""
    saved = f"; {saved_text(change.saved)}" if change.saved else ""
    size = (
        f"  [{change.model}, ~{change.launch_tokens:,} input tokens{cost}{saved}]"
        if change.launch_requests
        else (f"  [{saved[2:]}]" if saved else "")
    )
    return f"{head}  {change_words(change)}{size}"


def summary_line(plan: Plan) -> str:
    """`Plan: 1 to create; 2 unchanged.` or `No changes: 3 jobs in sync.`; a job left unchanged
    while not in sync with its spec is counted apart, with what holds it back."""
    counts = Counter(c.action for c in plan.changes)
    gaps = Counter(gap for c in plan.changes if (gap := out_of_sync(c)))
    behind = sum(gaps.values())
    if behind == 1:
        apart = f"; 1 out of sync: {next(iter(gaps))}"
    else:
        apart = f"; {behind} out of sync: " + ", ".join(f"{n} {gap}" for gap, n in sorted(gaps.items()))
    apart = apart if behind else ""
    if not plan.pending:
        return f"No changes: {plural(counts[Action.NOOP] - behind, 'job')} in sync{apart}."
    parts = [f"{counts[a]} to {a.value}" for a in Action if a is not Action.NOOP and counts[a]]
    return f"Plan: {', '.join(parts)}; {counts[Action.NOOP]} unchanged{apart}."


def plural(count: int, noun: str) -> str:
    return f"{count} {noun}" + ("" if count == 1 else "s")


def plan_json(
    plan: Plan,
    *,
    owner_tag: str,
    lineage: str,
    targets: frozenset[str] | None = None,
    replace: frozenset[str] = frozenset(),
    stamp: str | None = None,
) -> str:
    document = plan_document(
        plan, owner_tag=owner_tag, lineage=lineage, targets=targets, replace=replace, stamp=stamp
    )
    return json.dumps(document, indent=2, sort_keys=True)


def plan_markdown(plan: Plan) -> str:
    """A pull-request comment or `$GITHUB_STEP_SUMMARY`: a table of the changes with reasons."""
    lines = ["### reconciler plan", "", summary_line(plan), ""]
    if plan.pending:
        lines += [
            "| | job | action | model | sends (requests) | est. input tokens | est. cost | reason |",
            "|---|---|---|---|---:|---:|---|---|",
        ]
        for change in plan.pending:
            symbol = SYMBOLS[change.action]
            reason = change_words(change).replace("|", "\\|")
            cost = cost_text(change.estimate) if change.estimate else "-"
            if change.over_budget:
                cost += " **! over budget**"
            lines.append(
                f"| `{symbol}` | `{change.job}` | {change.action.value} | {change.model or '-'} "
                f"| {change.launch_requests:,} | {change.launch_tokens:,} | {cost} | {reason} |"
            )
        lines += ["", *[f"Launches {line}" for line in launch_lines(plan)]]
        lines += cost_lines(plan) + price_lines(plan)
    over = [f"> **! over budget:** {reason}" for reason in over_budget_lines(plan.changes)]
    warned = [*(budget_warning(w) for w in plan.warnings), *stale_price_lines(plan)]
    lines += [*([""] if over or warned else []), *over, *[f"> **!** {w}" for w in warned]]
    if plan.notes:
        lines += ["", *[f"- {note}" for note in plan.notes]]
    return "\n".join(lines) + "\n"


def report_outcome(plan: Plan, outcome: Outcome) -> int:
    """An `error:` line per failure (every part of a job), then the summary; the exit code."""
    for failure in sorted(outcome.failures, key=_order):
        click.echo(f"error: {describe(failure)}", err=True)
    for job, over in sorted(outcome.over_budget.items()):
        click.echo(f"error: {job}: over budget, not sent: {over_budget_words(over)}", err=True)
    if outcome.over_budget:
        them = "them" if len(outcome.over_budget) > 1 else "it"
        click.echo(f"error: pass --allow-over-budget to send {them} anyway", err=True)
    failed = outcome.failed_jobs
    done = [c for c in plan.changes if c.job not in failed and c.job not in outcome.over_budget]
    adopted = sum(len(c.adopt) for c in done)
    forgotten = sum(1 for c in done if c.action is Action.FORGET)
    refused = f", {len(outcome.over_budget)} refused over budget" if outcome.over_budget else ""
    click.echo(
        f"Applied: {outcome.created} created, {outcome.cancelled} cancelled, {adopted} adopted, "
        f"{forgotten} forgotten, {len(failed)} failed{refused}; {plural(len(plan.changes), 'job')}."
    )
    return 1 if outcome.failures or outcome.over_budget else 0


def _order(failure: Failure) -> tuple[str, int, int]:
    return (failure.job or "", failure.part or 0, failure.attempt or 0)


def save_plan(
    path: str,
    plan: Plan,
    *,
    owner_tag: str,
    lineage: str,
    targets: frozenset[str] | None = None,
    replace: frozenset[str] = frozenset(),
    stamp: str | None = None,
) -> None:
    text = plan_json(
        plan, owner_tag=owner_tag, lineage=lineage, targets=targets, replace=replace, stamp=stamp
    )
    fileops.write_bytes(Path(path), (text + "\n").encode())


def load_plan(path: str) -> dict[str, Any]:
    try:
        document = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError):
        raise UserError(
            f"{path}: not a saved plan (unreadable or not JSON); save one with `plan --out`"
        ) from None
    return checked_document(document, path)


PLAIN_STEP = 0.1  # of a job's requests, between two plain lines
PLAIN_EVERY_SECONDS = 60.0  # at least this often while a job moves


def progress_text(figures: Figures) -> str:
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
                self._log.info("progress", f"{name}: {progress_text(figures)}", job=name, done=figures.done)

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
    from rich.console import Console  # rich only for a live bar: no other command pays its import
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
