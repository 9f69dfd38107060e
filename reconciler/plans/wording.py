"""A plan in words: each reason code with its data (plans/reasons.py), each budget a change
passes and each run past its budget, as the user reads them.  The one place they become text:
`plan` (text, Markdown, the `reason` of `plan --json`), apply's and reconcile's lines, and the
daemon's log lines all call this module, and the planner never does (an import contract in
pyproject.toml), so tests assert codes and figures and one table pins these words.

    + create  nightly-eval  3 requests: no batch yet
    ~ replace nightly-eval  spec changed (model: gpt-4o-mini → gpt-4o) while batch_abc is in_progress at 4/12
      ! over budget: up to $0.0198 exceeds spec.budget.max_usd $0.01

Money is written by `common/usage.usd_each`: the amounts of one sentence never read the same
unless they are.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from reconciler.common.usage import short_count, usd, usd_each
from reconciler.plans.changes import Action, Change, CostEstimate, QueueLimit
from reconciler.plans.reasons import (
    IN_SYNC_CODES,
    Adopt,
    BudgetPassed,
    CostUnknown,
    CreateInFlight,
    Dedupe,
    EditWaits,
    InputChange,
    InSync,
    IntentLost,
    LeftToNewer,
    NextRun,
    NoBatchYet,
    NoDeletionPolicy,
    NotLive,
    Orphaned,
    OverBudget,
    PartsMissing,
    Queued,
    Reason,
    ReasonCode,
    ReplaceRequested,
    Replacing,
    Requeue,
    Restart,
    RestartWaits,
    Resume,
    Retry,
    Reused,
    RunChanged,
    ScheduledRun,
    SlotMissed,
    SlotWaits,
    SpecChanged,
    SpecDiff,
    SpecRemoved,
    Superseded,
    Suspended,
    Upcoming,
)
from reconciler.plans.runs import duration, shown_run
from reconciler.state.model import QueueLearning, QueuePlace

MAX_SHOWN_CHARS = 40
PLAN_BUDGET = "budget.max_usd_per_plan"
JOB_BUDGET = "spec.budget.max_usd"


def change_words(change: Change) -> str:
    """A change's reason as one line, with what it reuses (spec.reuse) in its size."""
    return words(change.reason, change.reused)


def words(reason: Reason, reused: Reused | None = None) -> str:
    """The reason of a change as one line; `reused`: the earlier answers its run reuses."""
    match reason:
        case NoBatchYet() | PartsMissing() | IntentLost() | NotLive():
            return _create(reason, reused)
        case SpecChanged() | RunChanged() | ScheduledRun() | ReplaceRequested():
            return _new_work(reason, reused)
        case Restart():
            return (
                f"{reason.status} (nothing ran): part {reason.part}'s {reason.requests:,} requests sent "
                f"again, restart {reason.restart} of {reason.restarts}"
            )
        case Resume():
            return f"{reason.requests:,} requests without a final answer are sent again"
        case Retry():
            return f"attempt {reason.attempt}, {reason.requests:,} requests did not succeed"
        case Requeue():
            return (
                f"part {reason.part}'s {reason.requests:,} requests were refused by the provider's queue "
                f"(enqueued {reason.kind} limit): sent again, no attempt spent"
            )
        case _:
            return _kept(reason)


def _create(reason: NoBatchYet | PartsMissing | IntentLost | NotLive, reused: Reused | None) -> str:
    match reason:
        case NoBatchYet():
            return f"{_size(reason.requests, reason.parts, reused)}: no batch yet"
        case PartsMissing():
            parts = ", ".join(str(p) for p in reason.missing)
            return f"{_size(reason.requests, len(reason.missing), reused)}: parts {parts} have no batch yet"
        case IntentLost():
            size = _size(reason.requests, reason.parts, reused)
            return f"{size}: attempt {', '.join(reason.attempts)} left no batch in the live list; creating it"
        case NotLive():
            size = _size(reason.requests, reason.parts, reused)
            return f"{size}: no batch of generation {reason.generation} is live"


