"""Writing a file so that readers see the old content or the new, never half of it.

Every file the reconciler writes (state, caches, results, downloads, retry inputs, saved
plans) goes through `replacing`: a temp file beside the target, named after the writer's
pid so a writer killed mid-write can be told from a live one, renamed over the target only
when the block succeeds, and removed when it fails.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

from reconciler.common.errors import WriteError


def temp_name(path: Path) -> Path:
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


@contextlib.contextmanager
def replacing(
    path: Path, *, durable: bool = False, before_replace: Callable[[], None] | None = None
) -> Iterator[BinaryIO]:
    """Yields a binary stream; on success it replaces `path`.  `durable` fsyncs the data and
    the folder, for files whose loss would lose work (the state, results).  A write that
    fails (disk full, read-only folder) is a WriteError naming `path`, the old content intact."""
    temp = temp_name(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with temp.open("wb") as out:
            yield out
            if durable:
                out.flush()
                os.fsync(out.fileno())
        if before_replace is not None:
            before_replace()
        os.replace(temp, path)
    except BaseException as error:
        with contextlib.suppress(OSError):
            temp.unlink()
        if isinstance(error, OSError) and _writing(error, path):
            raise WriteError.of(path, error) from None
        raise
    if durable:
        fsync_dir(path.parent)


def _writing(error: OSError, path: Path) -> bool:
    """The error came from writing here (the folder, the temp file, the backup beside it), not
    from reading some other file inside the block."""
    if error.filename is None:
        return True
    failed = Path(os.fsdecode(error.filename))
    return path.is_relative_to(failed) or failed.parent == path.parent


def write_bytes(path: Path, data: bytes, *, durable: bool = False) -> None:
    with replacing(path, durable=durable) as out:
        out.write(data)


def fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
