"""Incremental runs (spec.reuse, issue 23): answers of unchanged requests are reused, only what
changed is sent.  Real HTTP against the sandbox; what was sent is read back from the uploaded
input files through the official SDK."""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from reconciler.sandbox import Sandbox
from tests.fixtures.repo import CHAT, MODEL, RunCli, UserRepo, planned, request_body, request_lines
from tests.reconcile_helpers import batches, sdk, state_of

RESULTS = "../results/{job}-{run}.jsonl"


def reconciled(run_cli: RunCli, repo: UserRepo, *flags: str) -> None:
    result = run_cli("reconcile", "--wait", "--timeout", "60", *flags, *repo.args())
    assert result.exit_code == 0, result.stdout + result.stderr


def write_emb(repo: UserRepo, lines: list[dict[str, Any]], **spec: Any) -> None:
    repo.write_input("data/emb.jsonl", lines=lines)
    spec_file = repo.specs / "emb.yaml"
    if spec_file.exists():
        spec_file.unlink()
    repo.write_job("emb", input="data/emb.jsonl", results=RESULTS, **spec)


def edited(lines: list[dict[str, Any]], changed: range, added: range) -> list[dict[str, Any]]:
    """`changed` lines (0-based) with a new prompt, then the `added` requests appended."""
    out = [dict(line) for line in lines]
    for index in changed:
        body = request_body(CHAT, MODEL, index + 1)
        body["messages"] = [{"role": "user", "content": f"edited prompt {index}"}]
        out[index] = {**out[index], "body": body}
    extra = request_lines(max(added) + 1 if added else 0)[added.start :] if added else []
    return out + extra


def sent_lines(sandbox: Sandbox, batch: Any) -> list[dict[str, Any]]:
    content = sdk(sandbox).files.content(batch.input_file_id).read().decode()
    return [json.loads(line) for line in content.splitlines() if line.strip()]


def newest_batch(sandbox: Sandbox, job: str = "emb") -> Any:
    return max(batches(sandbox, job), key=lambda b: (b.created_at, b.id))


def results_of(repo: UserRepo) -> tuple[list[bytes], str]:
    job = state_of(repo.root)["jobs"]["emb"]
    path = repo.root / job["results"]["path"]
    return path.read_bytes().splitlines(keepends=True), job["run"]


def by_id(lines: list[bytes]) -> dict[str, bytes]:
    return {json.loads(line)["custom_id"]: line for line in lines}


REUSE = {"reuse": {"max_age": "30d"}}


@pytest.mark.slow
def test_200_then_10_added_and_5_edited_sends_exactly_15_and_merges_210_results(
    sandbox_repo: UserRepo, sandbox: Sandbox, run_cli: RunCli
) -> None:
    first = request_lines(200)
    write_emb(sandbox_repo, first, **REUSE)
    reconciled(run_cli, sandbox_repo)
    before, _ = results_of(sandbox_repo)
    assert len(before) == 200

    write_emb(sandbox_repo, edited(first, range(10, 15), range(200, 210)), **REUSE)
    change = planned(run_cli, sandbox_repo)["emb"]
    assert change["launch"]["requests"] == 15
    assert change["reused"]["requests"] == 195 and change["reused"]["total"] == 210
    text = run_cli("plan", *sandbox_repo.args()).stdout
    assert "15 of 210 requests (195 reused from run default)" in text, text
    reconciled(run_cli, sandbox_repo)

    assert len(batches(sandbox, "emb")) == 2
    sent = sent_lines(sandbox, newest_batch(sandbox))
    assert len(sent) == 15
    assert {line["custom_id"] for line in sent} == {
        f"req-{i:05d}" for i in [*range(11, 16), *range(201, 211)]
    }
    after, _ = results_of(sandbox_repo)
    assert [json.loads(line)["custom_id"] for line in after] == [f"req-{i:05d}" for i in range(1, 211)]
    earlier, now = by_id(before), by_id(after)
    identical = [cid for cid in earlier if cid in now and now[cid] == earlier[cid]]
    assert len(identical) == 195
    assert all(json.loads(line)["response"]["status_code"] == 200 for line in after)
    job = state_of(sandbox_repo.root)["jobs"]["emb"]
    assert job["reuse"]["reused"] == 195 and job["request_counts"]["total"] == 15


