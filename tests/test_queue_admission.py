"""Queue-aware admission (issue 22): jobs wait for room in their model's batch queue instead of
failing against it.  Real HTTP throughout: the sandbox enforces the same limits (its `limits`
knob) with OpenAI's error body, and the official SDK reads what it made."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from reconciler.sandbox import Sandbox
from tests.fixtures.repo import CHAT, MODEL, RunCli, UserRepo
from tests.reconcile_helpers import batches, state_of

PROVIDER = "queue"
CONTENT_CHARS = 1_600  # a request of ~407 prompt tokens (400 of text, 4 around the message, 3 priming)
REQUEST_TOKENS = CONTENT_CHARS // 4 + 7


def long_lines(job: str, requests: int, chars: int = CONTENT_CHARS) -> list[dict[str, Any]]:
    text = (f"{job} " * chars)[:chars]
    return [
        {
            "custom_id": f"{job}-{i}",
            "method": "POST",
            "url": CHAT,
            "body": {"model": MODEL, "messages": [{"role": "user", "content": text}], "max_tokens": 16},
        }
        for i in range(requests)
    ]


def queue_provider(repo: UserRepo, sandbox: Sandbox, limits: dict[str, Any] | None) -> None:
    spec: dict[str, Any] = {"base_url": sandbox.base_url}
    if limits is not None:
        spec["limits"] = limits
    document = {
        "apiVersion": "reconciler/v1",
        "kind": "Provider",
        "metadata": {"name": PROVIDER},
        "spec": spec,
    }
    repo.write_spec(f"specs/{PROVIDER}.yaml", json.dumps(document))


def queue_jobs(repo: UserRepo, count: int, requests: int = 3, **fields: Any) -> list[str]:
    names = [f"job-{i:02d}" for i in range(count)]
    for name in names:
        repo.write_input(f"data/{name}.jsonl", lines=long_lines(name, requests))
        repo.write_job(name, provider=PROVIDER, **fields)
    return names


def refused(sandbox: Sandbox) -> list[Any]:
    return [
        b
        for b in batches(sandbox)
        if b.errors and b.errors.data and b.errors.data[0].code.endswith("_limit_exceeded")
    ]


def wait_done(run_cli: RunCli, repo: UserRepo, *extra: str) -> Any:
    result = run_cli("reconcile", "--wait", "--timeout", "120", *extra, *repo.args())
    assert result.exit_code == 0, result.stdout + result.stderr
    return result


def statuses(repo: UserRepo) -> dict[str, str]:
    return {name: job["status"] for name, job in state_of(repo.root)["jobs"].items()}


@pytest.fixture
def fits_three(sandbox: Sandbox) -> int:
    """A queue that holds three jobs of three requests, enforced by the sandbox."""
    limit = 3 * 3 * REQUEST_TOKENS + REQUEST_TOKENS // 2
    sandbox.configure(limits={MODEL: {"enqueued_tokens": limit}}, requests_per_second=30)
    return limit


@pytest.mark.slow
def test_twelve_jobs_over_a_declared_limit_wait_their_turn_and_all_complete(
    sandbox_repo: UserRepo, sandbox: Sandbox, run_cli: RunCli, fits_three: int
) -> None:
    queue_provider(sandbox_repo, sandbox, {MODEL: {"enqueued_tokens": fits_three}})
    names = queue_jobs(sandbox_repo, 12)
    applied = run_cli("apply", "--auto-approve", *sandbox_repo.args())
    assert applied.exit_code == 0, applied.stdout + applied.stderr
    assert len(batches(sandbox)) == 3  # three admitted at once
    shown = statuses(sandbox_repo)
    assert sorted(shown.values()).count("queued") == 9
    status = run_cli("status", *sandbox_repo.args())
    assert status.stdout.count("queued") >= 9, status.stdout
    wait_done(run_cli, sandbox_repo)
    assert set(statuses(sandbox_repo).values()) == {"completed"}
    assert len(batches(sandbox)) == 12 and refused(sandbox) == []
    assert {n: statuses(sandbox_repo)[n] for n in names} == dict.fromkeys(names, "completed")


def test_a_queued_job_reads_queued_and_in_sync_in_live_status_as_offline(
    sandbox_repo: UserRepo, sandbox: Sandbox, run_cli: RunCli
) -> None:
    """Live status observes the list over the state: a job with no batch yet is not `none`
    (not created) when the queue book holds its place."""
    limit = 3 * REQUEST_TOKENS + REQUEST_TOKENS // 2  # one job of three requests at a time
    sandbox.configure(limits={MODEL: {"enqueued_tokens": limit}}, requests_per_second=1)
    queue_provider(sandbox_repo, sandbox, {MODEL: {"enqueued_tokens": limit}})
    queue_jobs(sandbox_repo, 2)
    assert run_cli("apply", "--auto-approve", *sandbox_repo.args()).exit_code == 0
    assert [b.metadata["reconciler_job"] for b in batches(sandbox)] == ["job-00"]
    for reading in ("--offline", "--refresh"):
        shown = run_cli("status", reading, *sandbox_repo.args())
        assert shown.exit_code == 0, shown.stderr
        row = next(line for line in shown.stdout.splitlines() if line.startswith("job-01 "))
        assert _cells(row)[:2] == ["queued", "in sync"], (reading, shown.stdout)
    live = json.loads(run_cli("status", "--json", *sandbox_repo.args()).stdout)
    assert live["jobs"]["job-01"]["status"] == "queued"


def _cells(row: str) -> list[str]:
    """A status table row's cells after the job's name (columns are two or more spaces apart)."""
    return re.split(r"\s{2,}", row.strip())[1:]


@pytest.mark.slow
def test_without_a_declared_limit_the_refusals_teach_it_and_no_attempt_is_spent(
    sandbox_repo: UserRepo, sandbox: Sandbox, run_cli: RunCli, fits_three: int
) -> None:
    queue_provider(sandbox_repo, sandbox, None)
    queue_jobs(sandbox_repo, 12)
    wait_done(run_cli, sandbox_repo)
    assert set(statuses(sandbox_repo).values()) == {"completed"}
    first = refused(sandbox)
    assert first, "the sandbox refused nothing: the test did not pass its limit"
    learnt = state_of(sandbox_repo.root)["queue"]["learnt"][PROVIDER][MODEL]
    assert learnt["tokens"] == fits_three and learnt["floor"] == 1.0  # learnt, not lowered
    # Every refusal was followed by one batch sending the same requests: no retry attempt spent
    # (retry.max_attempts is 1), and after the lesson nothing more was refused.
    jobs = state_of(sandbox_repo.root)["jobs"]
    for name, job in jobs.items():
        assert job["request_counts"] == {"total": 3, "completed": 3, "failed": 0}, name
    assert len(batches(sandbox)) == 12 + len(first)
    assert len(refused(sandbox)) == len(first) <= 9
    runs = [run["status"] for job in jobs.values() for run in job["history"]]
    assert set(runs) == {"completed"}  # no run ever read failed: nothing to announce as a failure
    shown = run_cli("status", *sandbox_repo.args()).stdout
    assert f"Queue limit {PROVIDER} {MODEL}: {fits_three / 1000:.1f}k enqueued tokens (learnt" in shown
    forgot = run_cli("state", "forget-limit", PROVIDER, MODEL, *sandbox_repo.args())
    assert forgot.exit_code == 0 and state_of(sandbox_repo.root)["queue"]["learnt"] == {}
    again = run_cli("state", "forget-limit", PROVIDER, MODEL, *sandbox_repo.args())
    assert again.exit_code == 1 and "no queue limit learnt for" in again.stderr


@pytest.mark.slow
def test_a_job_larger_than_its_queue_is_split_to_fit_and_completes_without_a_refusal(
    sandbox_repo: UserRepo, sandbox: Sandbox, run_cli: RunCli
) -> None:
    limit = 5_000
    sandbox.configure(limits={MODEL: {"enqueued_tokens": limit}})
    queue_provider(sandbox_repo, sandbox, {MODEL: {"enqueued_tokens": limit}})
    chars = (500 - 7) * 4  # 500 prompt tokens a request: 14 of them are 7,000
    sandbox_repo.write_input("data/big.jsonl", lines=long_lines("big", 14, chars))
    sandbox_repo.write_job("big", provider=PROVIDER, input="data/big.jsonl")
    planned = json.loads(run_cli("plan", "--json", *sandbox_repo.args()).stdout)["changes"][0]
    assert planned["action"] == "create" and planned["launch"]["estimated_input_tokens"] == 5_000
    assert planned["queued"]["parts"] == 1 and planned["queued"]["tokens"] == 2_000
    wait_done(run_cli, sandbox_repo)
    made = batches(sandbox, "big")
    assert len(made) == 2 and refused(sandbox) == []
    assert sorted(b.request_counts.total for b in made) == [4, 10]
    assert statuses(sandbox_repo) == {"big": "completed"}


def test_a_single_request_larger_than_the_declared_limit_is_a_validate_error_naming_its_line(
    sandbox_repo: UserRepo, sandbox: Sandbox, run_cli: RunCli
) -> None:
    queue_provider(sandbox_repo, sandbox, {"*": {"enqueued_tokens": 1_000}})
    lines = long_lines("odd", 3) + long_lines("huge", 1, chars=8_000) + long_lines("end", 1)
    sandbox_repo.write_input("data/odd.jsonl", lines=lines)
    sandbox_repo.write_job("odd", provider=PROVIDER, input="data/odd.jsonl")
    result = run_cli("validate", *sandbox_repo.args())
    assert result.exit_code == 1 and "Traceback" not in result.stderr
    (line,) = [text for text in result.stderr.splitlines() if "could never be enqueued" in text]
    assert "data/odd.jsonl:4" in line and "1,000 enqueued tokens" in line, line
    assert run_cli("apply", "--auto-approve", *sandbox_repo.args()).exit_code == 1
    assert batches(sandbox) == []


@pytest.mark.slow
def test_a_priority_job_goes_first_when_the_queue_fits_one(
    sandbox_repo: UserRepo, sandbox: Sandbox, run_cli: RunCli
) -> None:
    limit = 3 * REQUEST_TOKENS + 10
    sandbox.configure(limits={MODEL: {"enqueued_tokens": limit}})
    queue_provider(sandbox_repo, sandbox, {MODEL: {"enqueued_tokens": limit}})
    queue_jobs(sandbox_repo, 3)  # job-00 .. job-02, priority 0, named before the urgent one
    sandbox_repo.write_input("data/urgent.jsonl", lines=long_lines("urgent", 3))
    sandbox_repo.write_job("urgent", provider=PROVIDER, input="data/urgent.jsonl", priority=10)
    plan = json.loads(run_cli("plan", "--json", *sandbox_repo.args()).stdout)["changes"]
    by_job = {c["job"]: c for c in plan}
    assert by_job["urgent"]["action"] == "create"
    assert [by_job[n]["reason_data"]["position"] for n in ("job-00", "job-01", "job-02")] == [1, 2, 3]
    wait_done(run_cli, sandbox_repo)
    made = sorted(batches(sandbox), key=lambda b: b.created_at)
    assert made[0].metadata["reconciler_job"] == "urgent"
    assert [b.metadata["reconciler_job"] for b in made] == ["urgent", "job-00", "job-01", "job-02"]
    assert refused(sandbox) == [] and set(statuses(sandbox_repo).values()) == {"completed"}


@pytest.mark.slow
def test_the_daemon_admits_the_next_queued_job_when_a_batch_of_its_model_finishes(
    make_repo: Any, sandbox: Sandbox, start_daemon: Any
) -> None:
    """The poll interval is ten minutes: only the queue's own wake (the running batch's
    estimated end) can bring the second job in within the test's time."""
    repo = make_repo()
    limit = 8 * REQUEST_TOKENS + 10
    sandbox.configure(
        limits={MODEL: {"enqueued_tokens": limit}}, requests_per_second=4, validation_seconds=0.5
    )
    queue_provider(repo, sandbox, {MODEL: {"enqueued_tokens": limit}})
    queue_jobs(repo, 2, requests=8)
    daemon = start_daemon(repo, sandbox, interval="600")
    first = daemon.eventually(lambda: batches(sandbox, "job-00"))[0]
    assert batches(sandbox, "job-01") == []
    second = daemon.eventually(lambda: batches(sandbox, "job-01"), timeout=60)[0]
    ended = sdk_batch(sandbox, first.id)
    assert ended.status == "completed" and ended.completed_at <= second.created_at
    assert refused(sandbox) == []
    assert len(batches(sandbox)) == 2  # one batch per job: no unit sent twice


