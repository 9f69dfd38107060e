"""The clock-driven lifecycle: expiry, persistence across restarts, progress with no server."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Final

import openai

from reconciler.sandbox import Sandbox
from tests.fixtures.sandbox import FAST_KNOBS, SandboxFactory, request_lines, upload, wait_for
from tests.reconcile_helpers import wait_until

ENDPOINT: Final = "/v1/chat/completions"


def client_for(sandbox: Sandbox) -> openai.OpenAI:
    return openai.OpenAI(base_url=sandbox.base_url, api_key="x", max_retries=0)


def timeline_seconds(
    *, requests: int, requests_per_second: float, validation: float = FAST_KNOBS["validation_seconds"]
) -> float:
    """Creation to completed on the sandbox's clock: validation, the requests, then finalizing."""
    return float(validation + requests / requests_per_second + FAST_KNOBS["finalizing_seconds"])


def start_batch(client: openai.OpenAI, count: int) -> str:
    file_id = upload(client, request_lines(count)).id
    return client.batches.create(input_file_id=file_id, endpoint=ENDPOINT, completion_window="24h").id


def lines_of(client: openai.OpenAI, file_id: str | None) -> list[dict[str, Any]]:
    assert file_id is not None
    return [json.loads(line) for line in client.files.content(file_id).text.splitlines()]


def test_expiry_keeps_answered_requests_and_lists_the_rest_as_batch_expired(
    sandbox_factory: SandboxFactory,
) -> None:
    # 0.05 s validating, then 10 requests/s until the window closes at 0.5 s: exactly 4 answered.
    sandbox = sandbox_factory(expiry_seconds=0.5, validation_seconds=0.05, requests_per_second=10.0)
    client = client_for(sandbox)
    batch = wait_for(client, start_batch(client, 20))

    assert batch.status == "expired" and batch.expired_at is not None
    assert batch.request_counts is not None
    assert (batch.request_counts.completed, batch.request_counts.failed) == (4, 16)
    output = lines_of(client, batch.output_file_id)
    errors = lines_of(client, batch.error_file_id)
    assert [x["custom_id"] for x in output] == [f"req-{i}" for i in range(4)]
    assert [x["custom_id"] for x in errors] == [f"req-{i}" for i in range(4, 20)]
    assert all(x["response"] is None and x["error"]["code"] == "batch_expired" for x in errors)


def test_statuses_advance_in_order_and_counts_only_grow(sandbox_factory: SandboxFactory) -> None:
    sandbox = sandbox_factory(validation_seconds=0.3, requests_per_second=50.0, finalizing_seconds=0.2)
    client = client_for(sandbox)
    batch_id = start_batch(client, 20)
    seen: list[str] = []
    completed: list[int] = []
    while not seen or seen[-1] != "completed":
        batch = client.batches.retrieve(batch_id)
        if not seen or seen[-1] != batch.status:
            seen.append(batch.status)
        completed.append(batch.request_counts.completed if batch.request_counts else 0)
        time.sleep(0.01)

    assert seen == ["validating", "in_progress", "finalizing", "completed"]
    assert completed == sorted(completed) and completed[-1] == 20
    assert any(0 < count < 20 for count in completed)  # progress was visible while in progress


def test_cancel_while_validating_ends_cancelled_with_nothing_run(sandbox_factory: SandboxFactory) -> None:
    sandbox = sandbox_factory(validation_seconds=5.0)
    client = client_for(sandbox)
    batch_id = start_batch(client, 3)

    assert client.batches.cancel(batch_id).status == "cancelling"
    done = wait_for(client, batch_id)

    assert done.status == "cancelled" and done.in_progress_at is None
    assert done.output_file_id is None and done.error_file_id is None


def test_batches_progress_while_no_server_runs_and_survive_a_restart(
    sandbox_factory: SandboxFactory, tmp_path: Path
) -> None:
    data = tmp_path / "shared"
    first = sandbox_factory(data, requests_per_second=200.0)
    client = client_for(first)
    ids = [start_batch(client, 5) for _ in range(3)]
    # Read after the last create, so no batch's timeline ends later than this.
    done_by = time.time() + timeline_seconds(requests=5, requests_per_second=200.0)
    files_before = {f.id for f in client.files.list()}
    first.stop()
    wait_until(lambda: time.time() > done_by)  # validation, 5 requests and finalizing, no server up

    second = sandbox_factory(data)
    client = client_for(second)

    assert [b.id for b in client.batches.list()] == list(reversed(ids))
    for batch_id in ids:
        batch = client.batches.retrieve(batch_id)
        assert batch.status == "completed"
        assert len(lines_of(client, batch.output_file_id)) == 5
    assert files_before < {f.id for f in client.files.list()}


def test_a_batch_keeps_the_timeline_it_was_created_with_whoever_reads_it(
    sandbox_factory: SandboxFactory, tmp_path: Path
) -> None:
    data = tmp_path / "shared"
    slow = sandbox_factory(data, validation_seconds=60.0)
    fast = sandbox_factory(data, validation_seconds=0.0, requests_per_second=1000.0)
    batch_id = start_batch(client_for(slow), 2)
    fast_done_by = time.time() + timeline_seconds(requests=2, requests_per_second=1000.0, validation=0.0)
    wait_until(lambda: time.time() > fast_done_by)  # on the fast timeline it would be completed by now

    assert client_for(fast).batches.retrieve(batch_id).status == "validating"