@pytest.mark.slow
def test_the_same_edit_without_reuse_sends_all_210(
    sandbox_repo: UserRepo, sandbox: Sandbox, run_cli: RunCli
) -> None:
    first = request_lines(200)
    write_emb(sandbox_repo, first)
    reconciled(run_cli, sandbox_repo)
    write_emb(sandbox_repo, edited(first, range(10, 15), range(200, 210)))
    reconciled(run_cli, sandbox_repo)
    assert len(sent_lines(sandbox, newest_batch(sandbox))) == 210


@pytest.mark.slow
def test_no_reuse_flag_sends_all_210(sandbox_repo: UserRepo, sandbox: Sandbox, run_cli: RunCli) -> None:
    first = request_lines(200)
    write_emb(sandbox_repo, first, **REUSE)
    reconciled(run_cli, sandbox_repo)
    write_emb(sandbox_repo, edited(first, range(10, 15), range(200, 210)), **REUSE)
    assert planned(run_cli, sandbox_repo, "--no-reuse")["emb"]["launch"]["requests"] == 210
    reconciled(run_cli, sandbox_repo, "--no-reuse")
    assert len(sent_lines(sandbox, newest_batch(sandbox))) == 210
    assert state_of(sandbox_repo.root)["jobs"]["emb"].get("reuse") is None


@pytest.mark.slow
def test_a_fresh_checkout_reuses_from_the_providers_files_and_sends_only_the_5_added(
    sandbox_repo: UserRepo, sandbox: Sandbox, run_cli: RunCli
) -> None:
    first = request_lines(210)
    write_emb(sandbox_repo, first, **REUSE)
    reconciled(run_cli, sandbox_repo)
    shutil.rmtree(sandbox_repo.root / ".reconciler")  # no state folder: no state, no store, no work

    write_emb(sandbox_repo, first + request_lines(215)[210:], **REUSE)
    reconciled(run_cli, sandbox_repo)
    assert len(sent_lines(sandbox, newest_batch(sandbox))) == 5
    after, _ = results_of(sandbox_repo)
    assert len(after) == 215
    assert all(json.loads(line)["response"]["status_code"] == 200 for line in after)


def test_everything_unchanged_but_the_run_id_creates_no_batch_and_completes_with_all_results(
    sandbox_repo: UserRepo, sandbox: Sandbox, run_cli: RunCli
) -> None:
    lines = request_lines(40)
    write_emb(sandbox_repo, lines, **REUSE)
    reconciled(run_cli, sandbox_repo)
    before, first_run = results_of(sandbox_repo)

    write_emb(sandbox_repo, lines, run="second", **REUSE)
    change = planned(run_cli, sandbox_repo)["emb"]
    assert change["action"] == "create" and change["launch"]["requests"] == 0
    reconciled(run_cli, sandbox_repo)
    assert len(batches(sandbox, "emb")) == 1
    after, run = results_of(sandbox_repo)
    assert run == "second" and run != first_run
    assert after == before
    job = state_of(sandbox_repo.root)["jobs"]["emb"]
    assert job["status"] == "completed" and job["reuse"]["reused"] == 40
    assert planned(run_cli, sandbox_repo)["emb"]["action"] == "noop"


