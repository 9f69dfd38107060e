"""The state document for every backend: parsed (older formats upgraded), encoded (one line per
job), and a write's changes (the jobs it changed, by identity) encoded and applied again.

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

import json
from collections.abc import Collection, Iterable, Mapping
from typing import Any

import orjson
from pydantic import BaseModel, ValidationError

from reconciler.common.errors import StateError
from reconciler.common.ownership import DEFAULT_RUN
from reconciler.state.model import FORMAT_VERSION, JobState, QueueBook, State, intent_state

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
        at = ".".join(_shown(p) for p in error.errors()[0]["loc"]) or "top level"
    except (TypeError, AttributeError, RecursionError):  # a shape the upgrade cannot walk
        at = "top level"
    raise StateError(f"{where}: {what} is damaged (at {at}); kept as is; {recovery}")


def _shown(key: object) -> str:
    """A key of the damaged document as one printable piece of the error's single line."""
    text = str(key)
    return text if text.isprintable() else json.dumps(text)


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
    return {**data, "jobs": {name: job_record(job) for name, job in jobs.items()}}


def job_record(job: Any) -> Any:
    """One job's record as today's format says it: a journal entry or a database row written
    before intents had a state gets the state its fields imply."""
    return {**job, "pending": [_stated(p) for p in job["pending"]]} if _stateless(job) else job


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


# --- the document's bytes, and a write's changes: what both backends store of a job
TOP_FIELDS = ("owner", "notices", "forgotten")  # beside `jobs` and `queue`, what a write may change
QUEUE_ENTRIES = ("admitted", "order", "places")  # the queue book's per-job (or per-batch) entries


def encoded(value: Any) -> bytes:
    """Compact JSON with sorted keys; a server's integer beyond 64 bits the slow way."""
    try:
        return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
    except orjson.JSONEncodeError:
        return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


class JobLines:
    """Each job's record encoded once, kept with the object it was encoded from: a pass hands
    back the very JobState objects it did not change, so identity says which to encode again."""

    def __init__(self) -> None:
        # job, its file line, where the record starts in it: the record is not kept apart (the
        # daemon holds every job's line, 230 MB at 100,000 jobs; twice that with the records).
        self._kept: dict[str, tuple[JobState, bytes, int]] = {}

    def of(self, name: str, job: JobState) -> bytes:
        _, line, start = self._entry(name, job)
        return line[start:]

    def line(self, name: str, job: JobState) -> bytes:
        """`    "name": {…}`: the job as the state file's line holds it."""
        return self._entry(name, job)[1]

    def _entry(self, name: str, job: JobState) -> tuple[JobState, bytes, int]:
        kept = self._kept.get(name)
        if kept is not None and kept[0] is job:
            return kept
        head = b"    %s: " % encoded(name)
        kept = self._kept[name] = (job, head + encoded(job.model_dump(mode="json")), len(head))
        return kept

    def keep_only(self, names: Collection[str]) -> None:
        if len(self._kept) == len(names):  # every one of `names` has its entry: no other is left
            return
        for gone in [name for name in self._kept if name not in names]:
            del self._kept[gone]


def encode_state(state: State, lines: JobLines | None = None) -> bytes:
    """The document as the state file holds it: top-level keys sorted, one job per line."""
    lines = lines or JobLines()
    jobs = b",\n".join([lines.line(name, job) for name, job in sorted(state.jobs.items())])
    lines.keep_only(state.jobs)
    top: dict[str, Any] = state.model_dump(mode="json", exclude={"jobs"})
    top["jobs"] = b"{\n" + jobs + b"\n  }" if jobs else b"{}"
    body = [
        b"  %s: %s" % (encoded(key), value if isinstance(value, bytes) else encoded(value))
        for key, value in sorted(top.items())
    ]
    return b"{\n" + b",\n".join(body) + b"\n}\n"


