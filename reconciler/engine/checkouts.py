"""Writers at different commits: a checkout behind the commit that last changed a job leaves
that job alone, so CI at a new commit and a daemon one pull behind do not undo each other.

Each change a pass makes to a job records the commit it was made from (`applied_from` in the
state; `forgotten` for a job dropped with its spec).  Before another pass changes that job, its
checkout's HEAD is compared with that commit:

- the same commit, or the recorded one is an ancestor of HEAD: the job may be changed;
- HEAD is an ancestor of the recorded commit (behind): the job is left alone, and the plan
  says so, until this checkout catches up;
- neither holds the other (diverged), or the recorded commit is not in this clone (not yet
  fetched, or cut off by a shallow clone): the newer commit by committer date goes first
  (equal dates: the larger commit id), so two checkouts never take turns undoing each other;
- outside a git checkout, or without git: the job is changed as before, and its recorded
  commit is cleared (nothing says which commit the change came from).
"""

from __future__ import annotations

from collections.abc import Iterable

from reconciler.engine.workspace import Workspace
from reconciler.specs.checkout import Commit, Relation, relation
from reconciler.state.model import AppliedFrom, State


def applied_from(ws: Workspace) -> AppliedFrom | None:
    """What this workspace's changes are recorded as made from."""
    here = ws.checkout
    return AppliedFrom(commit=here.sha, committed_at=here.committed_at) if here else None


def behind(ws: Workspace, state: State, jobs: Iterable[str]) -> dict[str, str]:
    """Of `jobs`, those this checkout must leave alone, each with why: `checkout at abc1234 is
    behind def5678, which last applied nightly-eval`.  One question to git per recorded commit."""
    here = ws.checkout
    if here is None:
        return {}
    verdicts: dict[str, str | None] = {}
    reasons: dict[str, str] = {}
    for name in jobs:
        recorded = state.jobs.get(name)
        last = recorded.applied_from if recorded is not None else state.forgotten.get(name)
        if last is None or last.commit == here.sha:
            continue
        if last.commit not in verdicts:
            verdicts[last.commit] = _why_not(ws, here, last)
        why = verdicts[last.commit]
        if why is not None:
            reasons[name] = f"{why}, which last applied {name}"
    return reasons


def _why_not(ws: Workspace, here: Commit, last: AppliedFrom) -> str | None:
    found = relation(ws.paths.repo, here.sha, last.commit)
    if found is Relation.BEHIND:
        return f"checkout at {here.short} is behind {last.short}"
    if found in (Relation.SAME, Relation.AHEAD):
        return None
    if (here.committed_at, here.sha) >= (last.committed_at, last.commit):
        return None  # this commit is the newer one: it goes first
    if found is Relation.DIVERGED:
        return f"checkout at {here.short} has diverged from {last.short}, a newer commit"
    return f"checkout at {here.short} does not have {last.short}, a newer commit (fetch or pull it)"
