"""Each input's requests by custom_id, fingerprinted, so a plan can say which requests changed.

Written beside the input cache (`<state dir>/inputs/<sha256>.idx`) whenever an input is read
in full, one line per request: the custom_id as JSON, a space, a 64-bit fingerprint of the line.
An input no longer on disk is compared through its index; only the latest few are kept.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

from reconciler.common import fileops
from reconciler.common.errors import WriteError

SUFFIX = ".idx"
KEPT = 50  # indexes kept per repo, newest first
MAX_SHOWN_IDS = 3


def write_index(folder: Path, sha256: str, fingerprints: dict[str, bytes]) -> None:
    """Best effort: an index that cannot be written only makes a later diff say less."""
    text = "".join(f"{json.dumps(custom_id)} {print_.hex()}\n" for custom_id, print_ in fingerprints.items())
    with contextlib.suppress(OSError, WriteError):
        fileops.write_bytes(folder / f"{sha256}{SUFFIX}", text.encode())
        _prune(folder)


def read_index(folder: Path, sha256: str) -> dict[str, str] | None:
    try:
        lines = (folder / f"{sha256}{SUFFIX}").read_text(encoding="utf-8").splitlines()
        return {json.loads(key): value for key, _, value in (line.rpartition(" ") for line in lines)}
    except (OSError, ValueError):
        return None


def compare(old: dict[str, str], new: dict[str, str]) -> dict[str, object]:
    """Requests added, removed and changed by custom_id, with a few ids of each."""
    added = [k for k in new if k not in old]
    removed = [k for k in old if k not in new]
    changed = [k for k in new if k in old and old[k] != new[k]]
    summary: dict[str, object] = {"added": len(added), "removed": len(removed), "changed": len(changed)}
    summary["examples"] = {
        kind: ids[:MAX_SHOWN_IDS]
        for kind, ids in (("added", added), ("removed", removed), ("changed", changed))
        if ids
    }
    return summary


def _prune(folder: Path) -> None:
    indexes = sorted(folder.glob(f"*{SUFFIX}"), key=lambda p: p.stat().st_mtime_ns, reverse=True)
    for stale in indexes[KEPT:]:
        with contextlib.suppress(OSError):
            stale.unlink()