def sdk_batch(sandbox: Sandbox, batch_id: str) -> Any:
    from tests.reconcile_helpers import sdk

    return sdk(sandbox).batches.retrieve(batch_id)


@pytest.mark.slow
def test_sigkill_between_admissions_admits_nothing_twice_and_loses_nothing_from_the_queue(
    sandbox_repo: UserRepo, sandbox: Sandbox, run_cli: RunCli, fits_three: int
) -> None:
    import random
    import signal
    import subprocess
    import time

    from tests.fixtures.daemon import reconciler_command, reconciler_env

    sandbox.configure(latency_seconds=0.01, requests_per_second=15)
    queue_provider(sandbox_repo, sandbox, {MODEL: {"enqueued_tokens": fits_three}})
    names = queue_jobs(sandbox_repo, 9)
    env = reconciler_env(sandbox, "tests/reconciler", RECONCILER_CREATE_QUARANTINE="1")
    rng = random.Random(22)
    for _ in range(8):
        command = reconciler_command("reconcile", "--wait", "--timeout", "60", *sandbox_repo.args())
        process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(0.4, 2.5))
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
        made = batches(sandbox)
        units = [
            tuple(b.metadata[k] for k in ("reconciler_job", "reconciler_part", "reconciler_retry"))
            for b in made
        ]
        assert len(units) == len(set(units)), "a unit was admitted twice"
        assert refused(sandbox) == [], "more was admitted than the queue holds"
        if sandbox_repo.state.exists():  # a kill before the first write leaves none
            json.loads(sandbox_repo.state.read_text())  # the state still parses
    wait_done(run_cli, sandbox_repo)
    assert statuses(sandbox_repo) == dict.fromkeys(names, "completed")
    assert len(batches(sandbox)) == 9 and refused(sandbox) == []