def changed_jobs(before: State, after: State) -> dict[str, JobState | None]:
    """The jobs `after` does not hold as the very objects `before` does (None: dropped)."""
    changed: dict[str, JobState | None] = {
        name: job for name, job in after.jobs.items() if before.jobs.get(name) is not job
    }
    changed |= dict.fromkeys((name for name in before.jobs if name not in after.jobs), None)
    return changed


def encode_changes(
    before: State,
    after: State,
    lines: JobLines | None = None,
    changed: Mapping[str, JobState | None] | None = None,
) -> bytes:
    """`{"jobs": {name: record or null}, "set": {field: value}}`: what a write changed
    (`changed`: `changed_jobs(before, after)`, when the caller has it already)."""
    lines = lines or JobLines()
    jobs = b",".join(
        b"%s:%s" % (encoded(name), b"null" if job is None else lines.of(name, job))
        for name, job in (changed_jobs(before, after) if changed is None else changed).items()
    )
    fields = {name for name in TOP_FIELDS if getattr(after, name) != getattr(before, name)}
    shown = after.model_dump(mode="json", include=fields) if fields else {}
    queue = _queue_changes(before.queue, after.queue)
    tail = b',"queue":%s' % encoded(queue) if queue else b""
    return b'{"jobs":{%s},"set":%s%s}' % (jobs, encoded(shown), tail)


def _queue_changes(before: QueueBook, after: QueueBook) -> dict[str, Any]:
    """The queue book's entries a write changed (None: dropped), and its learnt limits whole when
    they changed (a few per model).  Not the whole book: its `order` holds every job, and a write
    carrying it would cost what exists, not what changed."""
    if before == after:
        return {}
    changed: dict[str, Any] = {}
    for section in QUEUE_ENTRIES:
        was, now = getattr(before, section), getattr(after, section)
        if was == now:
            continue
        entries = {key: _as_json(value) for key, value in now.items() if was.get(key) != value}
        changed[section] = entries | dict.fromkeys((key for key in was if key not in now), None)
    if before.learnt != after.learnt:
        changed["learnt"] = after.model_dump(mode="json", include={"learnt"})["learnt"]
    return changed


def _as_json(value: Any) -> Any:
    return value.model_dump(mode="json") if isinstance(value, BaseModel) else value


def _with_queue_changes(book: QueueBook, changed: Any) -> QueueBook:
    """`book` with a write's `_queue_changes` applied."""
    whole: dict[str, Any] = {section: dict(getattr(book, section)) for section in QUEUE_ENTRIES}
    whole["learnt"] = changed.get("learnt", book.learnt)
    for section in QUEUE_ENTRIES:
        for key, value in (changed.get(section) or {}).items():
            if value is None:
                whole[section].pop(key, None)
            else:
                whole[section][key] = value
    return QueueBook.model_validate(whole)


def with_changes(state: State, changes: Iterable[Any], serial: int, where: str) -> State:
    """`state` with decoded `encode_changes` documents applied in order, at `serial`."""
    jobs = dict(state.jobs)
    fields: dict[str, Any] = {}
    queue = state.queue
    try:
        for change in changes:
            for name, record in (change.get("jobs") or {}).items():
                if record is None:
                    jobs.pop(name, None)
                else:
                    jobs[name] = JobState.model_validate(job_record(record))
            fields |= {k: v for k, v in (change.get("set") or {}).items() if k in TOP_FIELDS}
            if change.get("queue"):
                queue = _with_queue_changes(queue, change["queue"])
        top = State.model_validate({"lineage": state.lineage, **fields}) if fields else state
    except (ValidationError, AttributeError, TypeError):
        raise StateError(
            f"{where}: a write recorded in the state is damaged; kept as is; {REBUILD_HINT}"
        ) from None
    update = {name: getattr(top, name) for name in fields}
    return state.model_copy(
        update={**update, "queue": queue, "serial": serial, "jobs": dict(sorted(jobs.items()))}
    )
