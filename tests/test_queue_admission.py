"""Queue-aware admission (issue 22): jobs wait for room in their model's batch queue instead of
failing against it.  Real HTTP throughout: the sandbox enforces the same limits (its `limits`
knob) with OpenAI's error body, and the official SDK reads what it made."""

from __future__ import annotations

import json
from pathlib import Path
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
    document = {"apiVersion": "reconciler/v1", "kind": "Provider", "metadata": {"name": PROVIDER}, "spec": spec}
    repo.write_spec(f"specs/{PROVIDER}.yaml", json.dumps(document))


def queue_jobs(repo: UserRepo, count: int, requests: int = 3, **fields: Any) -> list[str]:
    names = [f"job-{i:02d}" for i in range(count)]
    for name in names:
        repo.write_input(f"data/{name}.jsonl", lines=long_lines(name, requests))
        repo.write_job(name, provider=PROVIDER, **fields)
    return names


def refused(sandbox: Sandbox) -> list[Any]:
    return [b for b in batches(sandbox) if b.errors and b.errors.data and b.errors.data[0].code.endswith("_limit_exceeded")]


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
