"""Beyond one batch: splitting, retrying only what did not succeed, merged results, cleanup."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from reconciler.sandbox import Sandbox
from tests.fixtures.repo import RunCli, UserRepo, planned
from tests.reconcile_helpers import batches, sdk, state_of


def reconcile_until_done(
    run_cli: RunCli, sandbox_repo: UserRepo, passes: int = 1, *, ends: str = "completed"
) -> None:
    for _ in range(passes):
        result = run_cli("reconcile", "--wait", "--timeout", "60", *sandbox_repo.args())
        if ends == "completed":
            assert result.exit_code == 0, result.stdout + result.stderr
        else:  # --wait fails on a job that did not complete, naming it
            assert result.exit_code == 1 and f"nightly-eval: ended {ends}" in result.stderr, result.stderr


def result_lines(sandbox_repo: UserRepo, name: str = "nightly-eval") -> list[dict[str, Any]]:
    return [
        json.loads(line)
        for line in (sandbox_repo.root / "results" / f"{name}.jsonl").read_text().splitlines()
    ]


def test_120_requests_split_at_50_become_3_batches_and_120_result_lines_in_input_order(
    sandbox_repo: UserRepo, sandbox: Sandbox, run_cli: RunCli
) -> None:
    sandbox_repo.write_job(
        "nightly-eval", requests=120, split={"max_requests": 50}, results="../results/nightly-eval.jsonl"
    )
    change = planned(run_cli, sandbox_repo)["nightly-eval"]
    assert (change["reason_code"], change["reason_data"]) == ("no_batch_yet", {"requests": 120, "parts": 3})
    reconcile_until_done(run_cli, sandbox_repo)
    live = batches(sandbox, "nightly-eval")
    assert sorted((b.metadata["reconciler_part"], b.request_counts.total) for b in live) == [
        ("0", 50),
        ("1", 50),
        ("2", 20),
    ]
    lines = result_lines(sandbox_repo)
    assert [line["custom_id"] for line in lines] == [f"req-{i:05d}" for i in range(1, 121)]
    assert all(line["response"]["status_code"] == 200 for line in lines)
    job = state_of(sandbox_repo.root)["jobs"]["nightly-eval"]
    assert job["status"] == "completed" and len(job["batches"]) == 3
    results_file = sandbox_repo.root / "results" / "nightly-eval.jsonl"
    assert job["results"]["sha256"] == hashlib.sha256(results_file.read_bytes()).hexdigest()


def test_an_expiring_batch_is_retried_with_only_its_unfinished_requests_until_all_are_answered(
    sandbox_repo: UserRepo, sandbox: Sandbox, run_cli: RunCli
) -> None:
    sandbox.configure(expiry_seconds=1.0, requests_per_second=40, validation_seconds=0.05)
    sandbox_repo.write_job(
        "nightly-eval", requests=100, retry={"max_attempts": 4}, results="../results/nightly-eval.jsonl"
    )
    reconcile_until_done(run_cli, sandbox_repo)
    live = batches(sandbox, "nightly-eval")
    submitted = sum(b.request_counts.total for b in live)
    assert len(live) >= 2, "the window was meant to expire the first batch"
    assert submitted < 4 * 100
    assert sorted(b.metadata["reconciler_retry"] for b in live) == [str(n) for n in range(1, len(live) + 1)]
    lines = result_lines(sandbox_repo)
    assert len(lines) == 100 and all(line["response"]["status_code"] == 200 for line in lines)
    assert state_of(sandbox_repo.root)["jobs"]["nightly-eval"]["status"] == "completed"


def test_with_one_attempt_an_expired_job_stays_expired_and_keeps_its_partial_results(
    sandbox_repo: UserRepo, sandbox: Sandbox, run_cli: RunCli
) -> None:
    sandbox.configure(expiry_seconds=1.0, requests_per_second=40, validation_seconds=0.05)
    sandbox_repo.write_job("nightly-eval", requests=100, results="../results/nightly-eval.jsonl")
    reconcile_until_done(run_cli, sandbox_repo, ends="expired")
    assert state_of(sandbox_repo.root)["jobs"]["nightly-eval"]["status"] == "expired"
    lines = result_lines(sandbox_repo)
    answered = [line for line in lines if line["response"]]
    expired = [line for line in lines if line["error"] and line["error"]["code"] == "batch_expired"]
    assert answered and expired and len(answered) + len(expired) == 100
    assert len(batches(sandbox, "nightly-eval")) == 1


def test_a_retry_whose_create_answer_was_lost_is_adopted_not_sent_twice(
    sandbox_repo: UserRepo, sandbox: Sandbox, run_cli: RunCli
) -> None:
    sandbox.configure(expiry_seconds=1.0, requests_per_second=40, validation_seconds=0.05)
    sandbox_repo.write_job("nightly-eval", requests=100, retry={"max_attempts": 2})
    run_cli("reconcile", *sandbox_repo.args())
    sandbox.configure(lost_response_rate=1.0)
    first = batches(sandbox, "nightly-eval")[0]
    from tests.reconcile_helpers import wait_until

    wait_until(lambda: sdk(sandbox).batches.retrieve(first.id).status == "expired")
    lost = run_cli("reconcile", *sandbox_repo.args())
    assert lost.exit_code == 1 and "outcome unknown" in lost.stderr
    sandbox.configure(lost_response_rate=0.0)
    run_cli("reconcile", "--wait", "--timeout", "60", *sandbox_repo.args())  # the retry may expire too
    retries = [b.metadata["reconciler_retry"] for b in batches(sandbox, "nightly-eval")]
    assert sorted(retries) == ["1", "2"]


def test_cleanup_deletes_exactly_the_files_the_reconciler_uploaded_and_downloaded(
    sandbox_repo: UserRepo, sandbox: Sandbox, run_cli: RunCli
) -> None:
    foreign = sdk(sandbox).files.create(file=("mine.jsonl", b'{"x": 1}\n'), purpose="batch")
    sandbox_repo.write_job(
        "nightly-eval",
        requests=3,
        results="../results/nightly-eval.jsonl",
        cleanup={"input_files": True, "output_files": True},
    )
    reconcile_until_done(run_cli, sandbox_repo, passes=2)
    (batch,) = batches(sandbox, "nightly-eval")
    remaining = {f.id for f in sdk(sandbox).files.list()}
    assert foreign.id in remaining
    assert batch.input_file_id not in remaining and batch.output_file_id not in remaining
    assert len(result_lines(sandbox_repo)) == 3
