"""One batch input checked line by line, hashed and counted in one streaming pass.

A 200 MB input should cost what hashing and json-parsing it costs, with flat memory: the
file is read in 1 MiB chunks that feed sha256 directly, and each line gets a handful of
dict lookups. Memory is bounded by the longest line (and the file by `max_bytes`, checked
before reading).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from reconciler.common.errors import Problem, SpecError
from reconciler.common.limits import API_LIMITS, InputLimits
from reconciler.specs.inputs.lines import RequestChecker

CHUNK_BYTES = 1 << 20


@dataclass(frozen=True)
class InputDigest:
    sha256: str
    requests: int
    size: int
    model: str
    input_tokens: int = 0  # estimated (inputs/tokens.py)
    output_tokens: int = 0  # the output limits the requests set, added up
    unbounded: int = 0  # requests without an output limit


def digest_input(
    path: Path,
    endpoint: str,
    *,
    display: str,
    limits: InputLimits = API_LIMITS,
    fingerprints: dict[str, bytes] | None = None,
) -> InputDigest:
    """The input's sha256, size, request count and model, or a SpecError listing its problems;
    `fingerprints`, when given, receives each request's (index.py)."""
    checker = RequestChecker(endpoint, display, limits)
    tally = _Tally()
    try:
        size = path.stat().st_size
        if size > limits.max_bytes:
            checker.report(None, "", _too_big(size, limits))
            raise SpecError(checker.problems())
        for number, line in enumerate(_lines(path, tally.update), start=1):
            checker.check(number, line)
    except OSError as error:
        raise SpecError([Problem(display, None, "", f"cannot read: {error.strerror or error}")]) from None
    if checker.requests == 0:
        checker.report(None, "", "no requests: the file is empty; write one JSON request per line")
    if checker.requests > limits.max_requests:
        checker.report(None, "", _too_many(checker.requests, limits))
    elif checker.inputs_passed_at is not None:
        checker.report(checker.inputs_passed_at, "body.input", _too_many_inputs(checker.inputs, limits))
    if checker.failed or checker.model is None:
        raise SpecError(checker.problems())
    if fingerprints is not None:
        fingerprints.update(checker.fingerprints)
    return InputDigest(
        tally.hasher.hexdigest(),
        checker.requests,
        tally.size,
        checker.model,
        checker.input_tokens,
        checker.output_tokens,
        checker.unbounded,
    )


class _Tally:
    """sha256 and size of the bytes actually read, so both describe the same content."""

    def __init__(self) -> None:
        self.hasher = hashlib.sha256()
        self.size = 0

    def update(self, chunk: bytes) -> None:
        self.hasher.update(chunk)
        self.size += len(chunk)


def _lines(path: Path, hash_update: Callable[[bytes], None]) -> Iterator[bytes]:
    """The file's lines without their b'\\n', hashing every byte on the way."""
    pending: list[bytes] = []  # parts of a line longer than one chunk
    with path.open("rb") as stream:
        while chunk := stream.read(CHUNK_BYTES):
            hash_update(chunk)
            lines = chunk.split(b"\n")
            if len(lines) == 1:
                pending.append(chunk)
                continue
            lines[0] = b"".join([*pending, lines[0]])
            pending = [lines.pop()]
            yield from lines
    last = b"".join(pending)
    if last:
        yield last


def _too_big(size: int, limits: InputLimits) -> str:
    mib = 1024 * 1024
    return (
        f"{size / mib:.1f} MiB; a batch input may have at most {limits.max_bytes / mib:.0f} MiB "
        "(add `split:` to the spec to send it as several batches)"
    )


def _too_many_inputs(inputs: int, limits: InputLimits) -> str:
    return (
        f"the embedding inputs pass {limits.max_inputs:,} here ({inputs:,} in all); an embeddings batch "
        f"may have at most {limits.max_inputs:,} (add `split:` to the spec to send it as several batches)"
    )


def _too_many(requests: int, limits: InputLimits) -> str:
    return (
        f"{requests} requests; a batch may have at most {limits.max_requests} "
        "(add `split:` to the spec to send it as several batches)"
    )
