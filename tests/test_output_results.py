"""`reconciler output`, `--download`, and results files that come back (or say they cannot)."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from reconciler.sandbox import Sandbox
from tests.fixtures.repo import MakeRepo, RunCli, UserRepo
from tests.reconcile_helpers import mutating, state_of, use_sandbox

ROOT = Path(__file__).resolve().parent.parent
OUTPUT_SCHEMA = json.loads((ROOT / "schema" / "output-v1.schema.json").read_text())
RESULTS = "results/nightly-eval.jsonl"
DOWNLOAD = "GET /v1/files/{id}/content"


@pytest.fixture
def repo(make_repo: MakeRepo, sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch) -> UserRepo:
    use_sandbox(monkeypatch, sandbox)
    return make_repo()


def finished_job(run_cli: RunCli, repo: UserRepo, **spec: Any) -> None:
    repo.write_job("nightly-eval", requests=5, results=f"../{RESULTS}", **spec)
    done = run_cli("reconcile", "--wait", "--timeout", "60", *repo.args())
    assert done.exit_code == 0, done.stdout + done.stderr


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_output_json_matches_its_schema_and_names_batches_files_results_and_usage(
    repo: UserRepo, run_cli: RunCli
) -> None:
    finished_job(run_cli, repo, split={"max_requests": 3})
    result = run_cli("output", "--json", *repo.args())
    assert result.exit_code == 0, result.stderr
    document = json.loads(result.stdout)
    jsonschema.Draft202012Validator(OUTPUT_SCHEMA).validate(document)
    job = document["jobs"]["nightly-eval"]
    recorded = state_of(repo.root)["jobs"]["nightly-eval"]
    assert [b["batch_id"] for b in job["generation"]["batches"]] == [
        b["batch_id"] for b in recorded["batches"]
    ]
    assert [b["output_file"]["id"] for b in job["generation"]["batches"]] == [
        b["output_file_id"] for b in recorded["batches"]
    ]
    assert job["generation"]["results"]["path"] == RESULTS
    assert job["generation"]["results"]["sha256"] == sha256(repo.root / RESULTS)
    assert job["generation"]["results"]["state"] == "ok"
    lines = [json.loads(line) for line in (repo.root / RESULTS).read_text().splitlines()]
    prompt = sum(line["response"]["body"]["usage"]["prompt_tokens"] for line in lines)
    assert job["usage"]["input_tokens"] == prompt > 0


@pytest.mark.slow
def test_output_json_has_each_jobs_cost_and_runs_as_status_json_records_them(
    repo: UserRepo, run_cli: RunCli
) -> None:
    repo.write_job("nightly-eval", requests=4, run="first")
    assert run_cli("reconcile", "--wait", "--timeout", "60", *repo.args()).exit_code == 0
    spec = repo.specs / "nightly-eval.yaml"
    spec.write_text(spec.read_text().replace("run: first", "run: second"))  # a second run of the job
    assert run_cli("reconcile", "--wait", "--timeout", "60", *repo.args()).exit_code == 0

    document = json.loads(run_cli("output", "--json", *repo.args()).stdout)
    recorded = json.loads(run_cli("status", "--json", *repo.args()).stdout)["jobs"]["nightly-eval"]

    jsonschema.Draft202012Validator(OUTPUT_SCHEMA).validate(document)
    job = document["jobs"]["nightly-eval"]
    assert [r["run"] for r in job["runs"]] == [r["run"] for r in recorded["history"]] == ["second", "first"]
    # the figures status --json records (an older run's cost is kept only while the state has it)
    assert [r["cost"] and r["cost"]["usd"] for r in job["runs"]] == [
        r["cost_usd"] for r in recorded["history"]
    ]
    assert job["runs"][0]["cost"]["usd"] > 0 and job["runs"][0]["cost"]["partial"] is False
    assert [r["batches"] for r in job["runs"]] == [r["batches"] for r in recorded["history"]]
    assert job["run"] == "second" and job["cost"] == job["runs"][0]["cost"]
    used = recorded["history"][0]["usage"]
    assert job["runs"][0]["usage"]["input_tokens"] == used["input"] > 0
    prices = recorded["prices"]
    assert job["cost"]["usd"] == pytest.approx(
        (used["input"] * prices["input"] + used["output"] * prices["output"]) / 1e6
    )


def test_output_text_shows_results_and_files_per_batch(repo: UserRepo, run_cli: RunCli) -> None:
    finished_job(run_cli, repo)
    batch = state_of(repo.root)["jobs"]["nightly-eval"]["batches"][0]
    result = run_cli("output", "nightly-eval", *repo.args())
    assert result.exit_code == 0
    assert RESULTS in result.stdout and batch["batch_id"] in result.stdout
    assert f"output {batch['output_file_id']}" in result.stdout and "tokens" in result.stdout


def test_output_of_an_unknown_job_is_one_line(repo: UserRepo, run_cli: RunCli) -> None:
    finished_job(run_cli, repo)
    result = run_cli("output", "nope", *repo.args())
    assert result.exit_code == 1 and result.stderr.count("\n") == 1 and "'nope'" in result.stderr


def test_download_writes_the_same_results_anywhere_and_changes_no_state(
    repo: UserRepo, sandbox: Sandbox, run_cli: RunCli, tmp_path: Path
) -> None:
    finished_job(run_cli, repo, split={"max_requests": 2})
    state_before = repo.state.read_bytes()
    sandbox.reset_counts()
    result = run_cli("output", "nightly-eval", "--download", str(tmp_path / "out"), *repo.args())
    assert result.exit_code == 0, result.stderr
    assert (tmp_path / "out" / "nightly-eval.jsonl").read_bytes() == (repo.root / RESULTS).read_bytes()
    assert repo.state.read_bytes() == state_before
    counts = sandbox.request_counts()
    assert mutating(counts) == {} and counts[DOWNLOAD] == 3  # one output file per part


def test_download_after_cleanup_deleted_the_files_says_so_in_one_line(
    repo: UserRepo, sandbox: Sandbox, run_cli: RunCli, tmp_path: Path
) -> None:
    finished_job(run_cli, repo, cleanup={"output_files": True})
    sandbox.reset_counts()
    result = run_cli("output", "nightly-eval", "--download", str(tmp_path / "out"), *repo.args())
    assert result.exit_code == 1 and "deleted by cleanup" in result.stderr
    assert "Traceback" not in result.stderr and sandbox.request_counts().get(DOWNLOAD) is None


def test_results_path_in_the_state_is_relative_to_the_repo(repo: UserRepo, run_cli: RunCli) -> None:
    finished_job(run_cli, repo)
    assert state_of(repo.root)["jobs"]["nightly-eval"]["results"]["path"] == RESULTS


def test_a_deleted_results_file_is_planned_then_written_again_from_kept_copies(
    repo: UserRepo, sandbox: Sandbox, run_cli: RunCli
) -> None:
    finished_job(run_cli, repo)
    written = sha256(repo.root / RESULTS)
    (repo.root / RESULTS).unlink()
    plan = run_cli("plan", "--detailed-exitcode", *repo.args())
    assert plan.exit_code == 0 and f"{RESULTS} is missing; reconcile writes it again" in plan.stdout
    sandbox.reset_counts()
    assert run_cli("reconcile", *repo.args()).exit_code == 0
    assert sha256(repo.root / RESULTS) == written
    assert sandbox.request_counts().get(DOWNLOAD) is None  # the work folder still had the files


def test_an_edited_results_file_is_downloaded_and_written_again(
    repo: UserRepo, sandbox: Sandbox, run_cli: RunCli
) -> None:
    finished_job(run_cli, repo)
    written = sha256(repo.root / RESULTS)
    (repo.root / RESULTS).write_text("edited\n")
    shutil.rmtree(repo.root / ".reconciler" / "work")
    sandbox.reset_counts()
    assert run_cli("reconcile", *repo.args()).exit_code == 0
    assert sha256(repo.root / RESULTS) == written
    assert sandbox.request_counts()[DOWNLOAD] == 1 and mutating(sandbox.request_counts()) == {}


def test_results_whose_files_were_cleaned_up_are_reported_lost_once(
    repo: UserRepo, sandbox: Sandbox, run_cli: RunCli
) -> None:
    finished_job(run_cli, repo, cleanup={"output_files": True})
    (repo.root / RESULTS).unlink()
    shutil.rmtree(repo.root / ".reconciler" / "work")
    first = run_cli("reconcile", *repo.args())
    assert first.exit_code == 0
    assert [line for line in first.stdout.splitlines() if "warning: " in line] == [
        line for line in first.stdout.splitlines() if "cannot be written again" in line
    ]
    assert first.stdout.count("warning: ") == 1
    sandbox.reset_counts()
    second = run_cli("reconcile", *repo.args())
    assert "warning: " not in second.stdout  # the plan still notes it; the warning came once
    assert sandbox.request_counts().get(DOWNLOAD) is None  # not tried again
    assert not (repo.root / RESULTS).exists()
    status = run_cli("status", *repo.args())
    assert "LOST" in status.stdout
    results = json.loads(run_cli("output", "--json", *repo.args()).stdout)["jobs"]["nightly-eval"]
    assert results["generation"]["results"]["state"] == "lost"
    assert "deleted by cleanup" in results["generation"]["results"]["lost"]


def test_an_absolute_results_path_from_an_older_state_is_read_and_made_relative(
    repo: UserRepo, sandbox: Sandbox, run_cli: RunCli
) -> None:
    finished_job(run_cli, repo)
    written = (repo.root / RESULTS).stat().st_mtime_ns
    state = json.loads(repo.state.read_text())
    state["jobs"]["nightly-eval"]["results"]["path"] = str(repo.root / RESULTS)
    repo.state.write_text(json.dumps(state))
    assert run_cli("reconcile", *repo.args()).exit_code == 0
    assert state_of(repo.root)["jobs"]["nightly-eval"]["results"]["path"] == RESULTS
    assert (repo.root / RESULTS).stat().st_mtime_ns == written  # not written again


def test_a_state_committed_from_another_machine_gets_its_results_written_here(
    repo: UserRepo, run_cli: RunCli
) -> None:
    finished_job(run_cli, repo)
    written = sha256(repo.root / RESULTS)
    state = json.loads(repo.state.read_text())
    state["jobs"]["nightly-eval"]["results"]["path"] = "/home/runner/work/evals/evals/" + RESULTS
    repo.state.write_text(json.dumps(state))
    (repo.root / RESULTS).unlink()
    assert run_cli("reconcile", *repo.args()).exit_code == 0
    assert sha256(repo.root / RESULTS) == written
    assert state_of(repo.root)["jobs"]["nightly-eval"]["results"]["path"] == RESULTS
