"""A decoded state document to the model: one parser for every backend.

The file's JSON and the database's jsonb hold the same document; both are read here, so an
older format is upgraded (upgrade.py) and a newer or damaged one refused in the same words,
wherever the state is kept.
"""

from __future__ import annotations

from pydantic import ValidationError

from reconciler.common.errors import StateError
from reconciler.state.model import FORMAT_VERSION, State
from reconciler.state.upgrade import upgraded

REBUILD_HINT = "rebuild it from the live list with `reconciler reconcile --rebuild-state`"


def parse_state(data: object, where: str, what: str, recovery: str = REBUILD_HINT) -> State:
    """The state `data` says, in today's format. `where` names the store (a path, a URL),
    `what` the document (`state file`, `state serial 12`); a damaged one is a StateError
    ending in `recovery`."""
    version = data.get("format_version") if isinstance(data, dict) else None
    if isinstance(version, int) and version > FORMAT_VERSION:
        raise StateError(
            f"{where}: state format_version {version} is newer than this reconciler understands "
            f"({FORMAT_VERSION}); upgrade reconciler"
        )
    try:
        return State.model_validate(upgraded(data) if isinstance(data, dict) else data)
    except ValidationError as error:
        at = ".".join(str(p) for p in error.errors()[0]["loc"]) or "top level"
    except (TypeError, AttributeError, RecursionError):  # a shape the upgrade cannot walk
        at = "top level"
    raise StateError(f"{where}: {what} is damaged (at {at}); kept as is; {recovery}")