def _new_work(
    reason: SpecChanged | RunChanged | ScheduledRun | ReplaceRequested, reused: Reused | None
) -> str:
    """A create says its size; a replace, what its cancel throws away."""
    size, replacing = _size(reason.requests, reason.parts, reused), reason.replacing
    match reason:
        case SpecChanged():
            what = f"spec changed ({_what_changed(reason.diff)})"
            return f"{what} while {_thrown(replacing)}" if replacing else f"{size}: {what}"
        case RunChanged():
            what = f"new run {reason.run} ({_what_changed(reason.diff, reason.last_run)})"
            return f"{what} while {_thrown(replacing)}" if replacing else f"{size}: {what}"
        case ScheduledRun():
            alongside = ", ".join(shown_run(r, reason.timezone) for r in reason.still_running)
            also = (
                f"; run {alongside} still runs (concurrency_policy {reason.concurrency_policy})"
                if alongside
                else ""
            )
            run = f"run {shown_run(reason.run, reason.timezone)} (schedule {reason.schedule}{also})"
        case ReplaceRequested():
            run = f"run {shown_run(reason.run, reason.timezone)} (--replace)"
    return f"{run}: cancelling {_thrown(replacing)}" if replacing else f"{run}: {size}"


def _kept(reason: Reason) -> str:
    """Reasons of changes that create nothing: adopt, cancel, forget, dedupe, noop."""
    match reason:
        case Adopt():
            also = f"; cancelling {reason.superseded}, superseded" if reason.superseded else ""
            return f"{reason.batch} of generation {reason.generation} is live but not in the state{also}"
        case Superseded():
            run = _run(reason.run, reason.timezone)
            by = f"generation {reason.generation}" if reason.generation else f"run {run}"
            return f"superseded by {by}; cancelling {reason.batch}"
        case Suspended():
            return "suspended; cancelling what runs" if reason.cancelling else "suspended"
        case SpecRemoved():
            return _removed(reason)
        case NoDeletionPolicy():
            return (
                f"no spec, no state record and no deletion policy in its metadata: {_ids(reason.batches)} "
                "left running; cancel it by hand if it should stop"
            )
        case Orphaned():
            return f"orphaned: {_ids(reason.batches)} left running"
        case BudgetPassed():
            spent, budget = usd_each(reason.spent_usd, reason.budget_usd)
            return f"run cost {spent} passed {JOB_BUDGET} {budget}; on_exceed: cancel"
        case Dedupe():
            also = f" (and {reason.more} more)" if reason.more else ""
            return (
                f"part {reason.part} attempt {reason.attempt} has more than one batch: keeping the oldest "
                f"{reason.kept}, cancelling {', '.join(reason.cancelling)}{also}"
            )
        case _:
            return _waiting(reason)


