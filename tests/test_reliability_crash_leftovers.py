"""The leftovers a process killed between an upload and its create leaves, set up exactly.

The crash trials (test_reliability_crash.py) found them: an upload whose file id never
reached the state, which the next pass uploaded again, leaving the first unread forever.
Uploads now carry deterministic names with the owner in them, so a pass that follows such
trouble reuses the upload a create still needs and deletes ours that no batch will read.
"""

from __future__ import annotations

import json
import threading
from typing import Any

import httpx
import pytest

from reconciler.sandbox import Sandbox
from reconciler.specs.identity import owner_tag
from tests.fixtures.repo import MakeRepo, RunCli, UserRepo
from tests.hostile_server import BATCH, hostile_server
from tests.reconcile_helpers import batches, mutating, sdk

OWNER = "tests/reliability-leftovers"


def input_files(sandbox: Sandbox) -> list[dict[str, Any]]:
    with httpx.Client(base_url=sandbox.base_url, timeout=30) as http:
        files: list[dict[str, Any]] = http.get("/files", params={"purpose": "batch"}).json()["data"]
    return files


def _crashed_after_upload(
    sandbox_repo: UserRepo, sandbox: Sandbox, run_cli: RunCli, job: str = "a", *, with_state: bool = True
) -> Any:
    """What a process killed after its upload, before its create, leaves: an intent in the
    state without a file id, and an upload under the job's deterministic name."""
    generation = json.loads(run_cli("plan", "--json", *sandbox_repo.args()).stdout)["changes"][0][
        "generation"
    ]
    name = f"{job}-{generation}-{owner_tag(OWNER)[:8]}.jsonl"
    uploaded = sdk(sandbox).files.create(
        file=(name, (sandbox_repo.data / f"{job}.jsonl").read_bytes()), purpose="batch"
    )
    if with_state:
        intent = {"attempt": "0123456789ab", "generation": generation, "requests": 3}
        job_state = {
            "generation": generation,
            "provider": "sandbox",
            "status": "pending",
            "pending": [intent],
        }
        state = {"format_version": 1, "serial": 3, "lineage": "l", "jobs": {job: job_state}}
        sandbox_repo.state.parent.mkdir(parents=True, exist_ok=True)
        sandbox_repo.state.write_text(json.dumps(state))
    return uploaded


@pytest.fixture
def reconciler_owner() -> str:
    return OWNER


@pytest.mark.parametrize("with_state", [True, False], ids=["intent-pending", "state-lost"])
def test_an_upload_whose_create_never_went_out_is_reused_not_sent_again(
    sandbox_repo: UserRepo, sandbox: Sandbox, run_cli: RunCli, with_state: bool
) -> None:
    sandbox_repo.write_job("a", requests=3)
    uploaded = _crashed_after_upload(sandbox_repo, sandbox, run_cli, with_state=with_state)
    sandbox.reset_counts()
    assert run_cli("reconcile", *sandbox_repo.args()).exit_code == 0
    assert mutating(sandbox.request_counts()) == {"POST /v1/batches": 1}
    (batch,) = batches(sandbox, "a")
    assert batch.input_file_id == uploaded.id
    assert [f["id"] for f in input_files(sandbox)] == [uploaded.id]


def test_the_upload_of_an_intent_dropped_by_a_spec_change_is_deleted(
    sandbox_repo: UserRepo, sandbox: Sandbox, run_cli: RunCli
) -> None:
    sandbox_repo.write_job("a", requests=3)
    stale = _crashed_after_upload(sandbox_repo, sandbox, run_cli)
    sandbox_repo.write_input("data/a.jsonl", requests=4)
    sandbox.reset_counts()
    assert run_cli("reconcile", *sandbox_repo.args()).exit_code == 0
    assert mutating(sandbox.request_counts()) == {
        "POST /v1/files": 1,
        "POST /v1/batches": 1,
        "DELETE /v1/files/{id}": 1,
    }
    (batch,) = batches(sandbox, "a")
    assert [f["id"] for f in input_files(sandbox)] == [batch.input_file_id] != [stale.id]


