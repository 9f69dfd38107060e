"""Plans shown and kept, and what apply did: plans as text, JSON and Markdown; saved plan files
(`plan --out FILE` writes one, `apply FILE` reads it, plans/plan_document.py checks it); and how
apply and reconcile tell the user what they did (one line per failure or change refused over
its budget, one summary).  Colour only on a terminal, and never with NO_COLOR.
"""

from __future__ import annotations

import json
import os
import sys
from collections import Counter
from pathlib import Path
from typing import Any, TextIO

import click

from reconciler.common import fileops
from reconciler.common.errors import UserError
from reconciler.engine.apply.effects import Outcome
from reconciler.engine.apply.failures import Failure, describe
from reconciler.plans.changes import STALE_PRICE_DAYS, SYMBOLS, Action, Change, Plan
from reconciler.plans.cost import cost_text, plan_total
from reconciler.plans.plan_document import checked_document, plan_document

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
            lines.append(_warn(f"  ! over budget: {change.over_budget}", colour))
    lines += [f"! {note}" for note in plan.notes]
    lines.append(summary_line(plan))
    lines += [f"Launches {line}" for line in launch_lines(plan)]
    lines += [f"Next run of {c.job}: {c.next_run}" for c in plan.changes if c.next_run]
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
    return refusal + list(plan.warnings)


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
    size = (
        f"  [{change.model}, ~{change.launch_tokens:,} input tokens{cost}]" if change.launch_requests else ""
    )
    return f"{head}  {change.reason}{size}"


def summary_line(plan: Plan) -> str:
    counts = Counter(c.action for c in plan.changes)
    if not plan.pending:
        return f"No changes: {plural(len(plan.changes), 'job')} in sync."
    parts = [f"{counts[a]} to {a.value}" for a in Action if a is not Action.NOOP and counts[a]]
    return f"Plan: {', '.join(parts)}; {counts[Action.NOOP]} unchanged."


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
            reason = change.reason.replace("|", "\\|")
            cost = cost_text(change.estimate) if change.estimate else "-"
            if change.over_budget:
                cost += " **! over budget**"
            lines.append(
                f"| `{symbol}` | `{change.job}` | {change.action.value} | {change.model or '-'} "
                f"| {change.launch_requests:,} | {change.launch_tokens:,} | {cost} | {reason} |"
            )
        lines += ["", *[f"Launches {line}" for line in launch_lines(plan)]]
        lines += cost_lines(plan) + price_lines(plan)
    over = [f"> **! over budget:** {reason}" for reason in plan.over_budget]
    warned = [*plan.warnings, *stale_price_lines(plan)]
    lines += [*([""] if over or warned else []), *over, *[f"> **!** {w}" for w in warned]]
    if plan.notes:
        lines += ["", *[f"- {note}" for note in plan.notes]]
    return "\n".join(lines) + "\n"


def report_outcome(plan: Plan, outcome: Outcome) -> int:
    """An `error:` line per failure (every part of a job), then the summary; the exit code."""
    for failure in sorted(outcome.failures, key=_order):
        click.echo(f"error: {describe(failure)}", err=True)
    for job, reason in sorted(outcome.over_budget.items()):
        click.echo(f"error: {job}: over budget, not sent: {reason}", err=True)
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
    document = plan_document(
        plan, owner_tag=owner_tag, lineage=lineage, targets=targets, replace=replace, stamp=stamp
    )
    fileops.write_bytes(Path(path), (json.dumps(document, indent=2, sort_keys=True) + "\n").encode())


def load_plan(path: str) -> dict[str, Any]:
    try:
        document = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError):
        raise UserError(
            f"{path}: not a saved plan (unreadable or not JSON); save one with `plan --out`"
        ) from None
    return checked_document(document, path)
