"""plan / apply / reconcile against the sandbox over real HTTP: each action of the design page."""

from __future__ import annotations

import json

import pytest

from tests.reconcile_helpers import batches, mutating, state_of, use_sandbox


@pytest.fixture
def repo(make_repo, sandbox, monkeypatch):
    use_sandbox(monkeypatch, sandbox)
    return make_repo()


def test_plan_sends_no_mutating_request_and_its_detailed_exitcode_reports_pending_changes(
    repo, sandbox, run_cli
):
    repo.write_job("nightly-eval", requests=3)
    sandbox.reset_counts()
    result = run_cli("plan", "--detailed-exitcode", *repo.args())
    assert result.exit_code == 2, result.stderr
    assert "+ create" in result.stdout and "nightly-eval" in result.stdout
    assert mutating(sandbox.request_counts()) == {}
    assert not repo.state.exists()


def test_plan_exits_zero_with_detailed_exitcode_once_converged(repo, sandbox, run_cli):
    repo.write_job("nightly-eval", requests=3)
    assert run_cli("apply", "--auto-approve", *repo.args()).exit_code == 0
    result = run_cli("plan", "--detailed-exitcode", *repo.args())
    assert result.exit_code == 0, result.stdout + result.stderr
    assert "No changes" in result.stdout


def test_a_new_spec_becomes_exactly_one_upload_and_one_create(repo, sandbox, run_cli):
    repo.write_job("nightly-eval", requests=3)
    repo.write_job("ab-test", requests=2)
    sandbox.reset_counts()
    assert run_cli("apply", "--auto-approve", *repo.args()).exit_code == 0
    assert mutating(sandbox.request_counts()) == {"POST /v1/files": 2, "POST /v1/batches": 2}
    assert run_cli("apply", "--auto-approve", *repo.args()).exit_code == 0
    assert len(batches(sandbox)) == 2
    jobs = state_of(repo.root)["jobs"]
    assert sorted(jobs) == ["ab-test", "nightly-eval"]
    assert jobs["nightly-eval"]["batches"][0]["batch_id"] == batches(sandbox, "nightly-eval")[0].id


def test_an_edited_spec_whose_batch_still_runs_is_replaced(repo, sandbox, run_cli):
    sandbox.configure(validation_seconds=60)
    repo.write_job("nightly-eval", requests=3)
    run_cli("apply", "--auto-approve", *repo.args())
    first = batches(sandbox, "nightly-eval")[0]
    repo.write_input("data/nightly-eval.jsonl", requests=4)
    plan = run_cli("plan", *repo.args())
    assert "~ replace" in plan.stdout and first.id in plan.stdout
    assert run_cli("apply", "--auto-approve", *repo.args()).exit_code == 0
    now = {b.id: b for b in batches(sandbox, "nightly-eval")}
    assert now[first.id].status in ("cancelling", "cancelled")
    (new,) = [b for b in now.values() if b.id != first.id]
    assert new.metadata["reconciler_generation"] != first.metadata["reconciler_generation"]
    assert state_of(repo.root)["jobs"]["nightly-eval"]["batches"][0]["batch_id"] == new.id


def test_an_edit_after_completion_creates_the_new_generation_and_leaves_the_old_batch(repo, sandbox, run_cli):
    repo.write_job("nightly-eval", requests=2)
    assert run_cli("reconcile", "--wait", "--timeout", "60", *repo.args()).exit_code == 0
    (first,) = batches(sandbox, "nightly-eval")
    assert first.status == "completed"
    (repo.specs / "nightly-eval.yaml").unlink()
    repo.write_job("nightly-eval", requests=2, metadata={"team": "evals"})
    plan = run_cli("plan", *repo.args())
    assert "+ create" in plan.stdout and "~ replace" not in plan.stdout
    run_cli("apply", "--auto-approve", *repo.args())
    assert {b.id: b.status for b in batches(sandbox, "nightly-eval")}[first.id] == "completed"
    assert len(batches(sandbox, "nightly-eval")) == 2


def test_a_deleted_spec_with_a_running_batch_is_cancelled(repo, sandbox, run_cli):
    sandbox.configure(validation_seconds=60)
    repo.write_job("nightly-eval")
    repo.write_job("keep")
    run_cli("apply", "--auto-approve", *repo.args())
    (repo.specs / "nightly-eval.yaml").unlink()
    plan = run_cli("plan", "--json", *repo.args())
    actions = {c["job"]: c["action"] for c in json.loads(plan.stdout)["changes"]}
    assert actions == {"nightly-eval": "cancel", "keep": "noop"}
    run_cli("apply", "--auto-approve", *repo.args())
    assert batches(sandbox, "nightly-eval")[0].status in ("cancelling", "cancelled")
    assert batches(sandbox, "keep")[0].status == "validating"


