"""Reading a request body in pieces, whether sized by Content-Length or sent chunked.

The Portkey gateway re-sends uploads with `Transfer-Encoding: chunked`, and uploads may be
200 MB: nothing here holds more than one piece at a time.
"""

from __future__ import annotations

import json
from email.message import Message
from typing import Any, BinaryIO

from reconciler.sandbox.problems import ApiProblem, bad_request

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
