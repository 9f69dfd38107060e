"""The Batch and Files API through the real Portkey gateway to the sandbox, as a client sees it.

The gateway runs once per session; each test gets a fresh sandbox as the gateway's custom host.
What reached the sandbox is checked against the sandbox itself (its own HTTP API, its counts).
"""

from __future__ import annotations

import io
import json
from typing import Final

import httpx
import openai
import pytest

from reconciler.sandbox import Sandbox
from tests.fixtures.sandbox import request_lines, to_jsonl, upload, wait_for

CHAT: Final = "/v1/chat/completions"


def _direct(sandbox: Sandbox) -> httpx.Client:
    return httpx.Client(base_url=sandbox.base_url, timeout=30)


def _create(client: openai.OpenAI, file_id: str, **metadata: str) -> str:
    batch = client.batches.create(
        input_file_id=file_id, endpoint=CHAT, completion_window="24h", metadata=metadata or None
    )
    return batch.id


def test_upload_reaches_the_sandbox_byte_identical_through_the_chunked_resend(
    gateway_client: openai.OpenAI, sandbox: Sandbox
) -> None:
    lines = request_lines(400)
    lines[7]["body"]["messages"][0]["content"] = "Grüße, 東京, emoji 🚀 and a \\ backslash"
    content = to_jsonl(lines)
    assert len(content) > 64 * 1024  # big enough to arrive in several chunks

    uploaded = gateway_client.files.create(file=("input.jsonl", io.BytesIO(content)), purpose="batch")

    assert uploaded.bytes == len(content)
    with _direct(sandbox) as direct:
        assert direct.get(f"/files/{uploaded.id}/content").content == content
    assert sandbox.request_counts()["POST /v1/files"] == 1


def test_create_then_retrieve_follows_the_batch_to_completed_with_metadata_intact(
    gateway_client: openai.OpenAI, sandbox: Sandbox
) -> None:
    file = upload(gateway_client, request_lines(5))

    batch_id = _create(gateway_client, file.id, reconciler_job="nightly-eval", team="evals")
    done = wait_for(gateway_client, batch_id)

    assert done.status == "completed"
    assert done.request_counts is not None and done.request_counts.completed == 5
    assert done.metadata == {"reconciler_job": "nightly-eval", "team": "evals"}
    with _direct(sandbox) as direct:
        assert direct.get(f"/batches/{batch_id}").json()["status"] == "completed"


def test_output_file_content_through_the_gateway_is_byte_identical_to_the_sandbox_copy(
    gateway_client: openai.OpenAI, gateway_http: httpx.Client, sandbox: Sandbox
) -> None:
    file = upload(gateway_client, request_lines(6))
    done = wait_for(gateway_client, _create(gateway_client, file.id))
    assert done.output_file_id is not None

    through_sdk = gateway_client.files.content(done.output_file_id).content
    through_http = gateway_http.get(f"/files/{done.output_file_id}/content")
    with _direct(sandbox) as direct:
        original = direct.get(f"/files/{done.output_file_id}/content").content

    assert through_sdk == original == through_http.content
    assert through_http.headers["content-type"] == "application/octet-stream"
    assert sorted(json.loads(line)["custom_id"] for line in original.splitlines()) == sorted(
        line["custom_id"] for line in request_lines(6)
    )


def test_list_pages_through_the_gateway_one_upstream_request_per_page(
    gateway_client: openai.OpenAI, gateway_http: httpx.Client, sandbox: Sandbox
) -> None:
    file = upload(gateway_client, request_lines(2))
    created = {_create(gateway_client, file.id) for _ in range(5)}
    sandbox.reset_counts()

    listed = [batch.id for batch in gateway_client.batches.list(limit=2)]

    assert sorted(listed) == sorted(created)
    assert sandbox.request_counts() == {"GET /v1/batches": 3}  # pages of 2, 2 and 1
    second_page = gateway_http.get("/batches", params={"limit": 2, "after": listed[1]}).json()
    assert [batch["id"] for batch in second_page["data"]] == listed[2:4]
    assert second_page["has_more"] is True


def test_cancel_through_the_gateway_reaches_cancelled(
    gateway_client: openai.OpenAI, sandbox: Sandbox
) -> None:
    sandbox.configure(validation_seconds=600)  # captured at creation: this batch stays validating
    batch_id = _create(gateway_client, upload(gateway_client, request_lines(3)).id)

    cancelling = gateway_client.batches.cancel(batch_id)

    assert cancelling.status == "cancelling"
    assert wait_for(gateway_client, batch_id).status == "cancelled"
    assert sandbox.request_counts()["POST /v1/batches/{id}/cancel"] == 1


def test_cancel_of_a_completed_batch_is_a_409_through_the_gateway(
    gateway_client: openai.OpenAI, sandbox: Sandbox
) -> None:
    batch_id = _create(gateway_client, upload(gateway_client, request_lines(2)).id)
    wait_for(gateway_client, batch_id, ("completed",))
    sandbox.reset_counts()

    with pytest.raises(openai.ConflictError) as raised:
        gateway_client.batches.cancel(batch_id)

    assert raised.value.status_code == 409
    assert raised.value.body == {
        "message": "openai error: Cannot cancel a batch with status 'completed'.",
        "type": "invalid_request_error",
        "param": None,
        "code": None,
    }
    assert sandbox.request_counts() == {"POST /v1/batches/{id}/cancel": 1}  # no retry anywhere


def test_an_uploads_expires_after_reaches_the_sandbox_through_the_gateway(
    gateway_client: openai.OpenAI, sandbox: Sandbox
) -> None:
    uploaded = gateway_client.files.create(
        file=("input.jsonl", io.BytesIO(to_jsonl(request_lines(2)))),
        purpose="batch",
        expires_after={"anchor": "created_at", "seconds": 7200},
    )

    with _direct(sandbox) as direct:
        stored = direct.get(f"/files/{uploaded.id}").json()
    assert stored["expires_at"] == stored["created_at"] + 7200