@pytest.mark.slow
def test_a_run_that_reused_everything_is_dated_and_listed_between_the_runs_around_it(
    sandbox_repo: UserRepo, sandbox: Sandbox, run_cli: RunCli
) -> None:
    lines = request_lines(10)
    write_emb(sandbox_repo, lines, run="first", **REUSE)
    reconciled(run_cli, sandbox_repo)
    write_emb(sandbox_repo, lines, run="second", **REUSE)  # every answer reused: no batch
    reconciled(run_cli, sandbox_repo)
    write_emb(sandbox_repo, edited(lines, range(1), range(0)), run="third", **REUSE)
    reconciled(run_cli, sandbox_repo)

    history = state_of(sandbox_repo.root)["jobs"]["emb"]["history"]
    assert [run["run"] for run in history] == ["third", "second", "first"]  # newest first
    reused = history[1]
    assert reused["started_at"] and reused["ended_at"] and reused["reused"] == 10
    shown = run_cli("status", "emb", "--offline", *sandbox_repo.args()).stdout.splitlines()
    table = shown[next(i for i, line in enumerate(shown) if line.lstrip().startswith("RUN")) + 1 :]
    assert [line.split()[0] for line in table[:3]] == ["third", "second", "first"], shown


@pytest.mark.slow
def test_a_changed_custom_id_keeps_the_answer_byte_for_byte_under_its_new_label(
    sandbox_repo: UserRepo, sandbox: Sandbox, run_cli: RunCli
) -> None:
    lines = request_lines(10)
    write_emb(sandbox_repo, lines, **REUSE)
    reconciled(run_cli, sandbox_repo)
    before, _ = results_of(sandbox_repo)
    relabelled = [{**line, "custom_id": f"new-{i}"} for i, line in enumerate(lines)]
    write_emb(sandbox_repo, relabelled, **REUSE)
    reconciled(run_cli, sandbox_repo)
    assert len(batches(sandbox, "emb")) == 1
    after, _ = results_of(sandbox_repo)
    for i, (old, new) in enumerate(zip(before, after, strict=True)):
        assert new == old.replace(
            f'"custom_id":"req-{i + 1:05d}"'.encode(), f'"custom_id":"new-{i}"'.encode()
        )


@pytest.mark.slow
def test_an_earlier_error_a_changed_model_and_answers_past_max_age_are_sent_again(
    sandbox_repo: UserRepo, sandbox: Sandbox, run_cli: RunCli, monkeypatch: pytest.MonkeyPatch
) -> None:
    lines = request_lines(30)
    lines[2] = {**lines[2], "body": {**lines[2]["body"], "messages": []}}  # the sandbox answers 400
    write_emb(sandbox_repo, lines, **REUSE)
    reconciled(run_cli, sandbox_repo)
    write_emb(sandbox_repo, lines, run="two", **REUSE)
    reconciled(run_cli, sandbox_repo)
    assert [line["custom_id"] for line in sent_lines(sandbox, newest_batch(sandbox))] == ["req-00003"]

    other_model = [{**line, "body": {**line["body"], "model": "gpt-4o"}} for line in lines]
    write_emb(sandbox_repo, other_model, run="three", **REUSE)
    reconciled(run_cli, sandbox_repo)
    assert len(sent_lines(sandbox, newest_batch(sandbox))) == 30

    later = datetime.now(UTC) + timedelta(days=31)
    monkeypatch.setenv("RECONCILER_NOW", later.isoformat().replace("+00:00", "Z"))
    write_emb(sandbox_repo, other_model, run="four", **REUSE)
    reconciled(run_cli, sandbox_repo)
    assert len(sent_lines(sandbox, newest_batch(sandbox))) == 30  # every answer is 31 days old by then
    assert len(batches(sandbox, "emb")) == 4


def answer_store(repo: UserRepo) -> Path:
    return repo.root / ".reconciler" / "answers.sqlite"