@pytest.mark.slow
def test_a_refusal_despite_our_count_lowers_the_usable_limit_instead_of_retrying_in_a_loop(
    sandbox_repo: UserRepo, sandbox: Sandbox, run_cli: RunCli, fits_three: int
) -> None:
    """Another tool of the organisation holds half the queue: the declared limit (room for six
    jobs) is more than what is left (room for three), so the first round is partly refused."""
    declared = 2 * fits_three
    queue_provider(sandbox_repo, sandbox, {MODEL: {"enqueued_tokens": declared}})
    queue_jobs(sandbox_repo, 12)
    assert run_cli("apply", "--auto-approve", *sandbox_repo.args()).exit_code == 0
    assert len(batches(sandbox)) == 6
    wait_done(run_cli, sandbox_repo)
    assert set(statuses(sandbox_repo).values()) == {"completed"}
    learning = state_of(sandbox_repo.root)["queue"]["learnt"][PROVIDER][MODEL]
    assert learning["floor"] == 0.5 and learning["lowered_at"] is not None
    # Halved once, for the one round that went past it: every later round fitted what was left.
    assert len(refused(sandbox)) == 3 and len(batches(sandbox)) == 15
    shown = run_cli("status", *sandbox_repo.args()).stdout
    # The declared limit is the one admission uses, whatever a refusal named: the line says so.
    line = next(line for line in shown.splitlines() if line.startswith("Queue limit "))
    assert re.fullmatch(
        rf"Queue limit {PROVIDER} {MODEL}: {declared / 1000:.1f}k enqueued tokens \(declared limit; "
        rf"a refusal named {fits_three / 1000:.1f}k enqueued tokens, learnt \S+, which it overrides\); "
        "50% of it in use after a refusal despite our count",
        line,
    ), line