def _waiting(reason: Reason) -> str:
    """Reasons of noops."""
    match reason:
        case EditWaits() | NextRun() | SlotMissed() | SlotWaits():
            return _schedule(reason)
        case CreateInFlight():
            return (
                f"the create of part {reason.part} attempt {reason.attempt} got no answer and may still be "
                f"in flight: looking for it in the live list, sending it again in {reason.seconds_left:.0f}s "
                "at most"
            )
        case Queued():
            return f"{_size(reason.requests, reason.parts)}: {queued_words(reason)}"
        case InSync():
            return f"in sync ({reason.status})" if reason.status else "in sync"
        case RestartWaits():
            when = datetime.fromtimestamp(reason.at, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
            return (
                f"{reason.status} (nothing ran): part {reason.part} is sent again from {when}, "
                f"restart {reason.restart} of {reason.restarts}"
            )
        case LeftToNewer():
            return f"{_checkout(reason)}, which last applied {reason.job}"
    raise AssertionError(f"no words for {reason!r}")  # a new code must be given its words


def queued_words(queued: Queued) -> str:
    """`queued: 3rd for gpt-4o-mini, 4.2M tokens ahead`: where held parts wait (plans/admission.py)."""
    limit = queued.limit_tokens
    if queued.never_fits:
        return (
            f"never sent: a part of ~{short_count(queued.tokens)} prompt tokens is more than "
            f"{queued.model}'s whole queue ({short_count(limit or 0)} tokens, learnt from a refusal); "
            "declare the limit in the Provider's limits, so the job is split to fit"
        )
    parts = f" ({queued.parts} parts)" if queued.parts > 1 else ""
    learnt = ", learnt" if queued.learnt else ""
    size = (
        f"limit {short_count(limit)} tokens{learnt}"
        if limit is not None
        else f"limit {queued.limit_requests:,} requests"
    )
    return (
        f"queued{parts}: {ordinal(queued.position)} for {queued.model}, "
        f"{short_count(queued.tokens_ahead)} tokens ahead ({size})"
    )


def queue_place_words(place: QueuePlace, now: float) -> str:
    """Where a queued job stands, as `status` and the dashboard show it."""
    if place.never_fits:
        tokens = short_count(place.tokens)
        return f"never sent: a part of ~{tokens} prompt tokens is more than {place.model}'s whole queue"
    parts = f"{place.parts} parts, " if place.parts > 1 else ""
    if place.estimated_start is None:
        start = "start unknown until a running batch shows progress"
    else:
        start = f"estimated start in {duration(max(place.estimated_start - now, 0.0))}"
    size, ahead = short_count(place.tokens), short_count(place.tokens_ahead)
    where = f"{ordinal(place.position)} for {place.model} at {place.provider}"
    return f"{where} ({parts}~{size} tokens), {ahead} tokens ahead, {start}"


def queue_limit_words(
    provider: str, model: str, learning: QueueLearning, share: float, declared: QueueLimit | None = None
) -> str:
    """`openai gpt-4o-mini: 2.0M enqueued tokens (learnt 2026-…); 50% of it in use after a
    refusal …`.  A declared limit always wins over a learnt one: it is the one named, and a
    size a refusal named beside it is said to be overridden."""
    learnt = _limit_sizes(learning.tokens, learning.requests)
    when = f"learnt {learning.learnt_at or '-'}"
    if declared is not None:
        named = f"; a refusal named {learnt}, {when}, which it overrides" if learnt else ""
        limit = f"{_limit_sizes(declared.tokens, declared.requests)} (declared limit{named})"
    else:
        limit = f"{learnt} ({when})" if learnt else "no size known"
    lowered = f"; {share:.0%} of it in use after a refusal despite our count" if share < 1 else ""
    return f"{provider} {model}: {limit}{lowered}"


def _limit_sizes(tokens: int | None, requests: int | None) -> str:
    return ", ".join(
        f"{short_count(n)} enqueued {what}" for n, what in ((tokens, "tokens"), (requests, "requests")) if n
    )


def ordinal(number: int) -> str:
    """`1st`, `2nd`, `3rd`, `11th`, `22nd`."""
    tail = "th" if 10 <= number % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(number % 10, "th")
    return f"{number}{tail}"


def _schedule(reason: EditWaits | NextRun | SlotMissed | SlotWaits) -> str:
    """A scheduled job that starts no run now: why, in the schedule's time zone."""
    zone = reason.timezone
    match reason:
        case EditWaits():
            upcoming = f"the next slot, {_run(reason.next_slot, zone)}" if reason.next_slot else ""
            return (
                f"spec changed after run {_run(reason.last_run, zone)} ended: the new spec runs at "
                f"{upcoming or 'no later slot'} (--replace {reason.job} runs it now)"
            )
        case NextRun():
            return _next(reason.next_slot, zone)
        case SlotMissed():
            missed = f"missed by {duration(reason.late_seconds)}"
            deadline = f"starting_deadline {duration(reason.starting_deadline)}"
            slot = _run(reason.slot, zone)
            return f"slot {slot} skipped: {missed} ({deadline}); {_next(reason.next_slot, zone)}"
        case SlotWaits():
            others = ", ".join(_run(r, zone) for r in reason.still_running)
            slot = _run(reason.slot, zone)
            return f"slot {slot} waits: run {others} still runs (concurrency_policy forbid)"


def _checkout(reason: LeftToNewer) -> str:
    here, last = reason.checkout[:7], reason.commit[:7]
    if reason.relation == "behind":
        return f"checkout at {here} is behind {last}"
    if reason.relation == "diverged":
        return f"checkout at {here} has diverged from {last}, a newer commit"
    return f"checkout at {here} does not have {last}, a newer commit (fetch or pull it)"


def _removed(reason: SpecRemoved) -> str:
    left = f"deletion_policy orphan leaves {_ids(reason.left_running)} running" if reason.left_running else ""
    if reason.stopped:
        stopped = f"spec removed; deletion_policy cancel stops {_ids(reason.stopped)}"
        return f"{stopped}; {left}" if left else stopped
    return f"spec removed; {left or 'its batches are finished'}"


def _size(requests: int, parts: int, reused: Reused | None = None) -> str:
    """`2 parts, 300 requests`; a run that reuses answers: `15 of 210 requests (195 reused from run X)`."""
    split = f"{parts} parts, " if parts > 1 else ""
    if reused is None or not reused.requests:
        return f"{split}{requests:,} requests"
    most = "most " if reused.from_several else ""
    source = f" {most}from run {reused.from_run}" if reused.from_run else ""
    return f"{split}{requests:,} of {reused.total:,} requests ({reused.requests:,} reused{source})"


def saved_text(saved: CostEstimate) -> str:
    """What the reused answers would have cost: `~$0.42 saved by reuse`."""
    if saved.input_usd is None:
        return "no price for what reuse saved"
    upper = saved.upper_usd
    if upper is None or not saved.output_tokens:
        return f"~{usd(saved.input_usd)} saved by reuse"
    least, most = usd_each(saved.input_usd, upper)
    return f"~{least} to {most} saved by reuse"


def _thrown(replacing: Replacing | None) -> str:
    """`batch_abc is in_progress at 40/120`: what a replace's cancel throws away."""
    assert replacing is not None
    progress = f" at {replacing.completed or 0:,}/{replacing.total:,}" if replacing.total else ""
    return f"{replacing.batch} is {replacing.status}{progress}"


def _run(run: str | None, timezone: str) -> str:
    return shown_run(run, timezone) if run else "-"


def _next(next_slot: str | None, timezone: str) -> str:
    return f"next run {_run(next_slot, timezone)}" if next_slot else "no later slot"


def _ids(ids: tuple[str, ...]) -> str:
    return ids[0] if len(ids) == 1 else f"{ids[0]} and {len(ids) - 1} more"


def _what_changed(diff: SpecDiff, last_run: str | None = None) -> str:
    """The changed fields; without a recorded definition, the generations (or the last run)."""
    if diff.named:
        return "; ".join(changed_fields(diff))
    if last_run is not None:
        return f"last run {last_run}"
    return f"{diff.generation_before or '?'} → {diff.generation_after}"


def changed_fields(diff: SpecDiff) -> list[str]:
    """`endpoint: /v1/completions → /v1/chat/completions`, one per changed leaf, then the input."""
    lines = [f"{c.field}: {_show(c.old)} → {_show(c.new)}" for c in diff.fields]
    return lines + ([_input_change(diff.input)] if diff.input else [])


def _input_change(change: InputChange) -> str:
    before, after = _count(change.requests_before), _count(change.requests_after)
    counts = f"{after} requests" if before == after else f"{before} → {after} requests"
    digests = f"sha256 {change.sha256_before[:8]}… → {change.sha256_after[:8]}…"
    return f"input: {counts}, {digests}" + _by_custom_id(change.by_custom_id)


def _by_custom_id(summary: Mapping[str, Any] | None) -> str:
    """` (1 added: req-41; 2 changed: req-3, req-7 … by custom_id)`."""
    if not summary:
        return ""
    examples = summary.get("examples") or {}
    parts = []
    for kind in ("added", "removed", "changed"):
        if summary.get(kind):
            ids = ", ".join(_show(i) for i in examples.get(kind, []))
            more = " …" if summary[kind] > len(examples.get(kind, [])) else ""
            parts.append(f"{summary[kind]:,} {kind}" + (f": {ids}{more}" if ids else ""))
    return f" ({'; '.join(parts)} by custom_id)" if parts else " (the same requests, by custom_id)"


def _count(value: int | None) -> str:
    return f"{value:,}" if isinstance(value, int) else "?"


def _show(value: Any) -> str:
    if value is None:
        return "(none)"
    text = str(value)
    return text if len(text) <= MAX_SHOWN_CHARS else text[: MAX_SHOWN_CHARS - 1] + "…"


def over_budget_words(over: OverBudget) -> str:
    """Why a change passes a budget, every amount of the sentence told apart."""
    if over.budget == "plan":
        where = f"{PLAN_BUDGET} {{limit}} (reconciler.yaml)"
    else:
        where = f"{JOB_BUDGET} {{limit}}"
    if over.upper_usd is None:
        limit = usd(over.limit_usd)
        unknown = over.unknown or CostUnknown(model="")
        return f"{where.format(limit=limit)} cannot be checked: {cost_unknown_words(unknown)}"
    upper, limit, spent, planned = usd_each(over.upper_usd, over.limit_usd, over.spent_usd, over.planned_usd)
    if over.budget == "plan":
        return f"up to {upper} does not fit in {where.format(limit=limit)}: {planned} of it already planned"
    spent_text = f"{spent} spent + " if over.spent_usd else ""
    return f"{spent_text}up to {upper} exceeds {where.format(limit=limit)}"


def cost_unknown_words(unknown: CostUnknown) -> str:
    if not unknown.unbounded:
        left_out = f" (the shipped price table leaves it out: {unknown.left_out})" if unknown.left_out else ""
        return f"no price for {unknown.model or 'its model'}{left_out}; add it to the Provider's pricing"
    return (
        f"{unknown.unbounded:,} requests set no max_tokens and {unknown.model}'s output cap is unknown; "
        "set max_tokens, or max_output_tokens in the Provider's pricing"
    )


def upcoming_words(upcoming: Upcoming) -> str:
    """`2026-12-02T02:00:00+01:00 (schedule 0 2 * * *)`: a scheduled job's next slot."""
    return f"{shown_run(upcoming.slot, upcoming.timezone)} (schedule {upcoming.schedule})"


def budget_warning(passed: BudgetPassed) -> str:
    """`nightly-eval: run cost $0.31 passed spec.budget.max_usd $0.25 while running`."""
    spent, budget = usd_each(passed.spent_usd, passed.budget_usd)
    return f"{passed.job}: run cost {spent} passed {JOB_BUDGET} {budget} while running"


def over_budget_lines(changes: tuple[Change, ...]) -> list[str]:
    """`job: why` for each change a budget refuses."""
    return [f"{c.job}: {over_budget_words(c.over_budget)}" for c in changes if c.mutates and c.over_budget]


def cost_text(estimate: CostEstimate) -> str:
    """`~$1.84 (input) + up to $3.10 (output)`, or why a part of it cannot be told."""
    if estimate.input_usd is None:
        return "no price"
    if estimate.output_usd is None:
        return f"~{usd(estimate.input_usd)} (input) + output unbounded"
    if not estimate.output_tokens:
        return f"~{usd(estimate.input_usd)} (input)"
    given, most = usd_each(estimate.input_usd, estimate.output_usd)
    return f"~{given} (input) + up to {most} (output)"


# What an out-of-sync noop is, counted in a plan's summary line.
OUT_OF_SYNC = {
    ReasonCode.EDIT_WAITS: "spec change waiting for its next slot",
    ReasonCode.LEFT_TO_NEWER: "left to a newer checkout",
    ReasonCode.IN_FLIGHT: "create in flight",
    ReasonCode.QUEUED: "queued",
    ReasonCode.RESTART_WAITS: "restart waiting",
    ReasonCode.NO_DELETION_POLICY: "batch of no spec left running",
    ReasonCode.ORPHANED: "orphan left running",
}


def out_of_sync(change: Change) -> str | None:
    """What keeps a noop's job from being in sync with its spec; None when it is in sync."""
    if change.action is not Action.NOOP:
        return None
    if change.over_budget:  # a change turned into a noop for passing a budget
        return "refused over budget"
    if change.reason.code in IN_SYNC_CODES:
        return None
    return OUT_OF_SYNC.get(change.reason.code, "not converged")
