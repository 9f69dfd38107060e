"""ProviderApi over real HTTP: what it retries, what it never retries, and what it says."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from reconciler.api.client import ProviderApi
from reconciler.api.transport import Backoff, Transport
from reconciler.api.uploads import UploadSource
from reconciler.api.writer import BatchWriter
from reconciler.common.errors import ApiStatusError, OutcomeUnknownError
from reconciler.sandbox import Sandbox
from tests.reconcile_helpers import batches

FAST = Backoff(attempts=8, initial=0.001, cap=0.01, max_retry_after=0.05)


@pytest.fixture
def client(sandbox: Sandbox) -> Iterator[ProviderApi]:
    with httpx.Client(base_url=sandbox.base_url, timeout=10) as http:
        yield ProviderApi.over(Transport(http, backoff=FAST))


def upload(client: ProviderApi, tmp_path: Path) -> str:
    path = tmp_path / "in.jsonl"
    path.write_text(
        '{"custom_id": "a", "method": "POST", "url": "/v1/chat/completions", "body": {"model": "gpt-4o-mini"}}\n'
    )
    return BatchWriter(client.transport).upload_file(UploadSource(path, "in.jsonl"))


def test_injected_429s_and_5xx_are_retried_until_the_call_succeeds(
    client: ProviderApi, sandbox: Sandbox, tmp_path: Path
) -> None:
    file_id = upload(client, tmp_path)
    sandbox.configure(fault_rate=0.3, seed=7)
    sandbox.reset_counts()
    for _ in range(10):
        assert list(client.reader.iter_batches()) == []
    sent = sandbox.request_counts()["GET /v1/batches"]
    assert sent > 10, "with 30% of requests failing, some must have been retried"
    assert file_id.startswith("file-")


def test_a_client_error_is_never_retried(client: ProviderApi, sandbox: Sandbox) -> None:
    sandbox.reset_counts()
    with pytest.raises(ApiStatusError) as raised:
        client.reader.retrieve_batch("batch_does_not_exist")
    assert raised.value.status == 404
    assert sandbox.request_counts() == {"GET /v1/batches/{id}": 1}


def test_cancelling_a_completed_batch_is_a_409_sent_once(
    client: ProviderApi, sandbox: Sandbox, tmp_path: Path
) -> None:
    file_id = upload(client, tmp_path)
    batch = BatchWriter(client.transport).create_batch(
        input_file_id=file_id, endpoint="/v1/chat/completions", completion_window="24h", metadata={}
    )
    from tests.reconcile_helpers import wait_until

    wait_until(lambda: client.reader.retrieve_batch(batch.id).status == "completed")
    sandbox.reset_counts()
    with pytest.raises(ApiStatusError) as raised:
        BatchWriter(client.transport).cancel_batch(batch.id)
    assert raised.value.status == 409
    assert sandbox.request_counts() == {"POST /v1/batches/{id}/cancel": 1}


def test_a_create_whose_answer_is_lost_is_not_sent_again_but_reported_as_unknown(
    client: ProviderApi, sandbox: Sandbox, tmp_path: Path
) -> None:
    file_id = upload(client, tmp_path)
    sandbox.configure(lost_response_rate=1.0)
    sandbox.reset_counts()
    with pytest.raises(OutcomeUnknownError):
        BatchWriter(client.transport).create_batch(
            input_file_id=file_id,
            endpoint="/v1/chat/completions",
            completion_window="24h",
            metadata={"k": "v"},
        )
    assert sandbox.request_counts() == {"POST /v1/batches": 1}
    assert len(batches(sandbox)) == 1


def test_error_messages_never_carry_the_credentials_sent(sandbox: Sandbox) -> None:
    key = "sk-test-never-show-me-123"
    sandbox.configure(api_key="the-right-one")
    headers = {"Authorization": f"Bearer {key}"}
    with httpx.Client(base_url=sandbox.base_url, headers=headers, timeout=10) as http:
        client = ProviderApi.over(Transport(http, secrets=[key], backoff=FAST))
        with pytest.raises(ApiStatusError) as raised:
            list(client.reader.iter_batches())
    assert raised.value.status == 401
    assert key not in str(raised.value)


def test_a_batch_whose_errors_come_as_a_bare_list_is_still_read() -> None:
    from reconciler.api.batch import Batch

    batch = Batch.model_validate(
        {"id": "batch_1", "status": "failed", "errors": [{"code": "invalid_json_line"}]}
    )
    assert batch.errors == {"object": "list", "data": [{"code": "invalid_json_line"}]}
