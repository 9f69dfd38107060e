"""Issue 25, item 16: an upload retried after the server stored it leaves no file behind.

An upload is retried on a 5xx like a read (up to 5 tries), and a server may store the file
before failing the answer: each such try left an orphan at the provider.  The sandbox's
`lost_upload_rate` knob stores the upload, then answers 500.
"""

from __future__ import annotations

import pytest

from reconciler.sandbox import Sandbox
from tests.fixtures.repo import RunCli, UserRepo
from tests.reconcile_helpers import batches, sdk


def our_uploads(sandbox: Sandbox) -> list[str]:
    """Ids of the batch files this job uploaded (upload names start with the job's name)."""
    files = sdk(sandbox).files.list(purpose="batch")
    return sorted(f.id for f in files if f.filename.startswith("nightly-eval-"))


def uploads_sent(sandbox: Sandbox) -> int:
    return sandbox.request_counts().get("POST /v1/files", 0)


def test_an_upload_stored_then_answered_500_and_sent_again_leaves_one_file(
    sandbox_repo: UserRepo, sandbox: Sandbox, run_cli: RunCli
) -> None:
    # Seed 1's first two rolls are 0.13 and 0.85: the first try is stored and answered 500,
    # the second succeeds.
    sandbox.configure(lost_upload_rate=0.5, seed=1)
    sandbox_repo.write_job("nightly-eval", requests=3)
    result = run_cli("apply", "--auto-approve", *sandbox_repo.args())
    assert result.exit_code == 0, result.stderr
    assert uploads_sent(sandbox) == 2, "the knob was meant to lose the first answer"
    (batch,) = batches(sandbox, "nightly-eval")
    assert our_uploads(sandbox) == [batch.input_file_id]  # the first copy was swept


@pytest.mark.slow
def test_uploads_that_all_failed_after_storing_leave_only_the_one_the_batch_reads(
    sandbox_repo: UserRepo, sandbox: Sandbox, run_cli: RunCli
) -> None:
    sandbox.configure(lost_upload_rate=1.0)
    sandbox_repo.write_job("nightly-eval", requests=3)
    failed = run_cli("apply", "--auto-approve", *sandbox_repo.args())
    assert failed.exit_code == 1
    assert "error: nightly-eval: upload part 0 attempt 1: " in failed.stderr and "HTTP 500" in failed.stderr
    stored = our_uploads(sandbox)
    assert len(stored) == uploads_sent(sandbox) == 5  # each try was stored
    sandbox.configure(lost_upload_rate=0.0)
    sandbox.reset_counts()
    again = run_cli("apply", "--auto-approve", *sandbox_repo.args())
    assert again.exit_code == 0, again.stderr
    assert uploads_sent(sandbox) == 0  # a stored copy is reused, not sent a sixth time
    (batch,) = batches(sandbox, "nightly-eval")
    assert batch.input_file_id in stored
    assert our_uploads(sandbox) == [batch.input_file_id]


def test_an_upload_that_went_through_lists_no_files(
    sandbox_repo: UserRepo, sandbox: Sandbox, run_cli: RunCli
) -> None:
    """The sweep costs a list only after a doubtful retry: a clean pass after the first lists nothing."""
    sandbox_repo.write_job("nightly-eval", requests=3)
    assert run_cli("apply", "--auto-approve", *sandbox_repo.args()).exit_code == 0
    sandbox_repo.write_job("second", requests=2)
    sandbox.reset_counts()
    assert run_cli("apply", "--auto-approve", *sandbox_repo.args()).exit_code == 0
    assert sandbox.request_counts().get("GET /v1/files", 0) == 0
