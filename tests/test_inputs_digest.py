"""digest_input: one streaming pass gives the sha256, size, request count and model of an input."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from reconciler.common.errors import SpecError
from reconciler.common.limits import InputLimits
from reconciler.specs.inputs.digest import CHUNK_BYTES, digest_input
from tests.fixtures.repo import request_lines

CHAT = "/v1/chat/completions"


def write_lines(path: Path, lines: list[str], newline: bytes = b"\n") -> bytes:
    content = b"".join(line.encode() + newline for line in lines)
    path.write_bytes(content)
    return content


def requests_as_text(n: int) -> list[str]:
    return [json.dumps(line) for line in request_lines(n)]


def test_digest_is_the_sha256_size_count_and_model_of_the_file(tmp_path: Path) -> None:
    content = write_lines(tmp_path / "in.jsonl", requests_as_text(7))
    digest = digest_input(tmp_path / "in.jsonl", CHAT, display="in.jsonl")
    assert digest.sha256 == hashlib.sha256(content).hexdigest()
    assert (digest.size, digest.requests, digest.model) == (len(content), 7, "gpt-4o-mini")


def test_a_file_without_final_newline_counts_its_last_line(tmp_path: Path) -> None:
    content = "\n".join(requests_as_text(2)).encode()
    (tmp_path / "in.jsonl").write_bytes(content)
    digest = digest_input(tmp_path / "in.jsonl", CHAT, display="in.jsonl")
    assert (digest.requests, digest.sha256) == (2, hashlib.sha256(content).hexdigest())


def padded_line(custom_id: str, length: int) -> str:
    """A valid request line of exactly `length` bytes."""
    line = request_lines(1)[0] | {"custom_id": custom_id}
    line["body"]["metadata_pad"] = ""
    missing = length - len(json.dumps(line))
    line["body"]["metadata_pad"] = "x" * missing
    text = json.dumps(line)
    assert len(text) == length
    return text


@pytest.mark.parametrize("shift", [-2, -1, 0, 1])
def test_lines_split_across_chunk_boundaries_are_read_whole(tmp_path: Path, shift: int) -> None:
    # the first newline lands just before, on, or just after the end of the first chunk
    lines = [padded_line("a", CHUNK_BYTES + shift - 1), padded_line("b", 400), padded_line("c", 300)]
    content = write_lines(tmp_path / "in.jsonl", lines)
    digest = digest_input(tmp_path / "in.jsonl", CHAT, display="in.jsonl")
    assert (digest.requests, digest.size) == (3, len(content))
    assert digest.sha256 == hashlib.sha256(content).hexdigest()


def test_a_line_longer_than_several_chunks_is_one_request(tmp_path: Path) -> None:
    lines = [padded_line("big", 3 * CHUNK_BYTES + 17), padded_line("small", 300)]
    write_lines(tmp_path / "in.jsonl", lines)
    assert digest_input(tmp_path / "in.jsonl", CHAT, display="in.jsonl").requests == 2


def test_a_duplicate_far_apart_names_both_lines(tmp_path: Path) -> None:
    lines = requests_as_text(1200)
    lines.append(lines[1000])
    write_lines(tmp_path / "in.jsonl", lines)
    with pytest.raises(SpecError) as caught:
        digest_input(tmp_path / "in.jsonl", CHAT, display="data/in.jsonl")
    assert [str(p) for p in caught.value.problems] == [
        "data/in.jsonl:1201: custom_id: duplicate 'req-01001' (first on line 1001)"
    ]


def test_request_limit_is_inclusive(tmp_path: Path) -> None:
    write_lines(tmp_path / "in.jsonl", requests_as_text(4))
    limits = InputLimits(max_requests=4)
    assert digest_input(tmp_path / "in.jsonl", CHAT, display="in", limits=limits).requests == 4
    with pytest.raises(SpecError, match="5 requests; a batch may have at most 4"):
        write_lines(tmp_path / "in.jsonl", requests_as_text(5))
        digest_input(tmp_path / "in.jsonl", CHAT, display="in", limits=limits)


def test_byte_limit_is_inclusive(tmp_path: Path) -> None:
    content = write_lines(tmp_path / "in.jsonl", requests_as_text(3))
    exact = InputLimits(max_bytes=len(content))
    assert digest_input(tmp_path / "in.jsonl", CHAT, display="in", limits=exact).size == len(content)
    with pytest.raises(SpecError, match="at most"):
        digest_input(
            tmp_path / "in.jsonl", CHAT, display="in", limits=InputLimits(max_bytes=len(content) - 1)
        )


def test_a_vanished_file_is_a_spec_error_not_a_crash(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match=r"in\.jsonl: cannot read"):
        digest_input(tmp_path / "in.jsonl", CHAT, display="in.jsonl")


def test_a_byte_order_mark_is_reported_on_line_one(tmp_path: Path) -> None:
    (tmp_path / "in.jsonl").write_bytes(b"\xef\xbb\xbf" + "\n".join(requests_as_text(2)).encode())
    with pytest.raises(SpecError) as caught:
        digest_input(tmp_path / "in.jsonl", CHAT, display="in.jsonl")
    assert [(p.line, "BOM" in p.message) for p in caught.value.problems] == [(1, True)]
