"""Upstream answers with no `{"error": ...}` object, and no upstream at all, as they come out of
the real Portkey gateway: what the reconciler's client must parse besides the API's own errors.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from tests.fixtures.gateway import Gateway, gateway_headers

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
    portkey_gateway: Gateway, odd_upstream: str, case: str, status: int, retry_after: str | None, body: bytes
) -> None:
    response = httpx.get(
        f"{portkey_gateway.base_url}/batches",
        params={"after": case},
        headers=gateway_headers(odd_upstream),
        timeout=30,
    )

    assert (response.status_code, response.headers.get("retry-after")) == (status, retry_after)
    assert response.content == body


def test_an_unreachable_upstream_is_a_gateway_500_naming_the_connection_error(
    portkey_gateway: Gateway,
) -> None:
    with socket.socket() as probe:  # a port that was free a moment ago and has no listener now
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]

    response = httpx.get(
        f"{portkey_gateway.base_url}/batches",
        headers=gateway_headers(f"http://127.0.0.1:{closed_port}/v1"),
        timeout=30,
    )

    assert response.status_code == 500
    assert list(response.json()) == ["html-message"]
    assert "ECONNREFUSED" in response.json()["html-message"]
