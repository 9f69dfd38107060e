"""A decoded state document to the model: one parser for every backend, older formats upgraded.

The file's JSON and the database's jsonb hold the same document; both are read here, so an
older format is upgraded and a newer or damaged one refused in the same words, wherever the
state is kept.  Older formats are read and upgraded to the current one, never misread:
version 1 had no runs, so every batch and intent it records belongs to the one run a job had,
`default`, which is also how a batch without a run in its metadata is read.  Versions 2 to 5
lack only what later versions added beside them (the commits jobs were applied from; which run
wrote a results file over; what a run reused; the queue book of version 6): they read as they
are.  An intent written before intents had a `state` (every version before 4, and 3 as written
by a development build) gets the state its fields imply (`state/model.intent_state`).
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from reconciler.common.errors import StateError
from reconciler.common.ownership import DEFAULT_RUN
from reconciler.state.model import FORMAT_VERSION, State, intent_state

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


def upgraded(data: dict[str, Any]) -> dict[str, Any]:
    """The document as the current format says it; raises KeyError/TypeError on a wrong shape
    (the caller reports it as damage)."""
    if data.get("format_version") == 1:
        data = _from_v1(data)
    if data.get("format_version") in (2, 3, 4, 5):
        data = {**data, "format_version": FORMAT_VERSION}
    return _with_intent_states(data)


def _with_intent_states(data: dict[str, Any]) -> dict[str, Any]:
    jobs = data.get("jobs")
    if not isinstance(jobs, dict) or not any(_stateless(job) for job in jobs.values()):
        return data  # today's document (or a shape validation names): nothing to copy
    stated = {
        name: {**job, "pending": [_stated(p) for p in job["pending"]]} if _stateless(job) else job
        for name, job in jobs.items()
    }
    return {**data, "jobs": stated}


def _stateless(job: Any) -> bool:
    pending = job.get("pending") if isinstance(job, dict) else None
    return isinstance(pending, list) and any(isinstance(p, dict) and "state" not in p for p in pending)


def _stated(intent: Any) -> Any:
    if not isinstance(intent, dict) or "state" in intent:
        return intent
    return {**intent, "state": intent_state(intent)}


def _from_v1(data: dict[str, Any]) -> dict[str, Any]:
    jobs = data.get("jobs")
    upgraded_jobs = (
        {name: _job_from_v1(job) for name, job in jobs.items()} if isinstance(jobs, dict) else jobs
    )
    return {**data, "format_version": FORMAT_VERSION, "jobs": upgraded_jobs}


def _job_from_v1(job: Any) -> Any:
    if not isinstance(job, dict):
        return job  # validation names the damage
    batches = [_with_run(b) for b in job.get("batches") or []]
    pending = [_with_run(p) for p in job.get("pending") or []]
    run = DEFAULT_RUN if batches or pending else None
    return {**job, "batches": batches, "pending": pending, "run": run}


def _with_run(item: Any) -> Any:
    return {**item, "run": DEFAULT_RUN} if isinstance(item, dict) else item
