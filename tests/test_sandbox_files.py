"""The Files API: multipart uploads (also chunked, as the Portkey gateway sends them), content,
listing and deletion."""

from __future__ import annotations

import io
import os
from collections.abc import Iterator

import httpx
import openai
import pytest

from reconciler.sandbox import Sandbox
from tests.fixtures.sandbox import request_lines, to_jsonl, upload

BOUNDARY = "sandbox-test-boundary"


def multipart_pieces(content: bytes, filename: str, piece: int = 7777) -> Iterator[bytes]:
    """A multipart body in odd-sized pieces, so boundaries straddle chunk edges."""
    body = (
        (
            f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="purpose"\r\n\r\nbatch\r\n'
            f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="{filename}"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n"
        ).encode()
        + content
        + f"\r\n--{BOUNDARY}--\r\n".encode()
    )
    for start in range(0, len(body), piece):
        yield body[start : start + piece]


def test_chunked_upload_arrives_byte_identical(sandbox_http: httpx.Client) -> None:
    content = to_jsonl(request_lines(500)) + os.urandom(3000).hex().encode()
    headers = {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}

    answer = sandbox_http.post("/files", content=multipart_pieces(content, "in.jsonl"), headers=headers)

    assert answer.request.headers.get("transfer-encoding") == "chunked"
    assert answer.status_code == 200, answer.text
    created = answer.json()
    assert (created["object"], created["purpose"], created["bytes"]) == ("file", "batch", len(content))
    back = sandbox_http.get(f"/files/{created['id']}/content")
    assert back.headers["content-type"] == "application/octet-stream"
    assert back.content == content


def test_sdk_upload_round_trips_and_lists_retrieves_deletes(sandbox_client: openai.OpenAI) -> None:
    content = to_jsonl(request_lines(3))
    created = sandbox_client.files.create(file=("data.jsonl", io.BytesIO(content)), purpose="batch")

    assert sandbox_client.files.retrieve(created.id).bytes == len(content)
    assert sandbox_client.files.content(created.id).content == content
    assert [f.id for f in sandbox_client.files.list()] == [created.id]
    assert sandbox_client.files.delete(created.id).deleted is True
    with pytest.raises(openai.NotFoundError):
        sandbox_client.files.retrieve(created.id)
    with pytest.raises(openai.NotFoundError):
        sandbox_client.files.content(created.id)
    assert list(sandbox_client.files.list()) == []


def test_files_list_paginates_in_both_orders(sandbox_client: openai.OpenAI) -> None:
    ids = [upload(sandbox_client, request_lines(1)).id for _ in range(5)]

    newest_first = [f.id for f in sandbox_client.files.list(limit=2)]
    oldest_first = [f.id for f in sandbox_client.files.list(limit=2, order="asc")]

    assert newest_first == list(reversed(ids)) and oldest_first == ids


def test_batch_input_with_a_name_not_ending_in_jsonl_is_refused(sandbox_client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as raised:
        sandbox_client.files.create(file=("data.csv", io.BytesIO(b"{}\n")), purpose="batch")
    assert "Must be .jsonl" in str(raised.value)
    assert list(sandbox_client.files.list()) == []


def test_upload_without_purpose_or_file_is_400_and_leaves_no_spooled_bytes(
    sandbox: Sandbox, sandbox_http: httpx.Client
) -> None:
    no_purpose = sandbox_http.post("/files", files={"file": ("a.jsonl", b"{}\n")})
    no_file = sandbox_http.post("/files", data={"purpose": "batch"}, files={"other": ("a.jsonl", b"{}")})

    assert (no_purpose.status_code, no_purpose.json()["error"]["param"]) == (400, "purpose")
    assert (no_file.status_code, no_file.json()["error"]["param"]) == (400, "file")
    assert list((sandbox.data_dir / "tmp").iterdir()) == []
    assert sandbox_http.get("/files").json()["data"] == []
