"""The git commit a checkout is at, and how it relates to another commit.

What lets a writer behind another leave that writer's jobs alone (engine/workspace.py).  Git
is optional: every question is one `git` call with a timeout, and any failure (not a checkout,
git missing, a commit this clone lacks) answers "not known", never an error.
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

GIT_TIMEOUT_SECONDS = 5.0
COMMIT_ID = re.compile(r"^[0-9a-f]{40}(?:[0-9a-f]{24})?$")  # sha-1, or sha-256


@dataclass(frozen=True)
class Commit:
    sha: str
    committed_at: int  # the committer date, unix seconds

    @property
    def short(self) -> str:
        return self.sha[:7]


class Relation(StrEnum):
    SAME = "same"
    AHEAD = "ahead"  # the other commit is an ancestor of HEAD
    BEHIND = "behind"  # HEAD is an ancestor of the other commit
    DIVERGED = "diverged"  # neither holds the other
    UNKNOWN = "unknown"  # the other commit is not in this clone (not fetched, or shallow), or git failed


def head(repo: Path) -> Commit | None:
    """The commit checked out where `repo` is, or None: not a git checkout, or no git."""
    done = _git(repo, "show", "-s", "--format=%H %ct", "HEAD")
    if done is None or done.returncode != 0:
        return None
    sha, _, when = done.stdout.strip().partition(" ")
    if not COMMIT_ID.match(sha) or not when.isdigit():
        return None
    return Commit(sha, int(when))


def relation(repo: Path, head_sha: str, other: str) -> Relation:
    """How HEAD (`head_sha`) relates to `other` in the history this clone has."""
    if head_sha == other:
        return Relation.SAME
    if not COMMIT_ID.match(other):  # never handed to git as an option
        return Relation.UNKNOWN
    known = _git(repo, "cat-file", "-e", f"{other}^{{commit}}")
    if known is None or known.returncode != 0:
        return Relation.UNKNOWN
    for ancestor, descendant, answer in (
        (other, head_sha, Relation.AHEAD),
        (head_sha, other, Relation.BEHIND),
    ):
        found = _git(repo, "merge-base", "--is-ancestor", ancestor, descendant)
        if found is None or found.returncode not in (0, 1):
            return Relation.UNKNOWN
        if found.returncode == 0:
            return answer
    return Relation.DIVERGED


def _git(repo: Path, *args: str) -> subprocess.CompletedProcess[str] | None:
    try:
        return subprocess.run(
            ["git", "-C", str(repo), *args],
            capture_output=True,
            text=True,
            timeout=GIT_TIMEOUT_SECONDS,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired, UnicodeDecodeError):
        return None
