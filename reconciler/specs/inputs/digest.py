"""One batch input checked line by line, hashed and counted in one streaming pass.

`RequestChecker` holds the rules for one request line and what the file-level rules remember
(custom_ids seen, the model, a blank line only at the end).  A 200 MB input should cost what
hashing and json-parsing it costs, with flat memory: the file is read in 1 MiB chunks that
feed sha256 directly, and each line gets a handful of dict lookups. Memory is bounded by the
longest line (and the file by `max_bytes`, checked before reading).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reconciler.common.errors import Problem, SpecError
from reconciler.common.limits import API_LIMITS, MAX_EMBEDDING_INPUTS_PER_REQUEST, InputLimits
from reconciler.specs.inputs.tokens import EMBEDDINGS, UNBOUNDED, inputs_of, request_tokens

MAX_LISTED = 20  # problems shown per file; a broken 50,000-line file is not 50,000 lines of output


class RequestChecker:
    """The rules for one line, and what the file-level rules need to remember."""

    def __init__(self, endpoint: str, display: str, limits: InputLimits) -> None:
        self.endpoint = endpoint
        self.display = display
        self.limits = limits
        self.requests = 0
        self.model: str | None = None
        self.model_line = 0
        self.first_line_of: dict[str, int] = {}
        self.blank_line: int | None = None  # a blank line is fine only at the end
        self.listed: list[Problem] = []
        self.unlisted = 0
        self.input_tokens = 0  # estimated, over every request (see tokens.py)
        self.largest = (0, 0)  # the most input tokens of one request, and its line
        self.output_tokens = 0  # the requests' own output limits, added up
        self.unbounded = 0  # requests that set no output limit
        self.fingerprints: dict[str, bytes] = {}  # custom_id → its line's (inputs/cache.py)
        self.inputs = 0  # embedding inputs, over every request of an embeddings job
        self.inputs_passed_at: int | None = None  # the line that took them past the limit

    @property
    def failed(self) -> bool:
        return bool(self.listed)

    def report(self, line: int | None, field: str, message: str) -> None:
        if len(self.listed) < MAX_LISTED:
            self.listed.append(Problem(self.display, line, field, message))
        else:
            self.unlisted += 1

    def problems(self) -> list[Problem]:
        more = [Problem(self.display, None, "", f"… and {self.unlisted} more problems")]
        return self.listed + (more if self.unlisted else [])

    def check(self, number: int, line: bytes) -> None:
        if not line or line.isspace():
            self.blank_line = self.blank_line or number
            return
        if self.blank_line:
            self.report(self.blank_line, "", "blank line; every line must be one JSON request")
            self.blank_line = None
        self.requests += 1
        if self.requests > self.limits.max_requests:
            return  # already an error; just count, without growing memory
        try:
            request = _decode(line)
        except UnicodeDecodeError:
            self.report(number, "", "not UTF-8 text; save the file as UTF-8")
            return
        except ValueError as error:
            self.report(number, "", f"not valid JSON: {getattr(error, 'msg', error)}")
            return
        if type(request) is not dict:
            self.report(number, "", "must be a JSON object: {custom_id, method, url, body}")
            return
        custom_id = request.get("custom_id")
        self._check_custom_id(number, custom_id)
        if type(custom_id) is str:
            self.fingerprints[custom_id] = hashlib.blake2b(line, digest_size=8).digest()
        self._check_method_and_url(number, request)
        self._check_body(number, request.get("body"))

    def _check_custom_id(self, number: int, custom_id: object) -> None:
        if custom_id is None:
            self.report(number, "custom_id", "required")
        elif type(custom_id) is not str or not custom_id:
            self.report(number, "custom_id", "must be a non-empty string")
        else:
            first = self.first_line_of.setdefault(custom_id, number)
            if first != number:
                shown = repr(custom_id[:60])
                self.report(number, "custom_id", f"duplicate {shown} (first on line {first})")

    def _check_method_and_url(self, number: int, request: dict[str, Any]) -> None:
        method, url = request.get("method"), request.get("url")
        if method != "POST":
            self.report(number, "method", "required" if method is None else "must be 'POST'")
        if url != self.endpoint:
            message = f"must be the job's endpoint {self.endpoint}"
            self.report(number, "url", "required" if url is None else message)

    def _check_body(self, number: int, body: object) -> None:
        if type(body) is not dict:
            self.report(number, "body", "required" if body is None else "must be a JSON object")
            return
        model = body.get("model")
        if type(model) is not str or not model:
            message = "required" if model is None else "must be a non-empty string"
            self.report(number, "body.model", message)
        elif self.model is None:
            self.model, self.model_line = model, number
        elif model != self.model:
            message = (
                f"{model[:60]!r}, but line {self.model_line} has {self.model[:60]!r}; one model per file"
            )
            self.report(number, "body.model", message)
        if body.get("stream") is True:
            self.report(number, "body.stream", "streaming is not supported in a batch; remove it")
        if self.endpoint == EMBEDDINGS:
            self._count_inputs(number, body.get("input"))
        read, limit = request_tokens(self.endpoint, body)
        self.input_tokens += read
        if read > self.largest[0]:
            self.largest = (read, number)
        if limit == UNBOUNDED:
            self.unbounded += 1
        else:
            self.output_tokens += limit

    def _count_inputs(self, number: int, value: object) -> None:
        count = inputs_of(value)
        if count > MAX_EMBEDDING_INPUTS_PER_REQUEST:
            message = (
                f"{count:,} inputs; an embeddings request may have at most "
                f"{MAX_EMBEDDING_INPUTS_PER_REQUEST:,}: spread them over more lines"
            )
            self.report(number, "body.input", message)
        self.inputs += count
        if self.inputs_passed_at is None and self.inputs > self.limits.max_inputs:
            self.inputs_passed_at = number


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


# Built once: json.loads with a keyword argument builds a decoder per call, ~20% of the parse.
_DECODER = json.JSONDecoder(parse_constant=_reject_constant)


def _decode(line: bytes) -> Any:
    """json.loads(line) without NaN and Infinity, keeping its check for a byte order mark."""
    text = line.decode("utf-8")
    if text.startswith("\ufeff"):
        raise json.JSONDecodeError("Unexpected UTF-8 BOM (decode using utf-8-sig)", text, 0)
    return _DECODER.decode(text)


CHUNK_BYTES = 1 << 20


def request_identity(endpoint: str, body: object) -> str:
    """What a request asks, whatever its custom_id: its endpoint and its body in canonical JSON
    (keys sorted, no whitespace, text as UTF-8), hashed.  Two lines that differ only in the
    custom_id, the order of keys or spacing are one request; any other difference (a model, a
    prompt, a parameter, 1 against 1.0) is another (spec.reuse, engine/reuse.py)."""
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(f"{endpoint}\n{canonical}".encode()).hexdigest()


def line_identity(endpoint: str, line: bytes) -> tuple[str, str]:
    """(custom_id, identity) of one request line of a checked input; its own url is its endpoint
    (a checked input's lines all name the job's), `endpoint` where it names none."""
    request = _decode(line)
    url = request.get("url")
    return str(request["custom_id"]), request_identity(
        url if isinstance(url, str) else endpoint, request.get("body")
    )


@dataclass(frozen=True)
class InputDigest:
    sha256: str
    requests: int
    size: int
    model: str
    input_tokens: int = 0  # estimated (inputs/tokens.py)
    output_tokens: int = 0  # the output limits the requests set, added up
    unbounded: int = 0  # requests without an output limit
    largest_tokens: int = 0  # the most input tokens of one request: it must fit a queue limit
    largest_line: int = 0  # that request's line


def digest_input(
    path: Path,
    endpoint: str,
    *,
    display: str,
    limits: InputLimits = API_LIMITS,
    fingerprints: dict[str, bytes] | None = None,
) -> InputDigest:
    """The input's sha256, size, request count and model, or a SpecError listing its problems;
    `fingerprints`, when given, receives each request's (inputs/cache.py)."""
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
        *checker.largest,
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