@pytest.mark.slow
def test_status_output_json_and_the_dashboard_carry_the_reused_count(
    sandbox_repo: UserRepo, sandbox: Sandbox, run_cli: RunCli
) -> None:
    first = request_lines(20)
    write_emb(sandbox_repo, first, **REUSE)
    reconciled(run_cli, sandbox_repo)
    write_emb(sandbox_repo, first + request_lines(23)[20:], **REUSE)
    reconciled(run_cli, sandbox_repo)

    table = run_cli("status", "--offline", *sandbox_repo.args()) if _has_offline(run_cli) else None
    shown = (table or run_cli("status", *sandbox_repo.args())).stdout
    assert "3/0/3 +20 reused" in shown, shown
    detail = run_cli("status", "emb", *sandbox_repo.args()).stdout
    assert "reused       20 of 23 answered by earlier runs, most from run default" in detail, detail
    document = json.loads(run_cli("output", "--json", *sandbox_repo.args()).stdout)
    job = document["jobs"]["emb"]
    assert job["reused"] == 20 and job["request_counts"]["total"] == 3
    assert job["runs"][0]["reused"] == 20 and job["runs"][1]["reused"] == 0
    status_document = json.loads(run_cli("status", "--json", *sandbox_repo.args()).stdout)
    assert status_document["jobs"]["emb"]["reuse"]["reused"] == 20

    from reconciler.daemon.board import Snapshot
    from reconciler.daemon.dashboard import job_page, overview
    from reconciler.state.file import FileBackend

    state = FileBackend(sandbox_repo.state, None).read()
    snap = Snapshot(version=1, state=state)
    assert "3/3 +20 reused" in overview(snap)
    page = job_page(snap, "emb")
    assert page is not None and "3/3 +20 reused" in page


def _has_offline(run_cli: RunCli) -> bool:
    return "--offline" in run_cli("status", "--help").stdout


def delete_files_of(sandbox: Sandbox, job: str = "emb") -> None:
    """Every input and output file of the job's batches, gone from the provider."""
    client = sdk(sandbox)
    for batch in batches(sandbox, job):
        for file_id in (batch.input_file_id, batch.output_file_id):
            if file_id:
                client.files.delete(file_id)


@pytest.mark.slow
def test_the_store_answers_when_the_providers_files_are_gone(
    sandbox_repo: UserRepo, sandbox: Sandbox, run_cli: RunCli
) -> None:
    first = request_lines(30)
    write_emb(sandbox_repo, first, **REUSE)
    reconciled(run_cli, sandbox_repo)
    before, _ = results_of(sandbox_repo)
    assert answer_store(sandbox_repo).is_file()
    delete_files_of(sandbox)
    write_emb(sandbox_repo, first + request_lines(32)[30:], **REUSE)
    reconciled(run_cli, sandbox_repo)
    assert len(sent_lines(sandbox, newest_batch(sandbox))) == 2
    after, _ = results_of(sandbox_repo)
    assert after[:30] == before