def test_a_deleted_spec_whose_batch_finished_is_forgotten(repo, sandbox, run_cli):
    repo.write_job("nightly-eval")
    repo.write_job("keep")
    run_cli("reconcile", "--wait", "--timeout", "60", *repo.args())
    (repo.specs / "nightly-eval.yaml").unlink()
    sandbox.reset_counts()
    result = run_cli("reconcile", *repo.args())
    assert ". forget" in result.stdout
    assert "nightly-eval" not in state_of(repo.root)["jobs"]
    assert mutating(sandbox.request_counts()) == {}


def test_a_suspended_job_cancels_its_batch_and_creates_nothing(repo, sandbox, run_cli):
    sandbox.configure(validation_seconds=60)
    repo.write_job("nightly-eval")
    run_cli("apply", "--auto-approve", *repo.args())
    (repo.specs / "nightly-eval.yaml").unlink()
    repo.write_job("nightly-eval", suspend=True)
    sandbox.reset_counts()
    run_cli("apply", "--auto-approve", *repo.args())
    assert mutating(sandbox.request_counts()) == {"POST /v1/batches/{id}/cancel": 1}
    assert batches(sandbox, "nightly-eval")[0].status in ("cancelling", "cancelled")


def test_reconcile_wait_runs_the_job_to_completed_and_records_output_ids(repo, sandbox, run_cli):
    repo.write_job("nightly-eval", requests=3)
    result = run_cli("reconcile", "--wait", "--timeout", "60", *repo.args())
    assert result.exit_code == 0, result.stderr
    job = state_of(repo.root)["jobs"]["nightly-eval"]
    assert job["status"] == "completed"
    assert job["request_counts"] == {"total": 3, "completed": 3, "failed": 0}
    assert job["batches"][0]["output_file_id"].startswith("file-")
    status = run_cli("status", *repo.args())
    assert "nightly-eval" in status.stdout and "completed" in status.stdout and "3/0/3" in status.stdout


def test_status_with_no_state_says_how_to_start(repo, run_cli):
    result = run_cli("status", *repo.args())
    assert result.exit_code == 0 and "reconciler plan" in result.stdout


def test_apply_off_a_terminal_without_auto_approve_refuses_and_sends_nothing(repo, sandbox, run_cli):
    repo.write_job("nightly-eval")
    sandbox.reset_counts()
    result = run_cli("apply", *repo.args())
    assert result.exit_code == 1 and "--auto-approve" in result.stderr
    # Only the read that tells a plan with changes from one without (which exits 0).
    assert sandbox.request_counts() == {"GET /v1/batches": 1}


def test_an_empty_specs_dir_never_cancels_everything_without_allow_empty(repo, sandbox, run_cli):
    sandbox.configure(validation_seconds=60)
    repo.write_job("nightly-eval")
    run_cli("apply", "--auto-approve", *repo.args())
    (repo.specs / "nightly-eval.yaml").unlink()
    refused = run_cli("apply", "--auto-approve", *repo.args())
    assert refused.exit_code == 1 and "--allow-empty" in refused.stderr
    assert batches(sandbox, "nightly-eval")[0].status == "validating"
    assert run_cli("apply", "--auto-approve", "--allow-empty", *repo.args()).exit_code == 0
    assert batches(sandbox, "nightly-eval")[0].status in ("cancelling", "cancelled")


def test_a_saved_plan_is_applied_exactly_and_refused_once_it_no_longer_holds(
    repo, sandbox, run_cli, tmp_path
):
    repo.write_job("nightly-eval")
    saved = tmp_path / "plan.json"
    assert run_cli("plan", "--out", str(saved), *repo.args()).exit_code == 0
    repo.write_job("another")
    refused = run_cli("apply", str(saved), *repo.args())
    assert refused.exit_code == 1 and "no longer holds" in refused.stderr and "another" in refused.stderr
    assert batches(sandbox) == []
    run_cli("plan", "--out", str(saved), *repo.args())
    assert run_cli("apply", str(saved), *repo.args()).exit_code == 0
    assert len(batches(sandbox)) == 2


def test_the_saved_plan_and_json_plan_carry_the_documented_fields(repo, sandbox, run_cli, tmp_path):
    repo.write_job("nightly-eval", requests=5)
    document = json.loads(run_cli("plan", "--json", *repo.args()).stdout)
    assert document["format_version"] == 1
    (change,) = document["changes"]
    assert {"job", "action", "reason"} <= set(change)
    assert (change["job"], change["action"], change["requests"]) == ("nightly-eval", "create", 5)
    markdown = run_cli("plan", "--format", "markdown", *repo.args()).stdout
    assert "| `+` | `nightly-eval` | create | gpt-4o-mini | 5 |" in markdown
    assert "Launches gpt-4o-mini: 5 requests, ~" in markdown
