"""Input validation: a malformed file ends `failed` with one error per bad line, real codes."""

from __future__ import annotations

import json
from typing import Any, Final

import openai

from tests.fixtures.sandbox import SandboxFactory, request_lines, upload, wait_for

ENDPOINT: Final = "/v1/chat/completions"


def run(client: openai.OpenAI, lines: list[Any], endpoint: Any = ENDPOINT) -> openai.types.Batch:
    file_id = upload(client, lines).id
    batch = client.batches.create(input_file_id=file_id, endpoint=endpoint, completion_window="24h")
    return wait_for(client, batch.id)


def line(custom_id: str, **changes: object) -> dict[str, object]:
    request: dict[str, object] = {
        "custom_id": custom_id,
        "method": "POST",
        "url": ENDPOINT,
        "body": {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]},
    }
    request.update(changes)
    return {key: value for key, value in request.items() if value is not None}


def test_malformed_lines_fail_the_batch_with_codes_params_and_line_numbers(
    sandbox_client: openai.OpenAI,
) -> None:
    body = {"model": "gpt-4o-mini", "messages": []}
    lines: list[object] = [
        line("ok-1"),
        b"{not json",
        line("no-method", method=None),
        {"method": "POST", "url": ENDPOINT, "body": body},
        line("wrong-url", url="/v1/embeddings"),
        line("streams", body={**body, "stream": True}),
        line("ghost-model", body={**body, "model": "gpt-does-not-exist"}),
        line("ok-1"),
        line("no-body", body=None),
        line("no-model", body={"messages": []}),
    ]

    batch = run(sandbox_client, lines)

    assert batch.status == "failed" and batch.failed_at is not None
    assert batch.in_progress_at is None and batch.output_file_id is None
    assert batch.errors is not None and batch.errors.object == "list"
    found = [(e.line, e.code, e.param) for e in batch.errors.data or []]
    assert found == [
        (2, "invalid_json_line", None),
        (3, "missing_required_parameter", "method"),
        (4, "missing_required_parameter", "custom_id"),
        (5, "invalid_url", "url"),
        (6, "streaming_unsupported", "body.stream"),
        (7, "model_not_found", "body.model"),
        (8, "duplicate_custom_id", "custom_id"),
        (9, "missing_required_parameter", "body"),
        (10, "invalid_request", "body.model"),
    ]
    assert all(e.message for e in batch.errors.data or [])


def test_line_numbers_count_blank_lines_and_bad_utf8_is_a_bad_json_line(
    sandbox_client: openai.OpenAI,
) -> None:
    batch = run(sandbox_client, [line("a"), b"", b'{"custom_id": "\xff\xfe"}'])

    assert batch.status == "failed" and batch.errors is not None
    assert [(e.line, e.code) for e in batch.errors.data or []] == [(3, "invalid_json_line")]


def test_a_missing_input_file_fails_the_batch_as_invalid_request(sandbox_client: openai.OpenAI) -> None:
    batch = sandbox_client.batches.create(
        input_file_id="file-gone", endpoint=ENDPOINT, completion_window="24h"
    )
    assert batch.status == "validating"  # a bad input file never fails the create call

    done = wait_for(sandbox_client, batch.id)

    assert done.status == "failed" and done.errors is not None
    assert [(e.code, e.line) for e in done.errors.data or []] == [("invalid_request", None)]


def test_an_input_deleted_before_validation_fails_but_one_deleted_after_still_completes(
    sandbox_factory: SandboxFactory,
) -> None:
    sandbox = sandbox_factory(validation_seconds=0.3, requests_per_second=50.0)
    client = openai.OpenAI(base_url=sandbox.base_url, api_key="x", max_retries=0)
    early = upload(client, request_lines(3))
    late = upload(client, request_lines(3))
    doomed = client.batches.create(input_file_id=early.id, endpoint=ENDPOINT, completion_window="24h")
    client.files.delete(early.id)
    kept = client.batches.create(input_file_id=late.id, endpoint=ENDPOINT, completion_window="24h")
    wait_for(client, kept.id, ("in_progress", "finalizing", "completed"))
    client.files.delete(late.id)

    assert wait_for(client, doomed.id).status == "failed"
    finished = wait_for(client, kept.id)
    assert finished.status == "completed"
    assert len(client.files.content(finished.output_file_id or "").text.splitlines()) == 3


def test_requests_the_model_refuses_are_400_lines_in_the_error_file_and_count_as_failed(
    sandbox_client: openai.OpenAI,
) -> None:
    lines: list[object] = [
        line("fine"),
        line("no-messages", body={"model": "gpt-4o-mini"}),
        line("fine-too"),
    ]

    batch = run(sandbox_client, lines)

    assert batch.status == "completed"
    counts = batch.request_counts
    assert counts is not None and (counts.total, counts.completed, counts.failed) == (3, 2, 1)
    output = [
        json.loads(x) for x in sandbox_client.files.content(batch.output_file_id or "").text.splitlines()
    ]
    errors = [
        json.loads(x) for x in sandbox_client.files.content(batch.error_file_id or "").text.splitlines()
    ]
    assert sorted(x["custom_id"] for x in output) == ["fine", "fine-too"]
    assert [x["custom_id"] for x in errors] == ["no-messages"]
    assert errors[0]["response"]["status_code"] == 400
    assert "messages" in errors[0]["response"]["body"]["error"]["message"]


def test_every_endpoint_of_the_model_completes_with_realistic_bodies(sandbox_client: openai.OpenAI) -> None:
    cases = {
        "/v1/chat/completions": ("gpt-4o-mini", "chat.completion"),
        "/v1/responses": ("gpt-4.1-mini", "response"),
        "/v1/completions": ("gpt-3.5-turbo-instruct", "text_completion"),
        "/v1/embeddings": ("text-embedding-3-small", "list"),
    }
    for endpoint, (model, kind) in cases.items():
        batch = run(sandbox_client, request_lines(2, endpoint=endpoint, model=model), endpoint)
        assert batch.status == "completed", endpoint
        first = json.loads(sandbox_client.files.content(batch.output_file_id or "").text.splitlines()[0])
        assert first["response"]["body"]["object"] == kind
        if endpoint == "/v1/embeddings":
            assert len(first["response"]["body"]["data"][0]["embedding"]) == 1536
    moderation = run(
        sandbox_client,
        request_lines(1, endpoint="/v1/moderations", model="omni-moderation-latest"),
        "/v1/moderations",
    )
    body = json.loads(sandbox_client.files.content(moderation.output_file_id or "").text)["response"]["body"]
    assert body["results"][0]["flagged"] is False
