"""Fuzzing input validation: any JSONL either digests correctly or is reported, never crashes."""

from __future__ import annotations

import hashlib
import json
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reconciler.common.errors import SpecError
from reconciler.common.limits import InputLimits
from reconciler.specs.inputs.digest import digest_input

CHAT = "/v1/chat/completions"
FUZZ = settings(max_examples=200, deadline=None)
LIMITS = InputLimits(max_requests=20, max_bytes=64 * 1024)

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)
REQUEST = st.fixed_dictionaries(
    {},
    optional={
        "custom_id": st.sampled_from(["a", "b", "c", ""]) | JSON_VALUES,
        "method": st.sampled_from(["POST", "GET"]) | JSON_VALUES,
        "url": st.sampled_from([CHAT, "/v1/embeddings"]) | JSON_VALUES,
        "body": st.fixed_dictionaries(
            {},
            optional={
                "model": st.sampled_from(["gpt-4o-mini", "gpt-4o"]) | JSON_VALUES,
                "stream": JSON_VALUES,
                "messages": JSON_VALUES,
            },
        )
        | JSON_VALUES,
    },
)
LINE = (
    REQUEST.map(json.dumps).map(str.encode)
    | st.binary(max_size=40)
    | st.sampled_from([b"", b" ", b"\r", b"{"])
)


@pytest.fixture(scope="module")
def scratch() -> Iterator[Path]:
    with tempfile.TemporaryDirectory() as folder:
        yield Path(folder) / "in.jsonl"


def check(path: Path, content: bytes) -> None:
    path.write_bytes(content)
    try:
        digest = digest_input(path, CHAT, display="in.jsonl", limits=LIMITS)
    except SpecError as error:
        lines = content.count(b"\n") + 1
        assert error.problems
        for problem in error.problems:
            assert problem.path == "in.jsonl"
            assert problem.line is None or 1 <= problem.line <= lines
        return
    assert digest.sha256 == hashlib.sha256(content).hexdigest()
    assert digest.size == len(content)
    assert 1 <= digest.requests <= min(LIMITS.max_requests, lines_with_text(content))


def lines_with_text(content: bytes) -> int:
    return sum(1 for line in content.split(b"\n") if line.strip())


@pytest.mark.slow
@FUZZ
@given(st.lists(LINE, max_size=25))
def test_random_lines_digest_or_are_reported(scratch: Path, lines: list[bytes]) -> None:
    check(scratch, b"\n".join(lines))


@FUZZ
@given(st.binary(max_size=300))
def test_random_bytes_digest_or_are_reported(scratch: Path, content: bytes) -> None:
    check(scratch, content)


@pytest.mark.slow
@FUZZ
@given(st.lists(st.sampled_from(["a", "b", "c", "d"]), min_size=1, max_size=10))
def test_custom_ids_are_accepted_exactly_when_unique(scratch: Path, ids: list[str]) -> None:
    def request(custom_id: str) -> dict[str, Any]:
        return {"custom_id": custom_id, "method": "POST", "url": CHAT, "body": {"model": "m"}}

    scratch.write_text("".join(json.dumps(request(i)) + "\n" for i in ids))
    try:
        digest = digest_input(scratch, CHAT, display="in.jsonl", limits=LIMITS)
    except SpecError as error:
        duplicates = [p for p in error.problems if "duplicate" in p.message]
        assert len(duplicates) == len(ids) - len(set(ids)) > 0
    else:
        assert len(set(ids)) == len(ids) == digest.requests
