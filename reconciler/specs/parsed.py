"""Spec files parsed once per file identity, so a daemon pass re-reads only what changed.

A file's identity is its (device, inode, size, mtime, ctime), as the input cache keys it:
every write moves the ctime, which no one can set back. A file changed in the last
`RECENT_SECONDS` is parsed again each time: two writes within one tick of the filesystem's
clock could leave the same identity behind. Parsed documents are frozen models and YAML
nodes nobody changes, so handing the same ones out again is safe.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from reconciler.common.errors import Problem, ReadProblem
from reconciler.specs.documents import Document, read_documents

RECENT_SECONDS = 2.0
REPOS_KEPT = 4  # specs folders remembered at once (a daemon has one; tests have many)

Identity = tuple[int, int, int, int, int]
Entry = tuple[Identity, str, list[Document], list[Problem]]

_by_folder: dict[Path, dict[Path, Entry]] = {}


class ParsedFiles:
    """The parsed files of one specs folder during one scan; `close` forgets files not seen,
    and all of them unless `remember`."""

    def __init__(self, specs: Path, remember: bool = True) -> None:
        self._specs, self._remember = specs, remember
        self._before = _by_folder.pop(specs, {}) if remember else _by_folder.get(specs, {})
        self._now: dict[Path, Entry] = {}

    def read(self, path: Path, shown: str) -> tuple[list[Document], list[Problem]]:
        if not self._remember and not self._before:
            return read_documents(path, shown)
        try:
            identity = _identity(os.stat(path))
        except OSError:
            return read_documents(path, shown)  # which words the problem
        known = self._before.get(path)
        if known is not None and known[0] == identity and known[1] == shown:
            self._now[path] = known
            return list(known[2]), list(known[3])
        documents, problems = read_documents(path, shown)
        unread = any(isinstance(problem, ReadProblem) for problem in problems)  # try again next time
        if time.time_ns() - identity[4] > RECENT_SECONDS * 1e9 and not unread:
            self._now[path] = (identity, shown, documents, problems)
        return list(documents), list(problems)

    def close(self) -> None:
        if not self._remember:
            return
        _by_folder[self._specs] = self._now
        while len(_by_folder) > REPOS_KEPT:
            del _by_folder[next(iter(_by_folder))]


def _identity(stat: os.stat_result) -> Identity:
    return (stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns)
