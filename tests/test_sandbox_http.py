"""Knobs seen over HTTP: API key, injected faults, lost responses, latency, counts, control."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import httpx
import openai
import pytest

from reconciler.sandbox import Sandbox
from tests.fixtures.sandbox import SandboxFactory, request_lines, upload


def test_api_key_is_required_when_set_and_never_echoed(sandbox_factory: SandboxFactory) -> None:
    sandbox = sandbox_factory(api_key="sk-right")

    def client(key: str) -> openai.OpenAI:
        return openai.OpenAI(base_url=sandbox.base_url, api_key=key, max_retries=0)

    with pytest.raises(openai.AuthenticationError) as wrong:
        client("sk-wrong-key-123").batches.list()
    missing = httpx.get(f"{sandbox.base_url}/batches")

    assert wrong.value.status_code == 401 and "sk-wrong" not in str(wrong.value.body)
    assert missing.status_code == 401 and set(missing.json()["error"]) == {"message", "type", "param", "code"}
    assert client("sk-right").batches.list().data == []
    control = httpx.get(sandbox.base_url.replace("/v1", "/_sandbox/config")).json()
    assert control["api_key"] == "***"  # the control route needs no key and shows none


def test_fault_rate_answers_429_500_503_with_retry_after_and_acts_on_nothing(
    sandbox: Sandbox, sandbox_http: httpx.Client
) -> None:
    sandbox.configure(fault_rate=1.0, retry_after_seconds=0.25, seed=3)

    answers = [sandbox_http.post("/batches", json={}) for _ in range(30)]

    assert {a.status_code for a in answers} == {429, 500, 503}
    for answer in answers:
        assert "error" in answer.json()
        # HTTP allows whole seconds in Retry-After; the precise wait is in retry-after-ms.
        faulted = answer.status_code in (429, 503)
        assert answer.headers.get("retry-after") == ("1" if faulted else None)
        assert answer.headers.get("retry-after-ms") == ("250" if faulted else None)
    assert sandbox.request_counts() == {"POST /v1/batches": 30}  # counted although faulted
    sandbox.configure(fault_rate=0.0)
    assert sandbox_http.get("/batches").json()["data"] == []  # nothing acted on


def test_the_sdk_sees_a_429_as_a_rate_limit_error(sandbox: Sandbox, sandbox_client: openai.OpenAI) -> None:
    sandbox.configure(fault_rate=1.0, seed=0)
    statuses = []
    for _ in range(10):
        with pytest.raises(openai.APIStatusError) as raised:
            sandbox_client.batches.list()
        statuses.append(raised.value.status_code)
        if raised.value.status_code == 429:
            assert isinstance(raised.value, openai.RateLimitError)
            assert raised.value.response.headers["retry-after"] == "1"
            assert raised.value.response.headers["retry-after-ms"] == "50"
    assert 429 in statuses


def test_faults_are_reproducible_from_the_seed(sandbox_factory: SandboxFactory) -> None:
    def statuses() -> list[int]:
        sandbox = sandbox_factory(fault_rate=0.5, seed=42)
        with httpx.Client(base_url=sandbox.base_url) as client:
            return [client.get("/batches").status_code for _ in range(40)]

    first, second = statuses(), statuses()

    assert first == second
    assert 200 in first and len(set(first)) > 1


def test_lost_response_creates_the_batch_but_answers_500(
    sandbox: Sandbox, sandbox_client: openai.OpenAI
) -> None:
    file_id = upload(sandbox_client, request_lines(1)).id
    sandbox.configure(lost_response_rate=1.0)

    with pytest.raises(openai.InternalServerError):
        sandbox_client.batches.create(
            input_file_id=file_id, endpoint="/v1/chat/completions", completion_window="24h"
        )

    listed = sandbox_client.batches.list().data
    assert len(listed) == 1 and listed[0].input_file_id == file_id


def test_latency_delays_every_v1_answer(sandbox: Sandbox, sandbox_http: httpx.Client) -> None:
    sandbox.configure(latency_seconds=2.0)
    with pytest.raises(httpx.ReadTimeout):
        sandbox_http.get("/batches", timeout=0.2)
    control = httpx.get(sandbox.base_url.replace("/v1", "/_sandbox/requests"), timeout=0.5)
    assert control.json() == {"GET /v1/batches": 1}  # control routes are neither delayed nor counted


def test_request_counts_use_route_templates_and_reset(sandbox: Sandbox, sandbox_http: httpx.Client) -> None:
    sandbox_http.get("/batches/batch_abc")
    sandbox_http.get("/batches/batch_def")
    sandbox_http.get("/files/file-abc/content")
    control = sandbox.base_url.replace("/v1", "/_sandbox")

    assert sandbox.request_counts() == {"GET /v1/batches/{id}": 2, "GET /v1/files/{id}/content": 1}
    assert httpx.get(f"{control}/requests").json() == sandbox.request_counts()
    httpx.post(f"{control}/requests/reset")
    assert sandbox.request_counts() == {}


def test_knobs_change_over_http_and_bad_knobs_are_refused(sandbox: Sandbox) -> None:
    control = sandbox.base_url.replace("/v1", "/_sandbox/config")

    changed = httpx.post(control, json={"fault_rate": 0.5, "latency_seconds": 0.0})
    too_high = httpx.post(control, json={"fault_rate": 1.5})
    unknown = httpx.post(control, json={"speed": 3})

    assert changed.status_code == 200 and changed.json()["fault_rate"] == 0.5
    assert sandbox.config.fault_rate == 0.5
    assert too_high.status_code == 400 and "fault_rate" in too_high.json()["error"]["message"]
    assert unknown.status_code == 400 and "unknown knob" in unknown.json()["error"]["message"]
    with pytest.raises(ValueError, match="speed"):
        sandbox.configure(speed=3)


@pytest.mark.parametrize(
    "knob",
    [
        "latency_seconds",
        "validation_seconds",
        "expiry_seconds",
        "requests_per_second",
        "webhook_retry_seconds",
        "webhook_attempts",
    ],
)
def test_a_knob_past_its_bound_is_refused_and_the_sandbox_keeps_answering(
    sandbox: Sandbox, sandbox_http: httpx.Client, knob: str
) -> None:
    """`latency_seconds: 1e300` was taken, and every answer after it was a 500."""
    control = sandbox.base_url.replace("/v1", "/_sandbox/config")
    value = 10**300 if knob == "webhook_attempts" else 1e300
    refused = httpx.post(control, json={knob: value})
    assert refused.status_code == 400
    assert refused.json()["error"]["message"].startswith(f"{knob}: Input should be less than or equal to ")
    assert sandbox_http.get("/batches").status_code == 200


def test_a_hundred_concurrent_connections_are_all_served(sandbox: Sandbox) -> None:
    limits = httpx.Limits(max_connections=100, max_keepalive_connections=100)
    with (
        httpx.Client(base_url=sandbox.base_url, timeout=30, limits=limits) as client,
        ThreadPoolExecutor(max_workers=100) as pool,
    ):
        results = list(pool.map(lambda _: client.get("/batches").status_code, range(500)))

    assert results == [200] * 500
    assert sandbox.request_counts() == {"GET /v1/batches": 500}
