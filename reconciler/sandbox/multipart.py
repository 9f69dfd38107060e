"""A streaming multipart/form-data parser: file parts go straight to disk, piece by piece.

Only what the Files API needs: text fields (kept in memory, small) and file parts (written
to a spool file). Everything else about multipart (nested parts, encodings) is refused or
ignored, as a real server would.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from email.message import Message
from pathlib import Path

from reconciler.sandbox.body import BodyReader
from reconciler.sandbox.problems import ApiProblem, bad_request

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
