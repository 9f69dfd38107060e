"""The sandbox as the real service shows itself: an `x-request-id` on every answer, string
cursors on an empty list (the OpenAPI schema's), webhook deliveries with a `wh_` id, OpenAI's
User-Agent and hours of backoff, and files that disappear once past `expires_at`.
"""

from __future__ import annotations

import io
import itertools
from pathlib import Path

import httpx
import openai
import pytest
from standardwebhooks import Webhook

from reconciler.sandbox import Sandbox, SandboxConfig
from reconciler.sandbox.webhook_sender import USER_AGENT, retry_offsets
from tests.events_helpers import WEBHOOK_SECRET, Receiver
from tests.fixtures.sandbox import SandboxFactory, request_lines, to_jsonl, upload, wait_for
from tests.reconcile_helpers import sdk, wait_until

HOUR = 3600
SECONDS_PER_HOUR_OF_LIFETIME = 4  # the lifetime scale below: an hour of `expires_after` lasts 4 s


def test_every_answer_carries_an_x_request_id_that_the_sdk_reads(
    sandbox: Sandbox, sandbox_client: openai.OpenAI, sandbox_http: httpx.Client
) -> None:
    raw = sandbox_client.batches.with_raw_response.list()
    uploaded = upload(sandbox_client, request_lines(1))
    with pytest.raises(openai.NotFoundError) as missing:
        sandbox_client.batches.retrieve("batch_nothere")
    control = httpx.get(sandbox.base_url.replace("/v1", "/_sandbox/config"))
    unknown_route = sandbox_http.get("/nothing-here")

    ids = [
        raw.headers["x-request-id"],
        uploaded._request_id,
        missing.value.request_id,
        control.headers["x-request-id"],
        unknown_route.headers["x-request-id"],
    ]
    assert all(isinstance(i, str) and i.startswith("req_") and len(i) > 10 for i in ids), ids
    assert len(set(ids)) == len(ids)  # one per answer


def test_an_empty_list_has_string_cursors_as_the_openapi_schema_types_them(
    sandbox_http: httpx.Client,
) -> None:
    # openai/openai-openapi: ListBatchesResponse and ListFilesResponse type first_id and
    # last_id as `string`, not nullable.
    for route in ("/batches", "/files"):
        page = sandbox_http.get(route).json()
        assert page["data"] == [] and page["has_more"] is False
        assert isinstance(page["first_id"], str) and isinstance(page["last_id"], str), page


def test_a_webhook_delivery_has_a_wh_id_of_its_own_and_backs_off_until_its_window_ends(
    sandbox_factory: SandboxFactory, receiver: Receiver
) -> None:
    receiver.plan = [500] * 20  # the receiver never takes it
    knobs = {"webhook_retry_seconds": 0.05, "webhook_retry_window_seconds": 0.5}
    sandbox = sandbox_factory(webhook_url=f"{receiver.url}/hook", webhook_secret=WEBHOOK_SECRET, **knobs)
    client = sdk(sandbox)
    batch = client.batches.create(
        input_file_id=upload(client, request_lines(1)).id,
        endpoint="/v1/chat/completions",
        completion_window="24h",
    )

    wait_until(lambda: sandbox.request_counts().get("webhook dropped") == 1)

    tries = len(retry_offsets(SandboxConfig(**knobs)))  # 0, 0.05, 0.15, 0.35 s after the first
    assert tries == 4 and len(receiver.received) == tries
    delivery_ids = {r["headers"]["webhook-id"] for r in receiver.received}
    assert len(delivery_ids) == 1  # every try of one delivery carries the same id
    (delivery_id,) = delivery_ids
    event = Webhook(WEBHOOK_SECRET).verify(receiver.received[-1]["raw"], receiver.received[-1]["headers"])
    assert delivery_id.startswith("wh_") and event["id"].startswith("evt_") and delivery_id != event["id"]
    assert event["data"] == {"id": batch.id} and event["type"] == "batch.completed"
    agents = {v for r in receiver.received for k, v in r["headers"].items() if k.lower() == "user-agent"}
    assert agents == {USER_AGENT}
    assert USER_AGENT.startswith("OpenAI/1.0 (+https://platform.openai.com/docs/webhooks)")
    counts = sandbox.request_counts()
    assert (counts["webhook sent"], counts["webhook failed"]) == (tries, tries)


def test_by_default_a_refused_webhook_is_tried_again_over_hours_not_seconds() -> None:
    offsets = retry_offsets(SandboxConfig())
    waits = [later - earlier for earlier, later in itertools.pairwise(offsets)]

    assert all(b == 2 * a for a, b in itertools.pairwise(waits))  # each wait doubles
    assert 24 * HOUR < offsets[-1] <= 72 * HOUR  # OpenAI: "for up to 72 hours"
    assert waits[0] <= 60  # the first retry still comes soon


@pytest.mark.slow
def test_files_past_expires_at_leave_the_disk_and_answer_404(
    sandbox_factory: SandboxFactory, tmp_path: Path
) -> None:
    sandbox = sandbox_factory(tmp_path / "data", file_lifetime_scale=SECONDS_PER_HOUR_OF_LIFETIME / HOUR)
    client = sdk(sandbox)
    expiring = client.files.create(
        file=("input.jsonl", io.BytesIO(to_jsonl(request_lines(2)))),
        purpose="batch",
        expires_after={"anchor": "created_at", "seconds": HOUR},
    )
    batch = client.batches.create(
        input_file_id=expiring.id,
        endpoint="/v1/chat/completions",
        completion_window="24h",
        extra_body={"output_expires_after": {"anchor": "created_at", "seconds": HOUR}},
    )
    done = wait_for(client, batch.id)
    output_id = done.output_file_id
    assert done.status == "completed" and output_id is not None
    assert expiring.expires_at == expiring.created_at + SECONDS_PER_HOUR_OF_LIFETIME
    kept = client.files.create(file=("notes.jsonl", io.BytesIO(b"{}\n")), purpose="user_data")

    # Nobody asks for them: the sandbox deletes both from disk by itself.
    stored = tmp_path / "data" / "files"
    wait_until(lambda: not list(stored.glob(f"{expiring.id}.*")) and not list(stored.glob(f"{output_id}.*")))

    for file_id in (expiring.id, output_id):
        with pytest.raises(openai.NotFoundError):
            client.files.retrieve(file_id)
        with pytest.raises(openai.NotFoundError):
            client.files.content(file_id)
    assert [f.id for f in client.files.list()] == [kept.id]
    assert client.batches.retrieve(batch.id).output_file_id == output_id  # the batch still names it
