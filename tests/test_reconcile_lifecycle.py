"""plan / apply / reconcile against the sandbox over real HTTP: each action of the design page."""

from __future__ import annotations

import json
from pathlib import Path

from reconciler.sandbox import Sandbox
from tests.fixtures.repo import RunCli, UserRepo, planned
from tests.reconcile_helpers import batches, mutating, state_of


def test_plan_sends_no_mutating_request_and_its_detailed_exitcode_reports_pending_changes(
    sandbox_repo: UserRepo, sandbox: Sandbox, run_cli: RunCli
) -> None:
    sandbox_repo.write_job("nightly-eval", requests=3)
    sandbox.reset_counts()
    result = run_cli("plan", "--detailed-exitcode", *sandbox_repo.args())
    assert result.exit_code == 2, result.stderr
    assert "+ create" in result.stdout and "nightly-eval" in result.stdout
    assert mutating(sandbox.request_counts()) == {}
    assert not sandbox_repo.state.exists()


def test_plan_exits_zero_with_detailed_exitcode_once_converged(
    sandbox_repo: UserRepo, sandbox: Sandbox, run_cli: RunCli
) -> None:
    sandbox_repo.write_job("nightly-eval", requests=3)
    assert run_cli("apply", "--auto-approve", *sandbox_repo.args()).exit_code == 0
    result = run_cli("plan", "--detailed-exitcode", *sandbox_repo.args())
    assert result.exit_code == 0, result.stdout + result.stderr
    assert "No changes" in result.stdout


def test_a_new_spec_becomes_exactly_one_upload_and_one_create(
    sandbox_repo: UserRepo, sandbox: Sandbox, run_cli: RunCli
) -> None:
    sandbox_repo.write_job("nightly-eval", requests=3)
    sandbox_repo.write_job("ab-test", requests=2)
    sandbox.reset_counts()
    assert run_cli("apply", "--auto-approve", *sandbox_repo.args()).exit_code == 0
    assert mutating(sandbox.request_counts()) == {"POST /v1/files": 2, "POST /v1/batches": 2}
    assert run_cli("apply", "--auto-approve", *sandbox_repo.args()).exit_code == 0
    assert len(batches(sandbox)) == 2
    jobs = state_of(sandbox_repo.root)["jobs"]
    assert sorted(jobs) == ["ab-test", "nightly-eval"]
    assert jobs["nightly-eval"]["batches"][0]["batch_id"] == batches(sandbox, "nightly-eval")[0].id


def test_an_edited_spec_whose_batch_still_runs_is_replaced(
    sandbox_repo: UserRepo, sandbox: Sandbox, run_cli: RunCli
) -> None:
    sandbox.configure(validation_seconds=60)
    sandbox_repo.write_job("nightly-eval", requests=3)
    run_cli("apply", "--auto-approve", *sandbox_repo.args())
    first = batches(sandbox, "nightly-eval")[0]
    sandbox_repo.write_input("data/nightly-eval.jsonl", requests=4)
    plan = run_cli("plan", *sandbox_repo.args())
    assert "~ replace" in plan.stdout and first.id in plan.stdout
    assert run_cli("apply", "--auto-approve", *sandbox_repo.args()).exit_code == 0
    now = {b.id: b for b in batches(sandbox, "nightly-eval")}
    assert now[first.id].status in ("cancelling", "cancelled")
    (new,) = [b for b in now.values() if b.id != first.id]
    assert new.metadata["reconciler_generation"] != first.metadata["reconciler_generation"]
    assert state_of(sandbox_repo.root)["jobs"]["nightly-eval"]["batches"][0]["batch_id"] == new.id


def test_an_edit_after_completion_creates_the_new_generation_and_leaves_the_old_batch(
    sandbox_repo: UserRepo, sandbox: Sandbox, run_cli: RunCli
) -> None:
    sandbox_repo.write_job("nightly-eval", requests=2)
    assert run_cli("reconcile", "--wait", "--timeout", "60", *sandbox_repo.args()).exit_code == 0
    (first,) = batches(sandbox, "nightly-eval")
    assert first.status == "completed"
    sandbox_repo.write_input("data/nightly-eval.jsonl", requests=3)
    change = planned(run_cli, sandbox_repo)["nightly-eval"]
    assert (change["action"], change["reason_code"]) == ("create", "spec_changed")
    edited = change["reason_data"]["diff"]["input"]
    assert (edited["requests_before"], edited["requests_after"]) == (2, 3)
    run_cli("apply", "--auto-approve", *sandbox_repo.args())
    assert {b.id: b.status for b in batches(sandbox, "nightly-eval")}[first.id] == "completed"
    assert len(batches(sandbox, "nightly-eval")) == 2


