"""What crosses the wire besides an endpoint's JSON: request bodies read in pieces, and error
answers in the API's shape.

A request body is read in pieces, whether sized by Content-Length or sent chunked.  The
Portkey gateway re-sends uploads with `Transfer-Encoding: chunked`, and uploads may be 200 MB:
nothing here holds more than one piece at a time.  multipart/form-data is parsed streaming,
file parts going straight to disk, piece by piece: only what the Files API needs, text fields
(kept in memory, small) and file parts (written to a spool file).  Everything else about
multipart (nested parts, encodings) is refused or ignored, as a real server would.

Error answers are `{"error": {"message", "type", "param", "code"}}` (`ApiProblem`).  This is
the server's own control flow (a request handler stops and answers with an error), not an
error of the reconciler, so it lives here rather than in reconciler/common/errors.py.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from email.message import Message
from pathlib import Path
from typing import Any, BinaryIO


class ApiProblem(Exception):
    def __init__(
        self,
        status: int,
        message: str,
        *,
        kind: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.kind = kind
        self.param = param
        self.code = code
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return {
            "error": {
                "message": self.message,
                "type": self.kind,
                "param": self.param,
                "code": self.code,
            }
        }


def bad_request(message: str, *, param: str | None = None, code: str | None = None) -> ApiProblem:
    return ApiProblem(400, message, param=param, code=code)


def missing(param: str) -> ApiProblem:
    return bad_request(
        f"Missing required parameter: '{param}'.", param=param, code="missing_required_parameter"
    )


def invalid_value(param: str, message: str) -> ApiProblem:
    return bad_request(message, param=param, code="invalid_value")


def not_found(message: str, *, param: str | None = None) -> ApiProblem:
    return ApiProblem(404, message, param=param)


def unknown_route(method: str, path: str) -> ApiProblem:
    return ApiProblem(404, f"Invalid URL ({method} {path})")


PIECE = 1 << 20
_MAX_CHUNK_LINE = 1024


class BodyReader:
    def __init__(self, stream: BinaryIO, headers: Message) -> None:
        self._stream = stream
        self.chunked = "chunked" in headers.get("Transfer-Encoding", "").lower()
        self._left = 0 if self.chunked else _content_length(headers)
        self.finished = not self.chunked and self._left == 0

    def read(self, size: int = PIECE) -> bytes:
        """Up to `size` bytes; b"" once the body is over."""
        if self.finished:
            return b""
        if self.chunked and self._left == 0:
            self._left = self._next_chunk_size()
            if self._left == 0:
                self._skip_trailers()
                self.finished = True
                return b""
        piece = self._stream.read(min(size, self._left))
        if not piece:
            raise bad_request("The request body ended before it was complete.")
        self._left -= len(piece)
        if self._left == 0:
            if self.chunked:
                self._stream.readline(_MAX_CHUNK_LINE)  # the CRLF closing the chunk
            else:
                self.finished = True
        return piece

    def read_all(self, limit: int) -> bytes:
        pieces, size = [], 0
        while piece := self.read():
            size += len(piece)
            if size > limit:
                raise ApiProblem(413, f"The request body is larger than {limit} bytes.")
            pieces.append(piece)
        return b"".join(pieces)

    def read_json(self, limit: int = PIECE) -> Any:
        raw = self.read_all(limit)
        try:
            return json.loads(raw)
        except ValueError:
            raise bad_request(
                "We could not parse the JSON body of your request. The body must be valid JSON."
            ) from None

    def drain(self, limit: int) -> bool:
        """Reads and drops what is left, up to `limit` bytes; True if the body is now over."""
        drained = 0
        while not self.finished and drained <= limit:
            drained += len(self.read())
        return self.finished

    def _next_chunk_size(self) -> int:
        line = self._stream.readline(_MAX_CHUNK_LINE)
        try:
            size = int(line.split(b";")[0].strip(), 16)
        except ValueError:
            size = -1
        if size < 0:
            raise bad_request("The chunked request body is malformed.")
        return size

    def _skip_trailers(self) -> None:
        while self._stream.readline(_MAX_CHUNK_LINE).strip():
            pass


def _content_length(headers: Message) -> int:
    raw = headers.get("Content-Length", "0")
    if not raw.strip().isdigit():
        raise bad_request("The Content-Length header is not a number.")
    return int(raw)


_MAX_HEADERS = 16 * 1024
_MAX_FIELD = 64 * 1024


@dataclass(frozen=True)
class Upload:
    filename: str
    path: Path
    size: int


@dataclass(frozen=True)
class Form:
    fields: dict[str, str]
    files: dict[str, Upload]


def boundary_of(content_type: str) -> bytes:
    message = Message()
    message["Content-Type"] = content_type
    boundary = message.get_param("boundary")
    if message.get_content_type() != "multipart/form-data" or not isinstance(boundary, str):
        raise bad_request("Expected a multipart/form-data body with a boundary.")
    return boundary.encode("latin-1")


def parse_form(body: BodyReader, boundary: bytes, spool: Callable[[], Path], max_file: int) -> Form:
    """Reads the whole form; file parts land in fresh spool paths (the caller owns them)."""
    scanner = _Scanner(body)
    scanner.skip_past(b"--" + boundary)
    fields: dict[str, str] = {}
    files: dict[str, Upload] = {}
    while scanner.take(2) == b"\r\n":
        name, filename = _disposition(scanner.until(b"\r\n\r\n", _MAX_HEADERS))
        delimiter = b"\r\n--" + boundary
        if filename is None:
            fields[name] = scanner.until(delimiter, _MAX_FIELD).decode("utf-8", "replace")
            continue
        path = spool()
        with open(path, "wb") as sink:
            size = scanner.stream_until(delimiter, sink.write, max_file)
        files.setdefault(name, Upload(filename=filename, path=path, size=size))
    return Form(fields=fields, files=files)


def _disposition(raw_headers: bytes) -> tuple[str, str | None]:
    message = Message()
    for line in raw_headers.decode("utf-8", "replace").split("\r\n"):
        key, _, value = line.partition(":")
        if key.strip():
            message[key.strip()] = value.strip()
    name = message.get_param("name", header="Content-Disposition")
    if not isinstance(name, str):
        raise bad_request("A multipart part has no form field name.")
    filename = message.get_filename()
    return name, filename


class _Scanner:
    """A window over the body that finds delimiters without holding more than ~2 pieces."""

    def __init__(self, body: BodyReader) -> None:
        self._body = body
        self._buffer = bytearray()

    def _fill(self) -> None:
        piece = self._body.read()
        if not piece:
            raise bad_request("The multipart body ended before its closing boundary.")
        self._buffer += piece

    def take(self, count: int) -> bytes:
        while len(self._buffer) < count:
            self._fill()
        taken = bytes(self._buffer[:count])
        del self._buffer[:count]
        return taken

    def skip_past(self, marker: bytes) -> None:
        self.stream_until(marker, lambda _: None, limit=_MAX_HEADERS)

    def until(self, marker: bytes, limit: int) -> bytes:
        kept = bytearray()
        self.stream_until(marker, kept.extend, limit)
        return bytes(kept)

    def stream_until(self, marker: bytes, sink: Callable[[memoryview], object], limit: int) -> int:
        """Passes everything before `marker` to `sink`, consumes the marker; returns the size."""
        passed = 0
        keep = len(marker) - 1  # a marker may straddle two pieces
        while (found := self._buffer.find(marker)) < 0:
            if len(self._buffer) > keep:
                passed += self._pass(sink, len(self._buffer) - keep, passed, limit)
            self._fill()
        passed += self._pass(sink, found, passed, limit)
        del self._buffer[: len(marker)]
        return passed

    def _pass(self, sink: Callable[[memoryview], object], count: int, passed: int, limit: int) -> int:
        if passed + count > limit:
            raise ApiProblem(413, f"A multipart part is larger than {limit} bytes.")
        with memoryview(self._buffer) as view, view[:count] as passing:
            sink(passing)  # no copy; sinks copy what they keep (file writes, bytearray.extend)
        del self._buffer[:count]
        return count
