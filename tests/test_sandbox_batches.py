"""The Batch API of the sandbox, driven by the official openai SDK over real HTTP."""

from __future__ import annotations

import json
from typing import Any

import httpx
import openai
import pytest

from reconciler.sandbox import Sandbox
from tests.fixtures.sandbox import SandboxFactory, request_lines, upload, wait_for


def create(client: openai.OpenAI, file_id: str, **extra: Any) -> openai.types.Batch:
    return client.batches.create(
        input_file_id=file_id, endpoint="/v1/chat/completions", completion_window="24h", **extra
    )


def test_batch_runs_to_completed_and_output_joins_to_input_by_custom_id(
    sandbox_client: openai.OpenAI,
) -> None:
    lines = request_lines(12)
    batch = create(sandbox_client, upload(sandbox_client, lines).id, metadata={"team": "evals"})
    assert batch.status == "validating"
    assert batch.metadata == {"team": "evals"}

    done = wait_for(sandbox_client, batch.id)

    assert done.status == "completed"
    assert done.request_counts is not None
    assert (done.request_counts.total, done.request_counts.completed, done.request_counts.failed) == (
        12,
        12,
        0,
    )
    times = [done.created_at, done.in_progress_at, done.finalizing_at, done.completed_at]
    present = [t for t in times if t is not None]
    assert present == times and present == sorted(present)
    assert done.error_file_id is None and done.errors is None and done.model == "gpt-4o-mini"
    assert done.usage is not None and done.usage.total_tokens > 0
    output = sandbox_client.files.content(done.output_file_id or "").text.splitlines()
    answers = {json.loads(line)["custom_id"]: json.loads(line) for line in output}
    assert set(answers) == {line["custom_id"] for line in lines}
    for line in lines:
        answer = answers[line["custom_id"]]
        assert answer["id"].startswith("batch_req_") and answer["error"] is None
        assert answer["response"]["status_code"] == 200
        question = line["body"]["messages"][0]["content"]
        assert question in answer["response"]["body"]["choices"][0]["message"]["content"]


def test_list_auto_paginates_newest_first_over_several_pages(
    sandbox_client: openai.OpenAI, sandbox: Sandbox
) -> None:
    file_id = upload(sandbox_client, request_lines(1)).id
    created = [create(sandbox_client, file_id).id for _ in range(7)]
    sandbox.reset_counts()

    listed = [batch.id for batch in sandbox_client.batches.list(limit=3)]

    assert listed == list(reversed(created))
    assert sandbox.request_counts() == {"GET /v1/batches": 3}  # pages of 3, 3 and 1


def test_list_page_reports_first_last_and_has_more(
    sandbox_http: httpx.Client, sandbox_client: openai.OpenAI
) -> None:
    file_id = upload(sandbox_client, request_lines(1)).id
    ids = [create(sandbox_client, file_id).id for _ in range(3)]

    first = sandbox_http.get("/batches", params={"limit": 2}).json()
    second = sandbox_http.get("/batches", params={"limit": 2, "after": first["last_id"]}).json()

    assert (first["first_id"], first["last_id"], first["has_more"]) == (ids[2], ids[1], True)
    assert [b["id"] for b in second["data"]] == [ids[0]] and second["has_more"] is False


@pytest.mark.parametrize("limit", ["0", "101", "ten"])
def test_list_rejects_a_limit_outside_1_to_100(sandbox_http: httpx.Client, limit: str) -> None:
    answer = sandbox_http.get("/batches", params={"limit": limit})
    assert answer.status_code == 400
    assert answer.json()["error"]["param"] == "limit"


