"""Small helpers the reconciler tests share: the sandbox's live list through the official SDK,
and waiting for a condition without asserting on seconds."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import openai
import pytest

from reconciler.sandbox import Sandbox
from tests.fixtures.repo import UserRepo

OWNER = "tests/reconciler"


def sdk(sandbox: Sandbox, api_key: str = "unused") -> openai.OpenAI:
    """The official SDK as an independent client of the sandbox."""
    return openai.OpenAI(base_url=sandbox.base_url, api_key=api_key, max_retries=0)


def hooked_repo(make_repo: Callable[..., UserRepo], sandbox: Sandbox, jobs: int = 0) -> UserRepo:
    """A repo whose Provider `hooked` takes the sandbox's webhooks (its secret from
    $OPENAI_WEBHOOK_SECRET), with `jobs` jobs on it: nothing polls their running batches."""
    repo = make_repo()
    repo.write_spec(
        "specs/hooked.yaml",
        f"""
        apiVersion: reconciler/v1
        kind: Provider
        metadata: {{name: hooked}}
        spec:
          base_url: {sandbox.base_url}
          webhook_secret: ${{OPENAI_WEBHOOK_SECRET}}
        """,
    )
    for index in range(jobs):
        repo.write_job(f"job-{index:02d}", provider="hooked", requests=2)
    return repo


def foreign_batches(sandbox: Sandbox, count: int) -> None:
    """`count` batches of nobody's (no metadata), made through the SDK, sharing one upload."""
    client = sdk(sandbox)
    upload = client.files.create(file=("x.jsonl", b'{"custom_id": "x"}\n'), purpose="batch")
    for _ in range(count):
        client.batches.create(
            input_file_id=upload.id, endpoint="/v1/chat/completions", completion_window="24h"
        )


def batches(sandbox: Sandbox, job: str | None = None) -> list[Any]:
    found = list(sdk(sandbox).batches.list(limit=100))
    if job is None:
        return found
    return [b for b in found if (b.metadata or {}).get("reconciler_job") == job]


def wait_until(condition: Callable[[], Any], timeout: float = 30.0, every: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"condition not met within {timeout}s")


def stays(condition: Callable[[], Any], seconds: float, every: float = 0.05) -> None:
    """Checks `condition` again and again for `seconds`; fails the first time it is false.
    For what must *not* happen (a request from an idle daemon): the span is the claim itself."""
    deadline = time.monotonic() + seconds
    while True:
        assert condition(), f"stopped holding before {seconds}s were up"
        if time.monotonic() > deadline:
            return
        time.sleep(every)


def settled(read: Callable[[], Any], quiet: float, timeout: float = 30.0, every: float = 0.05) -> Any:
    """Waits until `read()` has returned the same value for `quiet` seconds; returns that value.
    For "whatever was under way has finished" without guessing how long it takes."""
    deadline = time.monotonic() + timeout
    value, since = read(), time.monotonic()
    while time.monotonic() - since < quiet:
        if time.monotonic() > deadline:
            raise AssertionError(f"still changing after {timeout}s: {value!r}")
        time.sleep(every)
        latest = read()
        if latest != value:
            value, since = latest, time.monotonic()
    return value


def state_of(repo_root: Path) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((repo_root / ".reconciler" / "state.json").read_text())
    return loaded


def use_sandbox(monkeypatch: pytest.MonkeyPatch, sandbox: Sandbox, owner: str = OWNER) -> None:
    """Points jobs without a provider at this test's sandbox, with a fixed owner id."""
    monkeypatch.setenv("RECONCILER_SANDBOX_URL", sandbox.base_url)
    monkeypatch.setenv("RECONCILER_OWNER", owner)


def mutating(counts: dict[str, int]) -> dict[str, int]:
    return {route: n for route, n in counts.items() if not route.startswith("GET ")}
