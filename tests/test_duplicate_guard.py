"""The duplicate guard: a second live batch of ours for one unit is cancelled and never counted.

The duplicate is planted straight into the sandbox, as a writer without the shared lock (or an
older reconciler) would leave it: same job, generation, owner, part and retry, another attempt.
"""

from __future__ import annotations

import json
from typing import Any

import openai
import pytest

from reconciler.api.batch import Batch
from reconciler.plans.changes import LiveBatch
from reconciler.sandbox import Sandbox
from reconciler.specs.identity import owner_tag
from tests.fixtures.repo import RunCli, UserRepo
from tests.reconcile_helpers import OWNER, batches, mutating, sdk, state_of, use_sandbox, wait_until


def plant_duplicate(sandbox: Sandbox, original: openai.types.Batch) -> openai.types.Batch:
    """A second batch for the same unit, created a moment later, as another writer would."""
    assert original.metadata is not None  # a batch of ours always carries its unit
    metadata = dict(original.metadata) | {"reconciler_attempt": "planted00000"}
    # create() takes a Literal of the endpoints the SDK knows; a listed batch names a plain str.
    endpoint: Any = original.endpoint
    return sdk(sandbox).batches.create(
        input_file_id=original.input_file_id,
        endpoint=endpoint,
        completion_window="24h",
        metadata=metadata,
    )


@pytest.mark.slow
def test_a_planted_duplicate_is_planned_as_dedupe_cancelled_once_and_counted_once(
    user_repo: UserRepo, sandbox: Sandbox, run_cli: RunCli, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_sandbox(monkeypatch, sandbox)
    sandbox.configure(validation_seconds=3)  # both stay running while the plan is made
    assert run_cli("apply", "--auto-approve", *user_repo.args()).exit_code == 0
    (original,) = batches(sandbox)
    duplicate = plant_duplicate(sandbox, original)
    assert original.metadata["reconciler_owner"] == owner_tag(OWNER)

    document = json.loads(run_cli("plan", "--json", *user_repo.args()).stdout)
    assert document["summary"]["dedupe"] == 1
    (change,) = document["changes"]
    assert (change["action"], change["reason_code"], change["cancel"]) == ("dedupe", "dedupe", [duplicate.id])
    assert change["reason_data"] == {
        "part": 0,
        "attempt": 1,
        "kept": original.id,
        "cancelling": [duplicate.id],
        "more": 0,
    }

    sandbox.reset_counts()
    applied = run_cli("apply", "--auto-approve", *user_repo.args())
    assert applied.exit_code == 0, applied.stderr
    assert "0 created, 1 cancelled" in applied.stdout
    assert mutating(sandbox.request_counts()) == {"POST /v1/batches/{id}/cancel": 1}
    statuses = {b.id: b.status for b in batches(sandbox)}
    assert statuses[original.id] not in ("cancelling", "cancelled")
    assert statuses[duplicate.id] in ("cancelling", "cancelled")

    sandbox.configure(validation_seconds=0.05)
    wait_until(
        lambda: (
            run_cli("reconcile", *user_repo.args()).exit_code == 0
            and (state_of(user_repo.root)["jobs"]["nightly-eval"]["status"] == "completed")
        )
    )
    job = state_of(user_repo.root)["jobs"]["nightly-eval"]
    assert [b["batch_id"] for b in job["batches"]] == [original.id]
    assert job["request_counts"] == {"total": 3, "completed": 3, "failed": 0}
    status = run_cli("status", *user_repo.args())
    assert " 3/0/3 " in status.stdout and duplicate.id not in status.stdout
    assert "dedupe" not in run_cli("plan", *user_repo.args()).stdout  # nothing left to do


def test_a_finished_duplicate_is_not_counted_and_needs_no_change(
    user_repo: UserRepo, sandbox: Sandbox, run_cli: RunCli, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_sandbox(monkeypatch, sandbox)
    assert run_cli("apply", "--auto-approve", *user_repo.args()).exit_code == 0
    (original,) = batches(sandbox)
    duplicate = plant_duplicate(sandbox, original)
    wait_until(lambda: {b.status for b in batches(sandbox)} == {"completed"})
    assert run_cli("reconcile", *user_repo.args()).exit_code == 0
    job = state_of(user_repo.root)["jobs"]["nightly-eval"]
    assert [b["batch_id"] for b in job["batches"]] == [original.id]
    assert job["request_counts"] == {"total": 3, "completed": 3, "failed": 0}
    plan = run_cli("plan", "--detailed-exitcode", *user_repo.args())
    assert plan.exit_code == 0 and duplicate.id not in plan.stdout


def _live(
    batch_id: str,
    created_at: int,
    status: str = "in_progress",
    part: str = "0",
    retry: str = "1",
    attempt: str = "a",
) -> LiveBatch:
    metadata = {
        "reconciler_job": "j",
        "reconciler_generation": "g1",
        "reconciler_owner": "o",
        "reconciler_attempt": attempt + batch_id,
        "reconciler_part": part,
        "reconciler_retry": retry,
    }
    batch = Batch(id=batch_id, status=status, metadata=metadata, created_at=created_at)
    return LiveBatch.of("sandbox", batch)


def test_the_plan_keeps_the_oldest_of_each_unit_whatever_the_listing_order() -> None:
    from reconciler.plans.changes import Action, DesiredJob
    from reconciler.plans.decide import make_plan
    from reconciler.plans.reasons import Dedupe
    from reconciler.specs.slices import PartSpec
    from reconciler.state.file import new_state

    desired = {
        "j": DesiredJob(
            "j", "g1", "sandbox", parts=(PartSpec(index=0, requests=1), PartSpec(index=1, requests=1))
        )
    }
    live = [
        _live("batch_c", 30),  # newest first, as the API lists
        _live("batch_b", 20, part="1"),
        _live("batch_a", 10),
        _live("batch_z", 40, status="completed", part="1"),  # finished: nothing to cancel
    ]
    (change,) = make_plan(desired, new_state(), live).changes
    assert change.action is Action.DEDUPE
    assert change.cancel == ("batch_c",)
    assert sorted(change.adopt) == ["batch_a", "batch_b"]
    assert change.reason == Dedupe(part=0, attempt=1, kept="batch_a", cancelling=("batch_c",))
