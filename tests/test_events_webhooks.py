"""Webhooks: the sandbox signs and retries them like the real service, and the daemon takes
them on its health port — a finished batch is in the state within 2 s while the poll
interval is minutes; forged, stale and replayed deliveries change nothing.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import UTC, datetime

import httpx
import pytest
from standardwebhooks import Webhook

from reconciler.sandbox import Sandbox
from tests.events_helpers import WEBHOOK_SECRET, Daemon, Receiver, statuses
from tests.fixtures.repo import UserRepo
from tests.fixtures.sandbox import request_lines
from tests.fixtures.sandbox import upload as upload_lines
from tests.reconcile_helpers import batches, hooked_repo, sdk, wait_until

MINUTES = "300"  # the poll interval: polling alone would not see the end for ten times that


def _signed(
    event: dict[str, object], *, secret: str = WEBHOOK_SECRET, age: float = 0.0
) -> tuple[bytes, dict[str, str]]:
    body = json.dumps(event)
    event_id = str(event["id"])
    stamp = datetime.fromtimestamp(int(time.time() - age), tz=UTC)
    headers = {
        "webhook-id": event_id,
        "webhook-timestamp": str(int(stamp.timestamp())),
        "webhook-signature": Webhook(secret).sign(event_id, stamp, body),
        "content-type": "application/json",
    }
    return body.encode(), headers


def _event(event_id: str, batch_id: str, kind: str = "batch.completed") -> dict[str, object]:
    return {
        "id": event_id,
        "object": "event",
        "type": kind,
        "created_at": int(time.time()),
        "data": {"id": batch_id},
    }


def test_the_sandbox_signs_each_batch_ending_and_retries_until_it_is_taken(
    sandbox_factory: Callable[..., Sandbox], receiver: Receiver
) -> None:
    receiver.plan = [500]
    sandbox = sandbox_factory(
        webhook_url=f"{receiver.url}/hook", webhook_secret=WEBHOOK_SECRET, webhook_retry_seconds=0.05
    )
    client = sdk(sandbox)
    upload = upload_lines(client, request_lines(2))
    batch = client.batches.create(
        input_file_id=upload.id, endpoint="/v1/chat/completions", completion_window="24h"
    )

    wait_until(lambda: receiver.acknowledged)
    assert len(receiver.received) == 2  # the 500, then the retry
    first, second = receiver.received
    assert first["headers"]["webhook-id"] == second["headers"]["webhook-id"]
    verified = Webhook(WEBHOOK_SECRET).verify(second["raw"], second["headers"])
    assert verified["type"] == "batch.completed" and verified["data"] == {"id": batch.id}
    counts = sandbox.request_counts()
    assert (counts["webhook sent"], counts["webhook failed"]) == (2, 1)
    assert sandbox.config.public()["webhook_secret"] == "***"


@pytest.mark.slow
def test_a_finished_batch_is_in_the_state_within_two_seconds_by_webhook_while_polling_waits_minutes(
    make_repo: Callable[..., UserRepo],
    sandbox_factory: Callable[..., Sandbox],
    events_daemon: Callable[..., Daemon],
) -> None:
    sandbox = sandbox_factory(requests_per_second=2.0)  # 6 requests: about 3 s in progress
    repo = hooked_repo(make_repo, sandbox)
    repo.write_job("nightly-eval", requests=6, provider="hooked", results="../out/nightly-eval.jsonl")
    daemon = events_daemon(repo, sandbox, interval=MINUTES, env={"OPENAI_WEBHOOK_SECRET": WEBHOOK_SECRET})
    sandbox.configure(webhook_url=f"{daemon.url}/webhooks/openai", webhook_secret=WEBHOOK_SECRET)
    [batch] = daemon.eventually(lambda: batches(sandbox, "nightly-eval"))

    while sdk(sandbox).batches.retrieve(batch.id).status != "completed":  # read beside the daemon
        time.sleep(0.02)
    ended = time.monotonic()
    daemon.eventually(lambda: statuses(repo) == {"nightly-eval": "completed"}, timeout=2.0)
    assert (repo.root / "out" / "nightly-eval.jsonl").exists()
    assert time.monotonic() - ended < 2.0  # the bound: results and state within 2 s

    assert daemon.metric("reconciler_webhooks_received_total", result="refresh") == 1
    assert daemon.metric("reconciler_passes_total", result="ok") == 2  # the create, and the webhook's
    assert sandbox.request_counts()["webhook sent"] == 1


@pytest.mark.slow
def test_forged_stale_and_replayed_deliveries_change_nothing(
    make_repo: Callable[..., UserRepo],
    sandbox_factory: Callable[..., Sandbox],
    events_daemon: Callable[..., Daemon],
) -> None:
    sandbox = sandbox_factory(validation_seconds=300.0)  # the batch stays running throughout
    repo = hooked_repo(make_repo, sandbox)
    repo.write_job("nightly-eval", provider="hooked")
    daemon = events_daemon(repo, sandbox, interval=MINUTES, env={"OPENAI_WEBHOOK_SECRET": WEBHOOK_SECRET})
    [batch] = daemon.eventually(lambda: batches(sandbox, "nightly-eval"))
    listed = sandbox.request_counts()["GET /v1/batches"]
    url = f"{daemon.url}/webhooks/openai"

    def post(body: bytes, headers: dict[str, str]) -> httpx.Response:
        return httpx.post(url, content=body, headers=headers, timeout=10)

    forged = post(*_signed(_event("evt_forged", batch.id), secret="whsec_" + "b3RoZXItc2VjcmV0"))
    stale = post(*_signed(_event("evt_stale", batch.id), age=600))
    unsigned = post(json.dumps(_event("evt_bare", batch.id)).encode(), {"content-type": "application/json"})
    huge = post(b"x" * 300_000, dict(_signed(_event("evt_huge", batch.id))[1]))
    unknown = post(*_signed(_event("evt_unknown", "batch_not_ours")))
    assert [r.status_code for r in (forged, stale, unsigned, huge, unknown)] == [401, 401, 401, 413, 200]
    assert unknown.json() == {"status": "ignored"}

    retrieved = sandbox.request_counts().get("GET /v1/batches/{id}", 0)
    genuine = _signed(_event("evt_genuine", batch.id))
    assert post(*genuine).json() == {"status": "refreshing"}
    daemon.eventually(lambda: daemon.metric("reconciler_passes_total", result="ok") == 2)
    assert post(*genuine).json() == {"status": "duplicate"}  # the same delivery again
    assert post(*_signed(_event("evt_barrier", batch.id))).json() == {"status": "refreshing"}
    daemon.eventually(lambda: daemon.metric("reconciler_passes_total", result="ok") == 3)

    # Two passes after the first (the genuine event's, the barrier's), each reading its one batch
    # and no list page: nothing refused, ignored or replayed woke the loop.
    assert sandbox.request_counts()["GET /v1/batches/{id}"] == retrieved + 2
    assert sandbox.request_counts()["GET /v1/batches"] == listed
    refused = {
        r: daemon.metric("reconciler_webhooks_refused_total", reason=r)
        for r in ("signature", "stale", "unsigned", "too_large")
    }
    assert refused == {"signature": 1, "stale": 1, "unsigned": 1, "too_large": 1}
    received = {
        r: daemon.metric("reconciler_webhooks_received_total", result=r)
        for r in ("refresh", "ignored", "duplicate")
    }
    assert received == {"refresh": 2, "ignored": 1, "duplicate": 1}
    assert daemon.metric("reconciler_passes_total", result="ok") == 3
    assert WEBHOOK_SECRET.removeprefix("whsec_") not in daemon.log()
