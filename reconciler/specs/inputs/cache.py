"""Input digests cached by file identity next to the state, so an unchanged input is not re-read.

A cache that cannot be read or written is only a slower next run, never an error.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import asdict
from pathlib import Path

from reconciler.common import fileops
from reconciler.common.errors import WriteError
from reconciler.common.limits import InputLimits
from reconciler.specs.inputs.digest import InputDigest

CACHE_NAME = "input-cache.json"
CACHE_FORMAT = 3  # 2: digests carry token estimates; 3: keys carry the inode and ctime too


def cache_key(path: Path, endpoint: str, limits: InputLimits) -> str:
    """The file's identity: an edit that keeps size and mtime (a restored timestamp) still
    moves the inode change time, which no user can set back."""
    stat = path.stat()
    identity = [stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns]
    # The inputs limit is in the key too: a digest cached before embedding inputs were counted
    # never stands in for one that counts them.
    shape = [limits.max_requests, limits.max_bytes, limits.max_inputs]
    return json.dumps([str(path), *identity, endpoint, *shape])


def drop_cache(folder: Path) -> None:
    """`--refresh-inputs`: forget every cached digest, so each input is read again."""
    with contextlib.suppress(FileNotFoundError):
        (folder / CACHE_NAME).unlink()


def read_cache(path: Path) -> dict[str, InputDigest]:
    """The cached digests; a missing or damaged cache is an empty one, rewritten later."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
        if document.get("format_version") != CACHE_FORMAT:
            return {}
        return {key: InputDigest(**entry) for key, entry in document["inputs"].items()}
    except (OSError, ValueError, TypeError, AttributeError, KeyError):
        return {}


def write_cache(path: Path, digests: dict[str, InputDigest]) -> None:
    """Atomically (temp file + rename); a cache that cannot be written is only a slower next run."""
    document = {"format_version": CACHE_FORMAT, "inputs": {k: asdict(d) for k, d in digests.items()}}
    with contextlib.suppress(OSError, WriteError):
        fileops.write_bytes(path, json.dumps(document, indent=1, sort_keys=True).encode())
