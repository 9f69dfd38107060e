"""Upstream errors as they come out of the real Portkey gateway: status codes, Retry-After,
the rewritten error body, the API key check, and no retries by the gateway itself.

README.md (Use with Portkey) records the shapes pinned here; the reconciler's client parses them.
"""

from __future__ import annotations

import httpx
import openai
import pytest

from reconciler.sandbox import Sandbox
from tests.fixtures.gateway import Gateway, gateway_headers
from tests.fixtures.sandbox import request_lines, upload

SEED = 20261122
REQUESTS = 24


def _statuses(client: httpx.Client, count: int) -> list[tuple[int, str | None, str | None]]:
    """(status, Retry-After, retry-after-ms) of `count` sequential list calls."""
    answers = []
    for _ in range(count):
        response = client.get("/batches", params={"limit": 1})
        headers = response.headers
        answers.append((response.status_code, headers.get("retry-after"), headers.get("retry-after-ms")))
    return answers


def test_injected_429_and_5xx_pass_through_with_status_and_retry_after_unchanged(
    gateway_http: httpx.Client, sandbox: Sandbox
) -> None:
    sandbox.configure(fault_rate=0.5, retry_after_seconds=7, seed=SEED)
    with httpx.Client(base_url=sandbox.base_url, timeout=30) as direct:
        expected = _statuses(direct, REQUESTS)
    sandbox.configure(seed=SEED)  # the same dice again, now through the gateway
    sandbox.reset_counts()

    seen = _statuses(gateway_http, REQUESTS)

    assert seen == expected
    assert {status for status, _, _ in seen} == {200, 429, 500, 503}  # the seed covers every kind
    assert all((s, ms) == ("7", "7000") for status, s, ms in seen if status in (429, 503))
    assert sandbox.request_counts() == {"GET /v1/batches": REQUESTS}  # the gateway retried nothing


def test_error_body_is_rewritten_with_an_openai_error_prefix_and_a_provider_field(
    gateway_http: httpx.Client, sandbox: Sandbox
) -> None:
    sandbox.configure(fault_rate=1.0, seed=SEED)
    with httpx.Client(base_url=sandbox.base_url, timeout=30) as direct:
        original = direct.get("/batches").json()
    sandbox.configure(seed=SEED)

    response = gateway_http.get("/batches")

    error = original["error"]
    assert response.json() == {
        "error": {**error, "message": f"openai error: {error['message']}"},
        "provider": "openai",
    }
    assert response.headers["x-portkey-retry-attempt-count"] == "0"


def test_sandbox_api_key_is_enforced_through_the_gateway_authorization_header(
    portkey_gateway: Gateway, sandbox: Sandbox
) -> None:
    secret = "sk-sandbox-only-4f2a"
    sandbox.configure(api_key=secret)

    def client(key: str) -> openai.OpenAI:
        headers = gateway_headers(sandbox, key)
        return openai.OpenAI(
            base_url=portkey_gateway.base_url, api_key=key, default_headers=headers, max_retries=0
        )

    with client("sk-wrong") as wrong, pytest.raises(openai.AuthenticationError) as raised:
        wrong.batches.list()
    with client(secret) as right:
        assert right.batches.list().data == []
        assert upload(right, request_lines(1)).bytes > 0

    assert raised.value.status_code == 401
    assert raised.value.body == {
        "message": "openai error: Incorrect API key provided.",
        "type": "invalid_request_error",
        "param": None,
        "code": "invalid_api_key",
    }
    assert secret not in raised.value.response.text and "sk-wrong" not in raised.value.response.text


def test_lost_create_response_is_a_500_through_the_gateway_while_the_batch_exists(
    gateway_client: openai.OpenAI, sandbox: Sandbox
) -> None:
    file = upload(gateway_client, request_lines(2))
    sandbox.configure(lost_response_rate=1.0, seed=SEED)

    with pytest.raises(openai.InternalServerError) as raised:
        gateway_client.batches.create(
            input_file_id=file.id, endpoint="/v1/chat/completions", completion_window="24h"
        )

    assert raised.value.status_code == 500
    assert [batch.input_file_id for batch in gateway_client.batches.list()] == [file.id]
    assert sandbox.request_counts()["POST /v1/batches"] == 1


def test_gateway_refuses_a_request_without_a_provider_header_before_calling_the_upstream(
    portkey_gateway: Gateway, sandbox: Sandbox
) -> None:
    headers = gateway_headers(sandbox)
    del headers["x-portkey-provider"]

    response = httpx.get(f"{portkey_gateway.base_url}/batches", headers=headers, timeout=30)

    assert response.status_code == 400
    assert response.json() == {
        "status": "failure",
        "message": "Either x-portkey-config or x-portkey-provider header is required",
    }
    assert sandbox.request_counts() == {}
