"""Batches on disk, brought up to date lazily whenever one is read.

`batches/<id>.json` is the record, replaced atomically. Anything with side effects (validating
the input, writing result files, recording a cancel) happens under `locks/<id>.lock`, after
re-reading the record, so when two processes advance the same batch the second finds the work
done. The input is hard-linked to `inputs/<id>.jsonl` at validation, so deleting the input
file later does not take the batch's requests with it.

Queue limits (the `limits` knob): like OpenAI's, per model, over the prompt tokens (and
requests) of every unfinished batch.  A create that would pass one is accepted all the same,
and the batch fails when its validation ends, with the real error code and message (the limit
is in it).  Decided at create, under `locks/queue.lock`, from the records on disk.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
from bisect import bisect_left
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from reconciler.sandbox import responder
from reconciler.sandbox.config import START_FAILURES, TIMELINE_KNOBS, QueueLimit, SandboxConfig
from reconciler.sandbox.disk import (
    BatchErrorItem,
    BatchRecord,
    CancelRequest,
    Listing,
    QueueEntry,
    StatCache,
    Timeline,
    Validation,
    locked,
    sortable_id,
    unique_ns,
    write_json,
)
from reconciler.sandbox.file_store import FileStore
from reconciler.sandbox.lifecycle import CANCELLABLE, WITH_RESULTS, Moment, moment, needs_validation
from reconciler.sandbox.outputs import write_results
from reconciler.sandbox.validation import validate_input
from reconciler.sandbox.wire import ApiProblem

_BATCH_ID = re.compile(r"^batch_[A-Za-z0-9]{1,64}$")
ORGANIZATION = "org-sandbox"
FINISHED = frozenset({"completed", "failed", "expired", "cancelled", *START_FAILURES})


class BatchStore:
    def __init__(self, root: Path, files: FileStore) -> None:
        self.files = files
        self.folder, self.locks, self.inputs = root / "batches", root / "locks", root / "inputs"
        for folder in (self.folder, self.locks, self.inputs):
            folder.mkdir(parents=True, exist_ok=True)
        self._cache: StatCache[BatchRecord] = StatCache(BatchRecord.model_validate_json)
        self._listing = Listing(self.folder, _BATCH_ID)

    def create(self, config: SandboxConfig, **fields: Any) -> BatchRecord:
        at_ns = unique_ns()
        timeline = Timeline(**{knob: getattr(config, knob) for knob in TIMELINE_KNOBS})
        record = BatchRecord(
            id=sortable_id("batch_", at_ns), created=at_ns / 1e9, timeline=timeline, **fields
        )
        if not config.limits:
            self._save(record)
            return record
        with locked(self.locks / "queue.lock"):  # two creates never both take the last room
            record = self._queued(record, config)
            self._save(record)
        return record

    def _queued(self, record: BatchRecord, config: SandboxConfig) -> BatchRecord:
        """The record with what it holds of its model's queue, refused when that passes a limit."""
        entry = self._queue_entry(record)
        limit = config.queue_limit(entry.model) if entry else None
        if entry is None or limit is None:
            return record.model_copy(update={"queue": entry})
        tokens, requests = self._enqueued(entry.model, record.created)
        refusal = _refusal(entry, limit, tokens, requests)
        return record.model_copy(update={"queue": entry, "refused": refusal})

    def _queue_entry(self, record: BatchRecord) -> QueueEntry | None:
        """The input's model, prompt tokens (as the answers will count them) and requests;
        None for an input validation will fail anyway."""
        model, tokens, requests = None, 0, 0
        try:
            with open(self.files.data_path(record.input_file_id), "rb") as lines:
                for raw in lines:
                    line = json.loads(raw) if raw.strip() else None
                    body = line.get("body") if isinstance(line, dict) else None
                    if isinstance(body, dict) and isinstance(body.get("model"), str):
                        model = model or body["model"]
                        tokens += responder.answer(record.endpoint, body).usage.input_tokens
                        requests += 1
        except (OSError, ValueError, RecursionError, KeyError, TypeError, AttributeError):
            return None
        return QueueEntry(model=model, tokens=tokens, requests=requests) if model else None

    def _enqueued(self, model: str, now: float) -> tuple[int, int]:
        """Prompt tokens and requests of `model`'s unfinished, unrefused batches at `now`."""
        tokens = requests = 0
        for batch_id in self._listing.ids():
            other = self._cache.read(self._path(batch_id))
            if other is None or other.queue is None or other.refused is not None:
                continue
            if other.queue.model == model and moment(other, now).status not in FINISHED:
                tokens, requests = tokens + other.queue.tokens, requests + other.queue.requests
        return tokens, requests

    def ids(self) -> list[str]:
        """Every batch's id, oldest first."""
        return self._listing.ids()

    def get(self, batch_id: str, now: float) -> BatchRecord | None:
        record = self._cache.read(self._path(batch_id)) if _BATCH_ID.match(batch_id) else None
        if record is None or not _needs_work(record, now):
            return record
        with self._locked(batch_id):
            return self._bring_up_to_date(self._read_fresh(batch_id), now)

    def page(self, *, after: str | None, limit: int, now: float) -> tuple[list[BatchRecord], bool]:
        """Newest first: ids sort by creation time, so the sorted directory listing orders them."""
        ids = self._listing.ids()
        end = bisect_left(ids, after) if after is not None else len(ids)
        chosen = ids[max(0, end - limit) : end][::-1]
        found = [self.get(batch_id, now) for batch_id in chosen]
        return [record for record in found if record is not None], end > limit

    def cancel(self, batch_id: str, now: float, delay: float) -> BatchRecord | None:
        if self.get(batch_id, now) is None:
            return None
        with self._locked(batch_id):
            record = self._bring_up_to_date(self._read_fresh(batch_id), now)
            status = moment(record, now).status
            if status in ("cancelling", "cancelled"):
                return record
            if status not in CANCELLABLE:
                raise ApiProblem(409, f"Cannot cancel a batch with status '{status}'.")
            record = record.model_copy(update={"cancel": CancelRequest(at=now, seconds=delay)})
            return self._bring_up_to_date(record, now, changed=True)

    def _bring_up_to_date(self, record: BatchRecord, now: float, changed: bool = False) -> BatchRecord:
        if needs_validation(record, now):
            record = record.model_copy(update={"validation": self._validate(record)})
            changed = True
        ended = moment(record, now)
        finished = _needs_results(record, ended)
        if finished:
            outcome = write_results(record, ended, self._input_copy(record.id), self.files)
            record = record.model_copy(update={"outcome": outcome})
        if changed or finished:
            self._save(record)
        if finished:
            self._input_copy(record.id).unlink(missing_ok=True)
        return record

    def _validate(self, record: BatchRecord) -> Validation:
        found = self.files.get(record.input_file_id)
        if found is not None and found.purpose != "batch":
            message = f"Input file '{found.id}' must be uploaded with purpose 'batch'."
            problem = BatchErrorItem(code="invalid_request", message=message, param="input_file_id")
            return Validation(errors=(problem,))
        copy = self._input_copy(record.id)
        kept = found is not None and self._keep_input(record.input_file_id, copy)
        validation = validate_input(copy if kept else None, record.endpoint, record.input_file_id)
        if validation.errors or record.refused is not None:  # no results will ever read it
            copy.unlink(missing_ok=True)
        return validation

    def _keep_input(self, file_id: str, copy: Path) -> bool:
        copy.unlink(missing_ok=True)  # a crashed earlier attempt may have left one
        try:
            os.link(self.files.data_path(file_id), copy)
        except FileNotFoundError:
            return False
        except OSError:  # a filesystem without hard links: copy instead
            shutil.copyfile(self.files.data_path(file_id), copy)
        return True

    def _input_copy(self, batch_id: str) -> Path:
        return self.inputs / f"{batch_id}.jsonl"

    def _path(self, batch_id: str) -> str:
        return os.path.join(self.folder, f"{batch_id}.json")

    def _read_fresh(self, batch_id: str) -> BatchRecord:
        with open(self._path(batch_id), "rb") as handle:
            return BatchRecord.model_validate_json(handle.read())

    def _save(self, record: BatchRecord) -> None:
        write_json(Path(self._path(record.id)), record.model_dump())

    @contextlib.contextmanager
    def _locked(self, batch_id: str) -> Iterator[None]:
        with locked(self.locks / f"{batch_id}.lock"):
            yield


def _refusal(entry: QueueEntry, limit: QueueLimit, tokens: int, requests: int) -> BatchErrorItem | None:
    """OpenAI's error for a batch that passes its model's queue limit; None when it fits."""
    if limit.enqueued_tokens is not None and tokens + entry.tokens > limit.enqueued_tokens:
        kind, most = "token", limit.enqueued_tokens
    elif limit.enqueued_requests is not None and requests + entry.requests > limit.enqueued_requests:
        kind, most = "request", limit.enqueued_requests
    else:
        return None
    message = (
        f"Enqueued {kind} limit reached for {entry.model} in organization {ORGANIZATION}. "
        f"Limit: {most:,} enqueued {kind}s. "
        "Please try again once some in_progress batches have been completed."
    )
    return BatchErrorItem(code=f"{kind}_limit_exceeded", message=message)


def _needs_results(record: BatchRecord, now_at: Moment) -> bool:
    validation = record.validation
    valid = validation is not None and not validation.errors
    return valid and record.outcome is None and now_at.status in WITH_RESULTS


def _needs_work(record: BatchRecord, now: float) -> bool:
    return needs_validation(record, now) or _needs_results(record, moment(record, now))
