"""Batch input files: checked line by line, hashed and counted in one streaming pass.

A 200 MB input should cost what hashing and json-parsing it costs, with flat memory: the
file is read in 1 MiB chunks that feed sha256 directly, and each line gets a handful of
dict lookups. Memory is bounded by the longest line (and the file by `max_bytes`, checked
before reading). Results are cached by (path, size, mtime) so an unchanged input is not
re-read on every plan.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from reconciler.common import atomic
from reconciler.common.errors import Problem, SpecError
from reconciler.common.limits import API_LIMITS, NO_LIMITS, InputLimits
from reconciler.specs.loader import LoadedRepo, display
from reconciler.specs.paths import RepoPaths

CHUNK_BYTES = 1 << 20
MAX_LISTED = 20  # problems shown per file; a broken 50,000-line file is not 50,000 lines of output
CACHE_NAME = "input-cache.json"
CACHE_FORMAT = 1


@dataclass(frozen=True)
class InputDigest:
    sha256: str
    requests: int
    size: int
    model: str


def digest_input(path: Path, endpoint: str, *, display: str, limits: InputLimits = API_LIMITS) -> InputDigest:
    """The input's sha256, size, request count and model, or a SpecError listing its problems."""
    checker = _RequestChecker(endpoint, display, limits)
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
    if checker.failed or checker.model is None:
        raise SpecError(checker.problems())
    return InputDigest(tally.hasher.hexdigest(), checker.requests, tally.size, checker.model)


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


def _too_many(requests: int, limits: InputLimits) -> str:
    return (
        f"{requests} requests; a batch may have at most {limits.max_requests} "
        "(add `split:` to the spec to send it as several batches)"
    )


class _RequestChecker:
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
        self._check_custom_id(number, request.get("custom_id"))
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


def digest_repo(
    repo: LoadedRepo, paths: RepoPaths, *, cache: bool = True, limits: InputLimits = API_LIMITS
) -> dict[str, InputDigest]:
    """Every job's input digest; all problems across jobs in one SpecError.

    The cache lives next to the state file and is written only when every input is valid.
    """
    cache_path = paths.state.parent / CACHE_NAME
    cached = _read_cache(cache_path) if cache else {}
    fresh: dict[str, InputDigest] = {}
    digests: dict[str, InputDigest] = {}
    problems: list[Problem] = []
    for name, job in sorted(repo.jobs.items()):
        endpoint, shown = job.job.spec.endpoint, display(job.input_path, paths)
        job_limits = NO_LIMITS if job.job.spec.split else limits
        try:
            key = _cache_key(job.input_path, endpoint, job_limits)
            digest = fresh.get(key) or cached.get(key)
            digest = digest or digest_input(job.input_path, endpoint, display=shown, limits=job_limits)
            unchanged = key == _cache_key(job.input_path, endpoint, job_limits)
        except OSError as error:
            problems.append(Problem(shown, None, "", f"cannot read: {error.strerror or error}"))
            continue
        except SpecError as error:
            problems += error.problems
            continue
        digests[name] = digest
        if unchanged:  # a file written to while we read it is hashed again next time
            fresh[key] = digest
    if problems:
        raise SpecError(problems)
    if cache and fresh != cached:
        _write_cache(cache_path, fresh)
    return digests


def _cache_key(path: Path, endpoint: str, limits: InputLimits) -> str:
    stat = path.stat()
    parts = [str(path), stat.st_size, stat.st_mtime_ns, endpoint, limits.max_requests, limits.max_bytes]
    return json.dumps(parts)


def _read_cache(path: Path) -> dict[str, InputDigest]:
    """The cached digests; a missing or damaged cache is an empty one, rewritten later."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
        if document.get("format_version") != CACHE_FORMAT:
            return {}
        return {key: InputDigest(**entry) for key, entry in document["inputs"].items()}
    except (OSError, ValueError, TypeError, AttributeError, KeyError):
        return {}


def _write_cache(path: Path, digests: dict[str, InputDigest]) -> None:
    """Atomically (temp file + rename); a cache that cannot be written is only a slower next run."""
    document = {"format_version": CACHE_FORMAT, "inputs": {k: asdict(d) for k, d in digests.items()}}
    with contextlib.suppress(OSError):
        atomic.write_bytes(path, json.dumps(document, indent=1, sort_keys=True).encode())