def test_cancel_a_running_batch_ends_cancelled_with_partial_output(sandbox_factory: SandboxFactory) -> None:
    sandbox = sandbox_factory(requests_per_second=20.0)
    client = openai.OpenAI(base_url=sandbox.base_url, api_key="x", max_retries=0)
    lines = request_lines(200)  # ten seconds of work at 20/s: cancelled long before the end
    batch = create(client, upload(client, lines).id)
    wait_for(client, batch.id, ("in_progress",))

    cancelling = client.batches.cancel(batch.id)
    again = client.batches.cancel(batch.id)  # idempotent while cancelling
    done = wait_for(client, batch.id)

    assert cancelling.status == "cancelling" and cancelling.cancelling_at is not None
    assert again.status in ("cancelling", "cancelled")
    assert done.status == "cancelled" and done.cancelled_at is not None
    assert done.request_counts is not None and done.request_counts.total == 200
    answered = done.request_counts.completed
    assert 0 <= answered < 200
    if answered:
        output = client.files.content(done.output_file_id or "").text.splitlines()
        assert [json.loads(line)["custom_id"] for line in output] == [f"req-{i}" for i in range(answered)]
    else:
        assert done.output_file_id is None
    assert client.batches.cancel(batch.id).status == "cancelled"


def test_cancelling_a_completed_batch_is_a_conflict(sandbox_client: openai.OpenAI) -> None:
    batch = create(sandbox_client, upload(sandbox_client, request_lines(2)).id)
    wait_for(sandbox_client, batch.id, ("completed",))

    with pytest.raises(openai.ConflictError) as raised:
        sandbox_client.batches.cancel(batch.id)

    assert raised.value.status_code == 409
    assert "Cannot cancel a batch with status 'completed'." in str(raised.value)


def test_unknown_batch_is_404_for_retrieve_and_cancel(sandbox_client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError):
        sandbox_client.batches.retrieve("batch_doesnotexist")
    with pytest.raises(openai.NotFoundError):
        sandbox_client.batches.cancel("batch_doesnotexist")


@pytest.mark.parametrize(
    ("change", "param"),
    [
        ({"endpoint": "/v1/unknown"}, "endpoint"),
        ({"completion_window": "48h"}, "completion_window"),
        ({"input_file_id": None}, "input_file_id"),
        ({"metadata": {f"k{i}": "v" for i in range(17)}}, "metadata"),
        ({"metadata": {"k" * 65: "v"}}, "metadata"),
        ({"metadata": {"k": "v" * 513}}, "metadata.k"),
    ],
)
def test_bad_create_parameters_are_400_in_the_real_error_shape(
    sandbox_http: httpx.Client, change: dict[str, object], param: str
) -> None:
    request: dict[str, object] = {
        "input_file_id": "file-abc",
        "endpoint": "/v1/chat/completions",
        "completion_window": "24h",
    }
    request = {key: value for key, value in {**request, **change}.items() if value is not None}

    answer = sandbox_http.post("/batches", json=request)

    assert answer.status_code == 400
    error = answer.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["param"] == param and error["type"] == "invalid_request_error"
    assert sandbox_http.get("/batches").json()["data"] == []  # nothing was created


def test_metadata_at_the_limits_is_accepted(sandbox_client: openai.OpenAI) -> None:
    metadata = {f"{i:02d}" + "k" * 62: "v" * 512 for i in range(16)}
    batch = create(sandbox_client, "file-whatever", metadata=metadata)
    assert batch.metadata == metadata


def test_unknown_routes_are_404_in_the_error_shape(sandbox_http: httpx.Client) -> None:
    answer = sandbox_http.post("/batches/x/retry")
    assert answer.status_code == 404
    assert answer.json()["error"]["message"] == "Invalid URL (POST /v1/batches/x/retry)"


def test_portkey_output_route_serves_the_output_file(
    sandbox_http: httpx.Client, sandbox_client: openai.OpenAI
) -> None:
    batch = create(sandbox_client, upload(sandbox_client, request_lines(3)).id)
    done = wait_for(sandbox_client, batch.id)

    answer = sandbox_http.get(f"/batches/{batch.id}/output")

    assert answer.status_code == 200
    assert answer.headers["content-type"] == "application/octet-stream"
    assert answer.content == sandbox_client.files.content(done.output_file_id or "").content
