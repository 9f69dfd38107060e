"""What gets uploaded for a batch: a whole input file, or a byte range of it for one part.

A part is streamed straight from the original file, never copied to disk or memory.  The
length is fixed when the file is opened, and the writer checks the file held still.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO


@dataclass(frozen=True)
class UploadSource:
    path: Path
    filename: str  # what the provider will show; must end in .jsonl
    start: int = 0
    end: int | None = None  # None: to the end of the file
    expires_after: int | None = None  # seconds the provider keeps it; None: the provider's default

    def open(self) -> BinaryIO:
        """The bytes to send, their length fixed now: a file appended to meanwhile sends no
        more than it announced (the change itself is caught by `stamp`)."""
        return FileSlice(self.path, self.start, self.end)  # type: ignore[return-value]

    def stamp(self) -> tuple[int, int, int]:
        """Size, mtime and ctime: an upload is used only if these held still while it was sent."""
        info = os.stat(self.path)
        return info.st_size, info.st_mtime_ns, info.st_ctime_ns


class FileSlice(io.RawIOBase):
    """Bytes [start, end) of a file, seekable so httpx can learn its length without reading it."""

    def __init__(self, path: Path, start: int, end: int | None) -> None:
        super().__init__()
        self._file = path.open("rb")
        size = os.fstat(self._file.fileno()).st_size
        self._start = start
        self._length = (size if end is None else min(end, size)) - start
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        base = {os.SEEK_SET: 0, os.SEEK_CUR: self._pos, os.SEEK_END: self._length}[whence]
        self._pos = max(0, min(base + offset, self._length))
        return self._pos

    def read(self, size: int = -1) -> bytes:
        remaining = self._length - self._pos
        if size < 0 or size > remaining:
            size = remaining
        if size <= 0:
            return b""
        self._file.seek(self._start + self._pos)
        data = self._file.read(size)
        self._pos += len(data)
        return data

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def close(self) -> None:
        self._file.close()
        super().close()