def test_the_sandbox_refuses_a_batch_past_its_model_queue_with_openais_error_body(sandbox: Sandbox) -> None:
    from tests.fixtures.sandbox import upload, wait_for
    from tests.reconcile_helpers import sdk

    sandbox.configure(limits={"*": {"enqueued_requests": 3}}, requests_per_second=1)
    client = sdk(sandbox)
    lines = long_lines("sb", 2, chars=40)
    first, second = (
        client.batches.create(
            input_file_id=upload(client, lines).id, endpoint="/v1/chat/completions", completion_window="24h"
        )
        for _ in range(2)
    )
    assert first.status == second.status == "validating"  # accepted, both
    refused_batch = wait_for(client, second.id, ("failed",))
    assert refused_batch.errors is not None and refused_batch.errors.data is not None
    (error,) = refused_batch.errors.data
    assert error.code == "request_limit_exceeded" and error.line is None and error.param is None
    assert error.message == (
        f"Enqueued request limit reached for {MODEL} in organization org-sandbox. Limit: 3 enqueued "
        "requests. Please try again once some in_progress batches have been completed."
    )
    counts = refused_batch.request_counts
    assert counts is not None and counts.total == 0 and refused_batch.output_file_id is None
    assert client.batches.retrieve(first.id).status in ("validating", "in_progress")


