"""The words of a plan, pinned once: every reason code with its data, budgets, costs, the
summary line and the one money format, as plans/wording.py, cli/render.py and
common/usage.py write them.  Every other test asserts codes and figures (`plan --json`'s
`reason_code` and `reason_data`, or the pure planner)."""

from __future__ import annotations

import itertools
import random
import re
from datetime import UTC, datetime

import pytest

from reconciler.cli.render import summary_line
from reconciler.common.usage import usd, usd_each
from reconciler.plans.changes import Action, Change, CostEstimate, Plan, QueueLimit
from reconciler.plans.reasons import (
    Adopt,
    BudgetPassed,
    CostUnknown,
    CreateInFlight,
    Dedupe,
    EditWaits,
    FieldChange,
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
from reconciler.plans.wording import (
    budget_warning,
    cost_text,
    over_budget_words,
    queue_limit_words,
    upcoming_words,
    words,
)
from reconciler.state.model import QueueLearning

SHA_A, SHA_B = "a" * 40, "b" * 40
FIELDS = SpecDiff(fields=(FieldChange("model", "gpt-4o-mini", "gpt-4o"),))
INPUT = SpecDiff(
    input=InputChange(2, 3, "1234567890ab", "abcdef012345", {"added": 1, "examples": {"added": ["r-9"]}})
)
RUNNING = Replacing("batch_old", "in_progress", 40, 120)
SLOT, NEXT = "2026-12-01T01:00:00Z", "2026-12-02T01:00:00Z"

WORDS: list[tuple[Reason, str]] = [
    (NoBatchYet(3, 1), "3 requests: no batch yet"),
    (NoBatchYet(1200, 3), "3 parts, 1,200 requests: no batch yet"),
    (PartsMissing(70, (1, 2)), "2 parts, 70 requests: parts 1, 2 have no batch yet"),
    (IntentLost(3, 1, ("a7",)), "3 requests: attempt a7 left no batch in the live list; creating it"),
    (SpecChanged(3, 1, FIELDS), "3 requests: spec changed (model: gpt-4o-mini → gpt-4o)"),
    (
        SpecChanged(3, 1, INPUT),
        "3 requests: spec changed (input: 2 → 3 requests, sha256 12345678… → abcdef01… (1 added: r-9 by custom_id))",
    ),
    (
        SpecChanged(3, 1, SpecDiff(generation_before="g1", generation_after="g2"), RUNNING),
        "spec changed (g1 → g2) while batch_old is in_progress at 40/120",
    ),
    (RunChanged(3, 1, "v2", "v1", SpecDiff()), "3 requests: new run v2 (last run v1)"),
    (
        RunChanged(3, 1, "v2", "v1", FIELDS, Replacing("batch_old", "validating")),
        "new run v2 (model: gpt-4o-mini → gpt-4o) while batch_old is validating",
    ),
    (NotLive(3, 1, "g2"), "3 requests: no batch of generation g2 is live"),
    (
        ScheduledRun(3, 1, "2026-12-01T01:00:00Z", "0 2 * * *", "Europe/Berlin"),
        "run 2026-12-01T02:00:00+01:00 (schedule 0 2 * * *): 3 requests",
    ),
    (
        ScheduledRun(3, 1, SLOT, "0 * * * *", "UTC", (NEXT,), "replace", RUNNING),
        "run 2026-12-01T01:00:00+00:00 (schedule 0 * * * *; run 2026-12-02T01:00:00+00:00 still runs "
        "(concurrency_policy replace)): cancelling batch_old is in_progress at 40/120",
    ),
    (
        ReplaceRequested(3, 1, "default+20261201T101500.250Z"),
        "run default+20261201T101500.250Z (--replace): 3 requests",
    ),
    (
        Restart(3, 0, "batch_start_failed", 1, 2),
        "batch_start_failed (nothing ran): part 0's 3 requests sent again, restart 1 of 2",
    ),
    (Resume(1500), "1,500 requests without a final answer are sent again"),
    (Retry(7, 2), "attempt 2, 7 requests did not succeed"),
    (
        Requeue(3, 1, "token"),
        "part 1's 3 requests were refused by the provider's queue (enqueued token limit): sent again, "
        "no attempt spent",
    ),
    (
        Queued("openai", "gpt-4o-mini", 3, 1, 12, 4_884, 4_200_000, 2_000_000, None),
        "12 requests: queued: 3rd for gpt-4o-mini, 4.2M tokens ahead (limit 2.0M tokens)",
    ),
    (
        Queued("openai", "gpt-4o-mini", 1, 2, 900, 80_000, 0, 90_000, None, learnt=True),
        "2 parts, 900 requests: queued (2 parts): 1st for gpt-4o-mini, 0 tokens ahead (limit 90.0k tokens, learnt)",
    ),
    (
        Queued("openai", "gpt-4o", 1, 1, 50, 120_000, 0, 90_000, None, learnt=True, never_fits=True),
        "50 requests: never sent: a part of ~120.0k prompt tokens is more than gpt-4o's whole queue "
        "(90.0k tokens, learnt from a refusal); declare the limit in the Provider's limits, so the job is "
        "split to fit",
    ),
    (Adopt("b9", "g2"), "b9 of generation g2 is live but not in the state"),
    (Adopt("b9", "g2", "b1"), "b9 of generation g2 is live but not in the state; cancelling b1, superseded"),
    (Superseded("b1", generation="g2"), "superseded by generation g2; cancelling b1"),
    (
        Superseded("b1", run=SLOT, timezone="UTC"),
        "superseded by run 2026-12-01T01:00:00+00:00; cancelling b1",
    ),
    (Suspended(("b1",)), "suspended; cancelling what runs"),
    (Suspended(), "suspended"),
    (SpecRemoved(stopped=("b1",)), "spec removed; deletion_policy cancel stops b1"),
    (
        SpecRemoved(stopped=("b1", "b2"), left_running=("b3",)),
        "spec removed; deletion_policy cancel stops b1 and 1 more; deletion_policy orphan leaves b3 running",
    ),
    (SpecRemoved(left_running=("b3",)), "spec removed; deletion_policy orphan leaves b3 running"),
    (SpecRemoved(), "spec removed; its batches are finished"),
    (
        NoDeletionPolicy(("b1",)),
        "no spec, no state record and no deletion policy in its metadata: b1 left running; "
        "cancel it by hand if it should stop",
    ),
    (Orphaned(("b1",)), "orphaned: b1 left running"),
    (
        BudgetPassed("eval", 0.0000172, 0.00001, True),
        "run cost $0.000017 passed spec.budget.max_usd $0.00001; on_exceed: cancel",
    ),
    (
        Dedupe(0, 1, "batch_a", ("batch_c",), 1),
        "part 0 attempt 1 has more than one batch: keeping the oldest batch_a, cancelling batch_c (and 1 more)",
    ),
    (
        CreateInFlight(0, 1, 42.4),
        "the create of part 0 attempt 1 got no answer and may still be in flight: looking for it in the "
        "live list, sending it again in 42s at most",
    ),
    (InSync("completed"), "in sync (completed)"),
    (InSync(), "in sync"),
    (
        RestartWaits(0, "file_upload_failed", datetime(2026, 12, 1, 3, 10, tzinfo=UTC).timestamp(), 1, 2),
        "file_upload_failed (nothing ran): part 0 is sent again from 2026-12-01T03:10:00Z, restart 1 of 2",
    ),
    (
        EditWaits("nightly-eval", SLOT, NEXT, "UTC"),
        "spec changed after run 2026-12-01T01:00:00+00:00 ended: the new spec runs at the next slot, "
        "2026-12-02T01:00:00+00:00 (--replace nightly-eval runs it now)",
    ),
    (NextRun("2026-12-02T01:00:00Z", "Europe/Berlin"), "next run 2026-12-02T02:00:00+01:00"),
    (NextRun(None, "UTC"), "no later slot"),
    (
        SlotMissed(SLOT, 1800, 60, NEXT, "UTC"),
        "slot 2026-12-01T01:00:00+00:00 skipped: missed by 30m (starting_deadline 1m); "
        "next run 2026-12-02T01:00:00+00:00",
    ),
    (
        SlotWaits(NEXT, (SLOT,), "UTC"),
        "slot 2026-12-02T01:00:00+00:00 waits: run 2026-12-01T01:00:00+00:00 still runs (concurrency_policy forbid)",
    ),
    (
        LeftToNewer("eval", SHA_A, SHA_B, "behind"),
        "checkout at aaaaaaa is behind bbbbbbb, which last applied eval",
    ),
    (
        LeftToNewer("eval", SHA_A, SHA_B, "diverged"),
        "checkout at aaaaaaa has diverged from bbbbbbb, a newer commit, which last applied eval",
    ),
    (
        LeftToNewer("eval", SHA_A, SHA_B, "missing"),
        "checkout at aaaaaaa does not have bbbbbbb, a newer commit (fetch or pull it), which last applied eval",
    ),
]


@pytest.mark.parametrize(("reason", "expected"), WORDS, ids=lambda x: getattr(x, "code", None) or "")
def test_each_reason_code_reads_as_its_words(reason: Reason, expected: str) -> None:
    assert words(reason) == expected


def test_every_reason_code_has_its_words_pinned() -> None:
    assert {reason.code for reason, _ in WORDS} == set(ReasonCode)


BUDGETS = [
    (
        OverBudget("job", 0.00001, 0.0000172),
        "up to $0.000017 exceeds spec.budget.max_usd $0.00001",
    ),
    (
        OverBudget("job", 0.25, 0.2, spent_usd=0.1),
        "$0.10 spent + up to $0.20 exceeds spec.budget.max_usd $0.25",
    ),
    (
        OverBudget("plan", 0.0002, 0.000198, planned_usd=0.00016),
        "up to $0.000198 does not fit in budget.max_usd_per_plan $0.0002 (reconciler.yaml): "
        "$0.00016 of it already planned",
    ),
    (
        OverBudget("job", 5, unknown=CostUnknown("gpt-unlisted-model")),
        "spec.budget.max_usd $5.00 cannot be checked: no price for gpt-unlisted-model; "
        "add it to the Provider's pricing",
    ),
    (
        OverBudget("plan", 1, unknown=CostUnknown("o1", unbounded=12)),
        "budget.max_usd_per_plan $1.00 (reconciler.yaml) cannot be checked: 12 requests set no max_tokens "
        "and o1's output cap is unknown; set max_tokens, or max_output_tokens in the Provider's pricing",
    ),
]


@pytest.mark.parametrize(("over", "expected"), BUDGETS)
def test_a_budget_refusal_reads_with_every_amount_told_apart(over: OverBudget, expected: str) -> None:
    assert over_budget_words(over) == expected


def test_a_scheduled_jobs_next_slot_reads_in_its_time_zone() -> None:
    upcoming = Upcoming("2026-12-02T01:00:00Z", "Europe/Berlin", "0 2 * * *")
    assert upcoming_words(upcoming) == "2026-12-02T02:00:00+01:00 (schedule 0 2 * * *)"


def test_a_run_past_its_budget_and_an_estimate_read_in_the_one_money_format() -> None:
    passed = BudgetPassed("eval", 0.31, 0.25, False)
    assert budget_warning(passed) == "eval: run cost $0.31 passed spec.budget.max_usd $0.25 while running"
    assert (
        cost_text(CostEstimate(100, 64, 7.215e-05, 0.0000384))
        == "~$0.000072 (input) + up to $0.000038 (output)"
    )
    assert cost_text(CostEstimate(100, None, 0.5, None)) == "~$0.50 (input) + output unbounded"
    assert cost_text(CostEstimate(100, None, None, None)) == "no price"


def _noop(job: str, reason: Reason) -> Change:
    return Change(job, Action.NOOP, reason, "sandbox")


def test_a_plan_without_changes_counts_jobs_out_of_sync_apart_from_those_in_sync() -> None:
    in_sync = _noop("a", InSync("completed"))
    waits = _noop("b", EditWaits("b", SLOT, NEXT, "UTC"))
    left = _noop("c", LeftToNewer("c", SHA_A, SHA_B, "behind"))
    assert summary_line(Plan((in_sync, _noop("d", Suspended())))) == "No changes: 2 jobs in sync."
    assert (
        summary_line(Plan((in_sync, waits)))
        == "No changes: 1 job in sync; 1 out of sync: spec change waiting for its next slot."
    )
    assert (
        summary_line(Plan((waits, left)))
        == "No changes: 0 jobs in sync; 2 out of sync: 1 left to a newer checkout, "
        "1 spec change waiting for its next slot."
    )
    create = Change("e", Action.CREATE, NoBatchYet(3, 1), "sandbox")
    assert summary_line(Plan((create, in_sync, left))) == (
        "Plan: 1 to create; 2 unchanged; 1 out of sync: left to a newer checkout."
    )


MONEY = [
    (0.0, "$0.00"),
    (1.84, "$1.84"),
    (1234.5678, "$1,234.57"),
    (0.1, "$0.10"),
    (0.0999, "$0.10"),
    (0.072, "$0.072"),
    (0.05, "$0.05"),
    (7.215e-05, "$0.000072"),
    (0.0002, "$0.0002"),
    (1e-07, "$0.0000001"),
    (3.3e-09, "$0.0000000033"),
    (12_345_678.9, "$12,345,678.90"),
]


@pytest.mark.parametrize(("amount", "expected"), MONEY)
def test_money_is_cents_from_ten_cents_up_and_two_significant_digits_below(
    amount: float, expected: str
) -> None:
    assert usd(amount) == expected


def test_money_is_never_written_in_e_notation() -> None:
    for exponent in range(-12, 10):
        for mantissa in (1.0, 2.5, 7.215, 9.999):
            assert re.fullmatch(r"\$[0-9,]+\.[0-9]+", usd(mantissa * 10.0**exponent)), (
                mantissa * 10.0**exponent
            )


def test_different_amounts_shown_together_never_read_the_same() -> None:
    rng = random.Random(26)
    for _ in range(2000):
        scale = 10.0 ** rng.randint(-8, 4)
        amounts = [round(rng.uniform(0, 3) * scale, rng.randint(2, 12)) for _ in range(3)]
        shown = usd_each(*amounts)
        for (a, x), (b, y) in itertools.combinations(zip(amounts, shown, strict=True), 2):
            assert (x == y) == (f"{a:.12g}" == f"{b:.12g}"), (amounts, shown)
    assert usd_each(0.000198, 0.0002, 0.00016) == ("$0.000198", "$0.0002", "$0.00016")
    assert usd_each(1.004, 1.0) == ("$1.004", "$1.00")
    assert usd_each(0.1 + 0.2, 0.3) == ("$0.30", "$0.30")  # a float's rounding is not a difference


def test_a_declared_queue_limit_is_named_over_the_one_a_refusal_taught() -> None:
    learning = QueueLearning(tokens=1_700, learnt_at="2026-05-01T10:00:00+02:00", floor=0.5, lowered_at=1.0)
    assert queue_limit_words("openai", "gpt-4o-mini", learning, 0.5, QueueLimit(tokens=5_000)) == (
        "openai gpt-4o-mini: 5.0k enqueued tokens (declared limit; a refusal named 1.7k enqueued "
        "tokens, learnt 2026-05-01T10:00:00+02:00, which it overrides); 50% of it in use after a "
        "refusal despite our count"
    )
    assert queue_limit_words("openai", "gpt-4o-mini", learning, 1.0) == (
        "openai gpt-4o-mini: 1.7k enqueued tokens (learnt 2026-05-01T10:00:00+02:00)"
    )
