"""Upstream errors as they come out of the real Portkey gateway: status codes, Retry-After,
the rewritten error body, the API key check, and no retries by the gateway itself.

docs/portkey.md records the shapes pinned here; the reconciler's client parses them.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import httpx
import openai
import pytest

from reconciler.sandbox import Sandbox
from tests.fixtures.gateway import Gateway, gateway_headers
from tests.fixtures.sandbox import request_lines, upload

SEED = 20261122
REQUESTS = 24


def _statuses(client: httpx.Client, count: int) -> list[tuple[int, str | None, dict[str, object]]]:
    """(status, Retry-After, body) of `count` sequential list calls."""
    answers = []
    for _ in range(count):
        response = client.get("/batches", params={"limit": 1})
        answers.append((response.status_code, response.headers.get("retry-after"), response.json()))
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

    assert [(s, r) for s, r, _ in seen] == [(s, r) for s, r, _ in expected]
    assert {status for status, _, _ in seen} == {200, 429, 500, 503}  # the seed covers every kind
    assert all(retry == "7" for status, retry, _ in seen if status in (429, 503))
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


# `GET /v1/batches?after=<case>` → (status, content type, body, extra headers) of the odd upstream
_ODD_ANSWERS = {
    "empty-502": (502, None, b"", {}),
    "html-503": (503, "text/html", b"<html><h1>503 Service Unavailable</h1></html>", {"Retry-After": "3"}),
    "empty-200": (200, None, b"", {}),
}


class _OddUpstreamHandler(BaseHTTPRequestHandler):
    """Answers no Batch API would give, but a crashed proxy in front of one might."""

    def do_GET(self) -> None:
        case = parse_qs(urlsplit(self.path).query)["after"][0]
        status, content_type, body, extra = _ODD_ANSWERS[case]
        self.send_response(status)
        if content_type:
            self.send_header("Content-Type", content_type)
        for name, value in extra.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def odd_upstream() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _OddUpstreamHandler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.mark.parametrize(
    ("case", "status", "retry_after", "body"),
    [
        ("empty-502", 502, None, b'{"html-message":""}'),
        ("html-503", 503, "3", b'{"html-message":"<html><h1>503 Service Unavailable</h1></html>"}'),
        ("empty-200", 500, None, b'{"status":"failure","message":"Something went wrong"}'),
    ],
    ids=["empty-error-body-becomes-html-message", "html-error-body-is-wrapped", "empty-200-becomes-500"],
)
def test_upstream_answers_without_an_error_object_come_out_of_the_gateway_like_this(
    portkey_gateway: Gateway,
    odd_upstream: str,
    case: str,
    status: int,
    retry_after: str | None,
    body: bytes,
) -> None:
    response = httpx.get(
        f"{portkey_gateway.base_url}/batches",
        params={"after": case},
        headers=gateway_headers(odd_upstream),
        timeout=30,
    )

    assert (response.status_code, response.headers.get("retry-after")) == (status, retry_after)
    assert response.content == body