def test_jobs_of_equal_priority_take_turns_part_by_part(
    sandbox_repo: UserRepo, sandbox: Sandbox, run_cli: RunCli
) -> None:
    queue_provider(sandbox_repo, sandbox, {MODEL: {"enqueued_requests": 2}})
    sandbox_repo.write_job("backfill", provider=PROVIDER, requests=6, split={"max_requests": 1})
    sandbox_repo.write_job("nightly", provider=PROVIDER, requests=2, split={"max_requests": 1})
    plan = {
        c["job"]: c for c in json.loads(run_cli("plan", "--json", *sandbox_repo.args()).stdout)["changes"]
    }
    assert plan["backfill"]["launch"]["requests"] == 1 and plan["nightly"]["launch"]["requests"] == 1
    assert plan["backfill"]["queued"]["parts"] == 5 and plan["nightly"]["queued"]["parts"] == 1
    # Second turns: the backfill's part 1, then the nightly's part 1 (not after all six backfill
    # parts): both go in the next round the queue holds two.
    assert plan["backfill"]["queued"]["position"] == 1 and plan["nightly"]["queued"]["position"] == 2
    text = run_cli("plan", *sandbox_repo.args()).stdout
    assert "queued (5 parts): 1st for gpt-4o-mini" in text, text


@pytest.mark.parametrize("version", [4, 5])
def test_an_older_state_reads_as_it_is_with_an_empty_queue_book(
    sandbox_repo: UserRepo, run_cli: RunCli, version: int
) -> None:
    sandbox_repo.write_job("nightly-eval", requests=2)
    assert run_cli("apply", "--auto-approve", *sandbox_repo.args()).exit_code == 0
    document = state_of(sandbox_repo.root)
    jobs = json.loads(json.dumps(document["jobs"]))
    del document["queue"]  # version 6's
    if version == 4:
        for job in document["jobs"].values():
            del job["reuse"]  # version 5's
            for run in job["history"]:
                del run["reused"]
    document["format_version"] = version
    sandbox_repo.state.write_text(json.dumps(document), encoding="utf-8")
    read = json.loads(run_cli("status", "--json", "--offline", *sandbox_repo.args()).stdout)  # as recorded
    assert read["format_version"] == version and read["jobs"] == jobs  # read as it is: nothing lost
    assert read["queue"] == {"admitted": {}, "learnt": {}, "order": {}, "places": {}}
    assert run_cli("reconcile", *sandbox_repo.args()).exit_code == 0
    assert state_of(sandbox_repo.root)["format_version"] == 6  # written back as today's


@pytest.mark.slow
def test_a_reusing_run_takes_room_in_the_queue_only_for_the_requests_it_sends(
    sandbox_repo: UserRepo, sandbox: Sandbox, run_cli: RunCli
) -> None:
    limit = 3 * REQUEST_TOKENS + REQUEST_TOKENS // 2  # three requests at a time
    sandbox.configure(limits={MODEL: {"enqueued_tokens": limit}}, requests_per_second=30)
    queue_provider(sandbox_repo, sandbox, {MODEL: {"enqueued_tokens": limit}})
    lines = long_lines("big", 6)
    sandbox_repo.write_input("data/big.jsonl", lines=lines)
    sandbox_repo.write_job("big", provider=PROVIDER, reuse={"max_age": "30d"})
    wait_done(run_cli, sandbox_repo)  # six requests, cut to fit: two parts of three
    assert len(batches(sandbox, "big")) == 2

    # One request edited: the new run sends one and reuses five, so it takes one request's room
    # and a 2-request job fits beside it (counting all six, neither would be admitted at once).
    edited = {**long_lines("new", 1)[0], "custom_id": "big-0"}
    sandbox_repo.write_input("data/big.jsonl", lines=[edited, *lines[1:]])
    sandbox_repo.write_input("data/other.jsonl", lines=long_lines("other", 2))
    sandbox_repo.write_job("other", provider=PROVIDER)
    changes = json.loads(run_cli("plan", "--json", *sandbox_repo.args()).stdout)["changes"]
    plan = {change["job"]: change for change in changes}
    assert plan["big"]["launch"]["requests"] == 1 and plan["other"]["launch"]["requests"] == 2
    assert plan["big"]["queued"] is None and plan["other"]["queued"] is None, plan
    assert run_cli("apply", "--auto-approve", *sandbox_repo.args()).exit_code == 0
    assert len(batches(sandbox, "big")) == 3 and len(batches(sandbox, "other")) == 1
    admitted = state_of(sandbox_repo.root)["queue"]["admitted"]
    assert sum(entry["requests"] for entry in admitted.values()) == 3
    assert sum(entry["tokens"] for entry in admitted.values()) <= limit
    wait_done(run_cli, sandbox_repo)
    assert statuses(sandbox_repo) == {"big": "completed", "other": "completed"} and refused(sandbox) == []
