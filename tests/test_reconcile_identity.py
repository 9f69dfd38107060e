"""Identity and ownership: the live list is the truth, creates are exactly-once, owners are apart."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from reconciler.sandbox import Sandbox
from reconciler.state.file import state_lock
from tests.fixtures.repo import MakeRepo, RunCli, UserRepo
from tests.reconcile_helpers import batches, mutating, sdk, state_of, use_sandbox


def test_a_deleted_state_file_is_rebuilt_from_the_live_list_with_zero_creates(
    sandbox_repo: UserRepo, sandbox: Sandbox, run_cli: RunCli
) -> None:
    for name in ("a", "b", "c"):
        sandbox_repo.write_job(name)
    run_cli("apply", "--auto-approve", *sandbox_repo.args())
    before = {
        name: job["batches"][0]["batch_id"] for name, job in state_of(sandbox_repo.root)["jobs"].items()
    }
    sandbox_repo.state.unlink()
    sandbox.reset_counts()
    plan = run_cli("plan", "--json", *sandbox_repo.args())
    assert {c["action"] for c in json.loads(plan.stdout)["changes"]} == {"adopt"}
    assert run_cli("reconcile", *sandbox_repo.args()).exit_code == 0
    assert mutating(sandbox.request_counts()) == {}
    after = {name: job["batches"][0]["batch_id"] for name, job in state_of(sandbox_repo.root)["jobs"].items()}
    assert after == before


def test_with_every_create_response_lost_each_job_still_gets_exactly_one_batch(
    sandbox_repo: UserRepo, sandbox: Sandbox, run_cli: RunCli
) -> None:
    sandbox.configure(lost_response_rate=1.0)
    for name in ("a", "b", "c", "d"):
        sandbox_repo.write_job(name)
    first = run_cli("reconcile", *sandbox_repo.args())
    assert first.exit_code == 1 and first.stderr.count("outcome unknown") == 4
    assert all(job["pending"] for job in state_of(sandbox_repo.root)["jobs"].values())
    for _ in range(2):
        assert run_cli("reconcile", *sandbox_repo.args()).exit_code == 0
    per_job = [len(batches(sandbox, name)) for name in ("a", "b", "c", "d")]
    assert per_job == [1, 1, 1, 1]
    assert all(not job["pending"] and job["batches"] for job in state_of(sandbox_repo.root)["jobs"].values())


def test_a_pending_create_reuses_its_recorded_upload_instead_of_uploading_again(
    sandbox_repo: UserRepo, sandbox: Sandbox, run_cli: RunCli
) -> None:
    sandbox_repo.write_job("a")
    generation = json.loads(run_cli("plan", "--json", *sandbox_repo.args()).stdout)["changes"][0][
        "generation"
    ]
    uploaded = sdk(sandbox).files.create(
        file=("a.jsonl", (sandbox_repo.data / "a.jsonl").read_bytes()), purpose="batch"
    )
    pending = {
        "attempt": "feedc0ffee00",
        "generation": generation,
        "input_file_id": uploaded.id,
        "requests": 3,
    }
    job = {"generation": generation, "provider": "sandbox", "status": "pending", "pending": [pending]}
    sandbox_repo.state.parent.mkdir(parents=True, exist_ok=True)
    sandbox_repo.state.write_text(
        json.dumps({"format_version": 1, "serial": 1, "lineage": "l", "jobs": {"a": job}})
    )
    sandbox.reset_counts()
    assert run_cli("reconcile", *sandbox_repo.args()).exit_code == 0
    assert mutating(sandbox.request_counts()) == {"POST /v1/batches": 1}
    (batch,) = batches(sandbox, "a")
    assert batch.input_file_id == uploaded.id and batch.metadata["reconciler_attempt"] == "feedc0ffee00"


@pytest.mark.slow
def test_hundreds_of_foreign_batches_across_pages_are_untouched_and_not_counted(
    sandbox_repo: UserRepo, sandbox: Sandbox, run_cli: RunCli
) -> None:
    client = sdk(sandbox)
    upload = client.files.create(
        file=("theirs.jsonl", _one_line()),
        purpose="batch",
    )
    foreign = [
        client.batches.create(
            input_file_id=upload.id,
            endpoint="/v1/chat/completions",
            completion_window="24h",
            metadata={"reconciler_job": "nightly-eval"} if i % 2 else None,
        ).id
        for i in range(230)
    ]
    sandbox_repo.write_job("nightly-eval")
    sandbox.configure(validation_seconds=30)  # ours must still run when its spec goes
    sandbox.reset_counts()
    assert run_cli("apply", "--auto-approve", *sandbox_repo.args()).exit_code == 0
    counts = sandbox.request_counts()
    assert counts["POST /v1/batches"] == 1 and "POST /v1/batches/{id}/cancel" not in counts
    assert counts["GET /v1/batches"] == 3  # 231 live batches, 100 a page
    (sandbox_repo.specs / "nightly-eval.yaml").unlink()
    run_cli("apply", "--auto-approve", "--allow-empty", *sandbox_repo.args())
    statuses = {b.id: b.status for b in client.batches.list(limit=100)}
    assert all(statuses[i] not in ("cancelling", "cancelled") for i in foreign)
    (recorded,) = state_of(sandbox_repo.root)["jobs"]["nightly-eval"]["batches"]
    assert statuses[recorded["batch_id"]] in ("cancelling", "cancelled")


def _one_line() -> bytes:
    line = {
        "custom_id": "x",
        "method": "POST",
        "url": "/v1/chat/completions",
        "body": {"model": "gpt-4o-mini"},
    }
    return (json.dumps(line) + "\n").encode()


def test_two_owners_sharing_one_account_never_touch_each_others_batches(
    make_repo: MakeRepo, sandbox: Sandbox, run_cli: RunCli, monkeypatch: pytest.MonkeyPatch
) -> None:
    sandbox.configure(validation_seconds=60)
    ours, theirs = make_repo("ours"), make_repo("theirs")
    for repo in (ours, theirs):
        repo.write_job("nightly-eval")
    use_sandbox(monkeypatch, sandbox, owner="github.com/acme/ours")
    run_cli("apply", "--auto-approve", *ours.args())
    use_sandbox(monkeypatch, sandbox, owner="github.com/acme/theirs")
    run_cli("apply", "--auto-approve", *theirs.args())
    assert len(batches(sandbox, "nightly-eval")) == 2
    (theirs.specs / "nightly-eval.yaml").unlink()
    run_cli("apply", "--auto-approve", "--allow-empty", *theirs.args())
    ours_id = state_of(ours.root)["jobs"]["nightly-eval"]["batches"][0]["batch_id"]
    statuses = {b.id: b.status for b in batches(sandbox, "nightly-eval")}
    (theirs_id,) = set(statuses) - {ours_id}
    assert statuses[ours_id] == "validating"
    assert statuses[theirs_id] in ("cancelling", "cancelled")
    use_sandbox(monkeypatch, sandbox, owner="github.com/acme/ours")
    plan = run_cli("plan", "--json", *ours.args())
    assert [c["action"] for c in json.loads(plan.stdout)["changes"]] == ["noop"]


def test_a_state_file_of_another_owner_is_refused(
    sandbox_repo: UserRepo, sandbox: Sandbox, run_cli: RunCli, monkeypatch: pytest.MonkeyPatch
) -> None:
    sandbox_repo.write_job("nightly-eval")
    run_cli("apply", "--auto-approve", *sandbox_repo.args())
    use_sandbox(monkeypatch, sandbox, owner="someone/else")
    result = run_cli("plan", *sandbox_repo.args())
    assert result.exit_code == 1 and "belongs to owner" in result.stderr


def test_the_state_file_keeps_its_lineage_bumps_its_serial_and_keeps_a_backup(
    sandbox_repo: UserRepo, sandbox: Sandbox, run_cli: RunCli
) -> None:
    sandbox_repo.write_job("nightly-eval")
    run_cli("apply", "--auto-approve", *sandbox_repo.args())
    first = state_of(sandbox_repo.root)
    run_cli("reconcile", *sandbox_repo.args())
    second = state_of(sandbox_repo.root)
    assert second["lineage"] == first["lineage"] and second["serial"] > first["serial"]
    assert first["format_version"] == 5
    text = sandbox_repo.state.read_text()
    document = json.loads(text)
    # Sorted keys, one a line at the top; one line per job, in name order (state/file.py).
    assert [line.split('"')[1] for line in text.splitlines() if line.startswith('  "')] == sorted(document)
    jobs = [line for line in text.splitlines() if line.startswith('    "')]
    assert [line.split('"')[1] for line in jobs] == sorted(document["jobs"]) == ["nightly-eval"]
    assert text.endswith("}\n")
    backup = json.loads(Path(str(sandbox_repo.state) + ".backup").read_text())
    assert backup["serial"] < second["serial"]


def test_a_second_writer_is_refused_with_the_holders_details(
    sandbox_repo: UserRepo, sandbox: Sandbox, run_cli: RunCli, monkeypatch: pytest.MonkeyPatch
) -> None:
    sandbox_repo.write_job("nightly-eval")
    monkeypatch.setenv("RECONCILER_LOCK_TIMEOUT", "0.2")
    with state_lock(sandbox_repo.state, "reconciler apply (test holder)"):
        result = run_cli("apply", "--auto-approve", *sandbox_repo.args())
    assert result.exit_code == 1
    assert "locked by pid" in result.stderr and "reconciler apply (test holder)" in result.stderr
    assert batches(sandbox) == []


def test_a_key_from_a_variable_reaches_the_server_and_no_file_or_output(
    make_repo: MakeRepo, sandbox: Sandbox, run_cli: RunCli, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = "sk-test-RECOGNISABLE-7f3a9c"
    sandbox.configure(api_key=key)
    monkeypatch.setenv("RECONCILER_OWNER", "tests/secrets")
    monkeypatch.setenv("SANDBOX_KEY", key)
    sandbox_repo = make_repo()
    sandbox_repo.write_provider(
        "direct", base_url=sandbox.base_url, headers={"Authorization": "Bearer ${SANDBOX_KEY}"}
    )
    sandbox_repo.write_job("nightly-eval", provider="direct", results="../results/nightly-eval.jsonl")
    outputs = [
        run_cli(*args, *sandbox_repo.args()) for args in (["plan"], ["reconcile", "--wait"], ["status"])
    ]
    assert all(o.exit_code == 0 for o in outputs), [o.stderr for o in outputs]
    assert state_of(sandbox_repo.root)["jobs"]["nightly-eval"]["status"] == "completed"
    monkeypatch.setenv("SANDBOX_KEY", key + "-wrong")
    refused = run_cli("plan", *sandbox_repo.args())
    assert refused.exit_code == 1 and "401" in refused.stderr
    texts = [o.stdout + o.stderr for o in [*outputs, refused]]
    texts += [p.read_text(errors="replace") for p in sandbox_repo.root.rglob("*") if p.is_file()]
    assert not [t for t in texts if key in t]


def test_a_missing_variable_is_named_before_any_request_or_write(
    make_repo: MakeRepo, sandbox: Sandbox, run_cli: RunCli, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RECONCILER_OWNER", "tests/secrets")
    monkeypatch.delenv("SANDBOX_KEY", raising=False)
    sandbox_repo = make_repo()
    sandbox_repo.write_provider(
        "direct", base_url=sandbox.base_url, headers={"Authorization": "Bearer ${SANDBOX_KEY}"}
    )
    sandbox_repo.write_job("nightly-eval", provider="direct")
    sandbox.reset_counts()
    result = run_cli("plan", *sandbox_repo.args())
    assert result.exit_code == 1 and "SANDBOX_KEY" in result.stderr
    assert sandbox.request_counts() == {}
    assert sandbox_repo.written() == []