def test_a_deleted_spec_with_a_running_batch_is_cancelled(
    sandbox_repo: UserRepo, sandbox: Sandbox, run_cli: RunCli
) -> None:
    sandbox.configure(validation_seconds=60)
    sandbox_repo.write_job("nightly-eval")
    sandbox_repo.write_job("keep")
    run_cli("apply", "--auto-approve", *sandbox_repo.args())
    (sandbox_repo.specs / "nightly-eval.yaml").unlink()
    plan = run_cli("plan", "--json", *sandbox_repo.args())
    actions = {c["job"]: c["action"] for c in json.loads(plan.stdout)["changes"]}
    assert actions == {"nightly-eval": "cancel", "keep": "noop"}
    run_cli("apply", "--auto-approve", *sandbox_repo.args())
    assert batches(sandbox, "nightly-eval")[0].status in ("cancelling", "cancelled")
    assert batches(sandbox, "keep")[0].status == "validating"


def test_a_deleted_spec_whose_batch_finished_is_forgotten(
    sandbox_repo: UserRepo, sandbox: Sandbox, run_cli: RunCli
) -> None:
    sandbox_repo.write_job("nightly-eval")
    sandbox_repo.write_job("keep")
    run_cli("reconcile", "--wait", "--timeout", "60", *sandbox_repo.args())
    (sandbox_repo.specs / "nightly-eval.yaml").unlink()
    sandbox.reset_counts()
    result = run_cli("reconcile", *sandbox_repo.args())
    assert ". forget" in result.stdout
    assert "nightly-eval" not in state_of(sandbox_repo.root)["jobs"]
    assert mutating(sandbox.request_counts()) == {}


def test_a_suspended_job_cancels_its_batch_and_creates_nothing(
    sandbox_repo: UserRepo, sandbox: Sandbox, run_cli: RunCli
) -> None:
    sandbox.configure(validation_seconds=60)
    sandbox_repo.write_job("nightly-eval")
    run_cli("apply", "--auto-approve", *sandbox_repo.args())
    (sandbox_repo.specs / "nightly-eval.yaml").unlink()
    sandbox_repo.write_job("nightly-eval", suspend=True)
    sandbox.reset_counts()
    run_cli("apply", "--auto-approve", *sandbox_repo.args())
    assert mutating(sandbox.request_counts()) == {"POST /v1/batches/{id}/cancel": 1}
    assert batches(sandbox, "nightly-eval")[0].status in ("cancelling", "cancelled")


def test_reconcile_wait_runs_the_job_to_completed_and_records_output_ids(
    sandbox_repo: UserRepo, sandbox: Sandbox, run_cli: RunCli
) -> None:
    sandbox_repo.write_job("nightly-eval", requests=3)
    result = run_cli("reconcile", "--wait", "--timeout", "60", *sandbox_repo.args())
    assert result.exit_code == 0, result.stderr
    job = state_of(sandbox_repo.root)["jobs"]["nightly-eval"]
    assert job["status"] == "completed"
    assert job["request_counts"] == {"total": 3, "completed": 3, "failed": 0}
    assert job["batches"][0]["output_file_id"].startswith("file-")
    status = run_cli("status", *sandbox_repo.args())
    assert "nightly-eval" in status.stdout and "completed" in status.stdout and "3/0/3" in status.stdout


def test_status_with_no_state_says_how_to_start(sandbox_repo: UserRepo, run_cli: RunCli) -> None:
    result = run_cli("status", *sandbox_repo.args())
    assert result.exit_code == 0 and "reconciler plan" in result.stdout


def test_apply_off_a_terminal_without_auto_approve_refuses_and_sends_nothing(
    sandbox_repo: UserRepo, sandbox: Sandbox, run_cli: RunCli
) -> None:
    sandbox_repo.write_job("nightly-eval")
    sandbox.reset_counts()
    result = run_cli("apply", *sandbox_repo.args())
    assert result.exit_code == 1 and "--auto-approve" in result.stderr
    # Only the read that tells a plan with changes from one without (which exits 0).
    assert sandbox.request_counts() == {"GET /v1/batches": 1}


def test_an_empty_specs_dir_never_cancels_everything_without_allow_empty(
    sandbox_repo: UserRepo, sandbox: Sandbox, run_cli: RunCli
) -> None:
    sandbox.configure(validation_seconds=60)
    sandbox_repo.write_job("nightly-eval")
    run_cli("apply", "--auto-approve", *sandbox_repo.args())
    (sandbox_repo.specs / "nightly-eval.yaml").unlink()
    refused = run_cli("apply", "--auto-approve", *sandbox_repo.args())
    assert refused.exit_code == 1 and "--allow-empty" in refused.stderr
    assert batches(sandbox, "nightly-eval")[0].status == "validating"
    assert run_cli("apply", "--auto-approve", "--allow-empty", *sandbox_repo.args()).exit_code == 0
    assert batches(sandbox, "nightly-eval")[0].status in ("cancelling", "cancelled")


