"""Disk primitives shared by the stores: atomic writes, cross-process locks, sortable ids."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import secrets
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Generic, TypeVar

T = TypeVar("T")

_id_lock = threading.Lock()
_last_ns = 0


def unique_ns() -> int:
    """time.time_ns(), strictly increasing within this process (ids made from it never collide)."""
    global _last_ns
    with _id_lock:
        _last_ns = max(time.time_ns(), _last_ns + 1)
        return _last_ns


def sortable_id(prefix: str, at_ns: int, tail: str | None = None) -> str:
    """Ids that sort by creation time as plain strings, so listing newest-first is a name sort."""
    return f"{prefix}{at_ns:016x}{tail if tail is not None else secrets.token_hex(8)}"


def write_atomically(path: Path, data: bytes) -> None:
    """Readers in any process see the old file or the new one, never half of one."""
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)
        raise


def write_json(path: Path, value: Any) -> None:
    write_atomically(path, json.dumps(value, separators=(",", ":"), sort_keys=True).encode())


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """An exclusive flock: excludes other processes and, being per open file, other threads too."""
    with open(path, "a+b") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


class StatCache(Generic[T]):
    """Parsed files, re-read only when the file on disk changed (new inode, mtime or size).

    Atomic replacement always gives a new inode, so another process's write is not missed.
    """

    def __init__(self, parse: Callable[[bytes], T]) -> None:
        self._parse = parse
        self._lock = threading.Lock()
        self._entries: dict[str, tuple[tuple[int, int, int], T]] = {}

    def read(self, path: str) -> T | None:
        try:
            info = os.stat(path)
            key = (info.st_ino, info.st_mtime_ns, info.st_size)
            with self._lock:
                cached = self._entries.get(path)
            if cached is not None and cached[0] == key:
                return cached[1]
            with open(path, "rb") as handle:
                info = os.fstat(handle.fileno())  # the file we parse, even if replaced since stat
                key = (info.st_ino, info.st_mtime_ns, info.st_size)
                value = self._parse(handle.read())
        except FileNotFoundError:
            return None
        with self._lock:
            self._entries[path] = (key, value)
        return value

    def forget(self, path: str) -> None:
        with self._lock:
            self._entries.pop(path, None)


class Listing:
    """The sorted ids of a folder's `<id>.json` files, rescanned only when the folder changed.

    A folder's mtime moves on every entry added, removed or replaced, but only at the clock's
    tick: a scan is reused only if it began well after the last change, so a change in the
    same tick as the scan can never be hidden behind an unchanged mtime.
    """

    _SETTLE_NS = 50_000_000

    def __init__(self, folder: Path, valid: re.Pattern[str]) -> None:
        self._folder = folder
        self._valid = valid
        self._lock = threading.Lock()
        self._cached: tuple[int, list[str]] | None = None

    def ids(self) -> list[str]:
        changed = os.stat(self._folder).st_mtime_ns
        with self._lock:
            cached = self._cached
        if cached is not None and cached[0] == changed:
            return cached[1]
        started = time.time_ns()
        with os.scandir(self._folder) as entries:
            names = (entry.name[:-5] for entry in entries if entry.name.endswith(".json"))
            found = sorted(name for name in names if self._valid.match(name))
        if started - changed > self._SETTLE_NS:
            with self._lock:
                self._cached = (changed, found)
        return found