def test_uploads_of_other_owners_and_other_tools_are_never_reused_or_deleted(
    sandbox_repo: UserRepo, sandbox: Sandbox, run_cli: RunCli
) -> None:
    sandbox_repo.write_job("a", requests=3)
    ours = _crashed_after_upload(sandbox_repo, sandbox, run_cli)
    content = (sandbox_repo.data / "a.jsonl").read_bytes()
    generation = ours.filename.split("-")[1]
    theirs = [
        sdk(sandbox).files.create(file=(name, content), purpose="batch").id
        for name in (f"a-{generation}-0badc0de.jsonl", f"a-{generation}.jsonl", "a.jsonl")
    ]
    sandbox_repo.write_input("data/a.jsonl", requests=4)  # ours is now superseded; theirs look alike
    assert run_cli("reconcile", *sandbox_repo.args()).exit_code == 0
    left = {f["id"] for f in input_files(sandbox)}
    assert ours.id not in left and set(theirs) <= left


def test_a_pass_with_nothing_pending_lists_no_files(
    sandbox_repo: UserRepo, sandbox: Sandbox, run_cli: RunCli
) -> None:
    sandbox_repo.write_job("a", requests=3)
    assert run_cli("reconcile", *sandbox_repo.args()).exit_code == 0
    sandbox.reset_counts()
    assert run_cli("reconcile", *sandbox_repo.args()).exit_code == 0
    assert "GET /v1/files" not in sandbox.request_counts()


def test_a_fresh_state_lists_its_files_beside_the_list_of_batches_not_after_it(
    make_repo: MakeRepo, run_cli: RunCli, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With no state, the uploads a lost one left are looked for: that listing goes out while
    the list of batches is still unanswered, not one round trip after it."""
    files_listed = threading.Event()
    held: list[bool] = []

    def hold_the_batches_until_files_are_listed(method: str, route: str) -> None:
        if (method, route) == ("GET", "/files"):
            files_listed.set()
        elif (method, route) == ("GET", "/batches"):
            held.append(files_listed.wait(timeout=10))  # a safety net: serial listings wait it out

    with hostile_server() as hostile:
        hostile.script("/batches", {"object": "list", "data": [], "has_more": False})
        hostile.script("/files", {"object": "list", "data": [], "has_more": False})
        upload = {"id": "file-1", "object": "file", "bytes": 1, "filename": "x.jsonl", "purpose": "batch"}
        hostile.script("POST /files", upload)
        hostile.script("POST /batches", BATCH | {"id": "batch_1"})
        hostile.on_request(hold_the_batches_until_files_are_listed)
        monkeypatch.setenv("RECONCILER_OWNER", OWNER)
        repo = make_repo()
        repo.write_provider("odd", base_url=hostile.base_url("scripted"))
        repo.write_job("a", provider="odd")
        result = run_cli("apply", "--auto-approve", *repo.args())
        assert result.exit_code == 0, result.stderr
        assert held == [True]
        assert (hostile.calls["GET /batches"], hostile.calls["GET /files"]) == (1, 1)


def test_an_apply_that_asks_and_is_refused_lists_no_files(
    sandbox_repo: UserRepo, sandbox: Sandbox, run_cli: RunCli
) -> None:
    """Off a terminal, apply without --auto-approve refuses a plan with changes: the uploads a
    lost state may have left are not looked for early then (nothing is applied)."""
    sandbox_repo.write_job("a", requests=3)
    sandbox.reset_counts()
    result = run_cli("apply", *sandbox_repo.args())
    assert result.exit_code == 1
    assert "--auto-approve" in result.stderr
    assert sandbox.request_counts() == {"GET /v1/batches": 1}
