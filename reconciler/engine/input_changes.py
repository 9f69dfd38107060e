"""Which requests of a job's input changed since the state's record, for the plan to show.

Compared through the request indexes kept where inputs are read (specs/inputs/cache.py): the
old input is usually gone from the checkout, its index is not.  Without both indexes (a fresh
CI runner, an input last read before indexes existed) the plan shows only counts and digests.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path

from reconciler.plans.changes import DesiredJob
from reconciler.specs.inputs.cache import compare, read_index
from reconciler.state.model import State


def with_input_changes(
    desired: Mapping[str, DesiredJob], state: State, indexes: Path
) -> dict[str, DesiredJob]:
    found = dict(desired)
    for name, job in desired.items():
        recorded = state.jobs.get(name)
        old, new = _sha(recorded.definition if recorded else None), _sha(job.definition)
        if old is None or new is None or old == new:
            continue
        before, after = read_index(indexes, old), read_index(indexes, new)
        if before is not None and after is not None:
            found[name] = dataclasses.replace(job, input_changes=compare(before, after))
    return found


def _sha(definition: Mapping[str, object] | None) -> str | None:
    given = (definition or {}).get("input")
    sha = given.get("sha256") if isinstance(given, Mapping) else None
    return sha if isinstance(sha, str) else None