@pytest.mark.slow
def test_two_checkouts_sharing_a_postgresql_state_share_the_answer_store(
    make_repo: Any, sandbox: Sandbox, run_cli: RunCli, state_db: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RECONCILER_SANDBOX_URL", sandbox.base_url)
    monkeypatch.setenv("RECONCILER_OWNER", "tests/reconciler")
    monkeypatch.setenv("RECONCILER_STATE_URL", state_db.url)
    laptop, runner = make_repo("laptop"), make_repo("runner")
    first = request_lines(30)
    write_emb(laptop, first, **REUSE)
    reconciled(run_cli, laptop)
    assert not answer_store(laptop).exists()  # the database holds the answers
    delete_files_of(sandbox)  # so only the shared store can answer the runner

    write_emb(runner, first + request_lines(33)[30:], **REUSE)
    reconciled(run_cli, runner)
    assert len(batches(sandbox, "emb")) == 2
    assert [line["custom_id"] for line in sent_lines(sandbox, newest_batch(sandbox))] == [
        "req-00031",
        "req-00032",
        "req-00033",
    ]
    job = json.loads(run_cli("status", "--json", *runner.args()).stdout)["jobs"]["emb"]
    after = (runner.root / job["results"]["path"]).read_bytes().splitlines()
    assert len(after) == 33 and all(json.loads(line)["response"]["status_code"] == 200 for line in after)
    assert state_db.query("SELECT count(*) FROM reconciler_answers")[0][0] == 33


def test_a_version_4_state_reads_as_it_is_with_no_reuse_recorded() -> None:
    from reconciler.state.document import parse_state

    job = {"generation": "g1", "provider": "sandbox", "status": "completed", "run": "default"}
    state = parse_state(
        {"format_version": 4, "serial": 3, "lineage": "l", "jobs": {"emb": job}}, "x", "state"
    )
    assert state.format_version == 6 and state.jobs["emb"].reuse is None and state.jobs["emb"].reused == 0


def test_identity_ignores_the_custom_id_key_order_and_spacing_but_not_a_number_type() -> None:
    from reconciler.specs.inputs.digest import line_identity

    a = b'{"custom_id": "a", "method": "POST", "url": "/v1/embeddings", "body": {"model": "m", "input": "x"}}'
    b = b'{"body":{"input":"x","model":"m"},"url":"/v1/embeddings","method":"POST","custom_id":"b"}'
    c = b'{"custom_id": "c", "method": "POST", "url": "/v1/chat/completions", "body": {"model": "m", "input": "x"}}'
    d = b'{"custom_id": "d", "method": "POST", "url": "/v1/embeddings", "body": {"model": "m", "input": "x", "n": 1.0}}'
    e = b'{"custom_id": "e", "method": "POST", "url": "/v1/embeddings", "body": {"model": "m", "input": "x", "n": 1}}'
    ids = [line_identity("", line)[1] for line in (a, b, c, d, e)]
    assert ids[0] == ids[1] and len(set(ids)) == 4


@pytest.mark.slow
def test_split_cuts_only_what_is_sent_and_replace_reuses_unless_no_reuse(
    sandbox_repo: UserRepo, sandbox: Sandbox, run_cli: RunCli
) -> None:
    first = request_lines(120)
    split = {"split": {"max_requests": 50}}
    write_emb(sandbox_repo, first, **split, **REUSE)
    reconciled(run_cli, sandbox_repo)
    assert len(batches(sandbox, "emb")) == 3
    write_emb(sandbox_repo, first + request_lines(130)[120:], **split, **REUSE)
    reconciled(run_cli, sandbox_repo)
    assert len(batches(sandbox, "emb")) == 4
    assert len(sent_lines(sandbox, newest_batch(sandbox))) == 10
    after, _ = results_of(sandbox_repo)
    assert len(after) == 130

    reconciled(run_cli, sandbox_repo, "--replace", "emb")  # a new run, every answer reused
    assert len(batches(sandbox, "emb")) == 4
    job = state_of(sandbox_repo.root)["jobs"]["emb"]
    assert (
        job["status"] == "completed" and job["reuse"]["reused"] == 130 and job["run"].startswith("default+")
    )
    reconciled(run_cli, sandbox_repo, "--replace", "emb", "--no-reuse")
    fresh = [
        b
        for b in batches(sandbox, "emb")
        if b.metadata["reconciler_run"] == state_of(sandbox_repo.root)["jobs"]["emb"]["run"]
    ]
    assert sorted(b.request_counts.total for b in fresh) == [30, 50, 50]


def test_a_budget_counts_only_the_requests_sent(
    sandbox_repo: UserRepo, sandbox: Sandbox, run_cli: RunCli
) -> None:
    first = request_lines(100)
    write_emb(sandbox_repo, first, **REUSE)
    reconciled(run_cli, sandbox_repo)
    write_emb(sandbox_repo, first + request_lines(102)[100:], budget={"max_usd": 0.0005}, **REUSE)
    change = planned(run_cli, sandbox_repo)["emb"]
    assert change["launch"]["requests"] == 2 and change["over_budget"] is None
    assert change["saved_by_reuse"]["input_usd"] > change["cost"]["input_usd"] > 0
    assert "saved by reuse" in run_cli("plan", *sandbox_repo.args()).stdout
    refused = planned(run_cli, sandbox_repo, "--no-reuse")["emb"]
    assert refused["launch"]["requests"] == 102 and refused["over_budget"] is not None