def test_a_saved_plan_is_applied_exactly_and_refused_once_it_no_longer_holds(
    sandbox_repo: UserRepo, sandbox: Sandbox, run_cli: RunCli, tmp_path: Path
) -> None:
    sandbox_repo.write_job("nightly-eval")
    saved = tmp_path / "plan.json"
    assert run_cli("plan", "--out", str(saved), *sandbox_repo.args()).exit_code == 0
    sandbox_repo.write_job("another")
    refused = run_cli("apply", str(saved), *sandbox_repo.args())
    assert refused.exit_code == 1 and "no longer holds" in refused.stderr and "another" in refused.stderr
    assert batches(sandbox) == []
    run_cli("plan", "--out", str(saved), *sandbox_repo.args())
    assert run_cli("apply", str(saved), *sandbox_repo.args()).exit_code == 0
    assert len(batches(sandbox)) == 2


def test_the_saved_plan_and_json_plan_carry_the_documented_fields(
    sandbox_repo: UserRepo, sandbox: Sandbox, run_cli: RunCli, tmp_path: Path
) -> None:
    sandbox_repo.write_job("nightly-eval", requests=5)
    document = json.loads(run_cli("plan", "--json", *sandbox_repo.args()).stdout)
    assert document["format_version"] == 1
    (change,) = document["changes"]
    assert {"job", "action", "reason"} <= set(change)
    assert (change["job"], change["action"], change["requests"]) == ("nightly-eval", "create", 5)
    markdown = run_cli("plan", "--format", "markdown", *sandbox_repo.args()).stdout
    assert "| `+` | `nightly-eval` | create | gpt-4o-mini | 5 |" in markdown
    assert "Launches gpt-4o-mini: 5 requests, ~" in markdown


def test_a_changed_input_is_reviewed_request_by_request_in_the_plan(
    sandbox_repo: UserRepo, sandbox: Sandbox, run_cli: RunCli
) -> None:
    sandbox_repo.write_job("nightly-eval", requests=4)
    assert run_cli("apply", "--auto-approve", *sandbox_repo.args()).exit_code == 0
    data = sandbox_repo.root / "data" / "nightly-eval.jsonl"
    lines = [json.loads(line) for line in data.read_text().splitlines()]
    ids = [line["custom_id"] for line in lines]
    lines[1]["body"]["seed"] = 7  # any edit of the request
    added = {**lines[0], "custom_id": "brand-new"}
    sandbox_repo.write_input("data/nightly-eval.jsonl", lines=[lines[0], lines[1], lines[3], added])
    change = planned(run_cli, sandbox_repo)["nightly-eval"]
    assert change["reason_code"] == "spec_changed"
    edited = change["reason_data"]["diff"]["input"]
    assert (edited["requests_before"], edited["requests_after"]) == (4, 4)
    assert edited["sha256_before"] != edited["sha256_after"]
    assert edited["by_custom_id"] == {
        "added": 1,
        "removed": 1,
        "changed": 1,
        "examples": {"added": ["brand-new"], "removed": [ids[2]], "changed": [ids[1]]},
    }


def test_an_input_edited_back_resumes_its_cancelled_generation_as_a_next_attempt_never_a_twin(
    sandbox_repo: UserRepo, sandbox: Sandbox, run_cli: RunCli
) -> None:
    sandbox.configure(validation_seconds=30, cancel_seconds=0)  # nothing answered, cancels at once
    sandbox_repo.write_job("nightly-eval", requests=3)
    data = sandbox_repo.root / "data" / "nightly-eval.jsonl"
    first = data.read_bytes()
    assert run_cli("apply", "--auto-approve", *sandbox_repo.args()).exit_code == 0
    sandbox_repo.write_input("data/nightly-eval.jsonl", requests=4)  # B replaces A
    assert run_cli("apply", "--auto-approve", *sandbox_repo.args()).exit_code == 0
    data.write_bytes(first)  # back to A: B is cancelled, and A's cancelled batch resumed
    for _ in range(3):
        assert run_cli("apply", "--auto-approve", *sandbox_repo.args()).exit_code == 0
    seen = [
        (b.metadata["reconciler_generation"], b.metadata["reconciler_retry"], b.status, b.request_counts)
        for b in batches(sandbox, "nightly-eval")
        if b.metadata is not None
    ]
    units = [(generation, retry) for generation, retry, _, _ in seen]
    assert len(units) == len(set(units)) == 3, seen  # A attempt 1, B attempt 1, A attempt 2
    running = [retry for _, retry, status, _ in seen if status not in ("cancelled", "cancelling")]
    assert running == ["2"], seen  # only A's next attempt runs
