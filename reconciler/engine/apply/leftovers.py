"""Uploads a killed or failed pass left behind: found by name, then reused or deleted.

A create's intent reaches the state before its upload (planned), but the upload's file id
only once the pass's uploads are done (uploaded, with the send time, before the POSTs,
intents.py); a process killed in between leaves a file no batch reads and no state names, and
an intent dropped because its spec changed leaves its upload too.  Upload names are
deterministic and carry the owner (`upload_name`),
`<job>-<generation>[-n<run hash>][-p<part>][-r<retry>]-<owner>.jsonl` (no run hash for the
default run), so a pass that follows such trouble lists the files once, reuses the upload a create still
needs, and deletes ours that no batch will read: those of a unit that already has its batch,
and those of a generation or job no longer desired.  Uploads of a current unit that has no
batch yet are left alone, for the create that will want them.  Passes with no trouble behind
them (nothing pending, not a fresh state) list nothing.

An upload is retried like a read (api/writer.py), and a try that failed after the server may
have stored the file (a 500 answered after storing, a lost answer) leaves a copy no batch will
read.  Such a retry makes its provider *suspect* for this pass: after recording, the pass lists
that provider's files again and sweeps it the same way, so the copy goes once its unit has its
batch (this pass, or the one that creates it).

The listing a pass needs is known as soon as its state is read: `Leftovers.listing` sends it
then, in the background, beside the pass's list of batches instead of after it (the first
upload waits for it).  A listing that failed there is sent again when it is needed.
"""

from __future__ import annotations

import functools
import hashlib
import re
import threading
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass

from reconciler.api.client import ProviderApi
from reconciler.api.uploads import UploadSource
from reconciler.common.errors import ApiError, ApiStatusError
from reconciler.common.ownership import DEFAULT_RUN
from reconciler.engine.apply.effects import writer_of
from reconciler.engine.apply.failures import Failure
from reconciler.plans.changes import DesiredJob, LiveBatch
from reconciler.state.model import IntentKey, State

OWNER_CHARS = 8
_NAME = re.compile(
    r"^(?P<job>[a-z0-9-]+)-(?P<generation>[0-9a-f]{16})(?:-n(?P<run>[0-9a-f]{8}))?"
    r"(?:-p(?P<part>\d+))?(?:-r(?P<retry>\d+))?"
    r"-(?P<owner>[0-9a-f]{8})\.jsonl$"
)

# An IntentKey as an upload's name carries it: the run as its tag (`run_tag`).
UploadKey = tuple[str, str, str, int, int]  # job, generation, run tag, part, retry
RUN_CHARS = 8


def run_tag(run: str | None) -> str:
    """A run as a piece of an upload's name: '' for the default run, else 8 hex digits."""
    if not run or run == DEFAULT_RUN:
        return ""
    return hashlib.sha256(run.encode()).hexdigest()[:RUN_CHARS]


def upload_key(key: IntentKey) -> UploadKey:
    return (key.job, key.generation, run_tag(key.run), key.part, key.retry)


def upload_name(key: IntentKey, split: bool, owner_tag: str) -> str:
    """The name the upload for `key` is made under (engine/sources.py) and found again by: a
    retry names its part and attempt, a part of a split input its part, a whole input neither;
    the owner keeps two repos with the same job and input apart."""
    tag = run_tag(key.run)
    stem = f"{key.job}-{key.generation}" + (f"-n{tag}" if tag else "")
    if key.retry > 1:
        stem += f"-p{key.part}-r{key.retry}"
    elif split:
        stem += f"-p{key.part}"
    return f"{stem}-{owner_tag[:OWNER_CHARS]}.jsonl"


@dataclass(frozen=True)
class Upload:
    id: str
    filename: str
    bytes: int | None
    unit: UploadKey


def _ours(files: Iterable[dict[str, object]], owner_tag: str) -> list[Upload]:
    found = []
    for item in files:
        match = _NAME.match(str(item.get("filename") or ""))
        if match is None or match["owner"] != owner_tag[:OWNER_CHARS]:
            continue
        unit = (
            match["job"],
            match["generation"],
            match["run"] or "",
            int(match["part"] or 0),
            int(match["retry"] or 1),
        )
        size = item.get("bytes")
        found.append(Upload(str(item["id"]), match.group(0), size if isinstance(size, int) else None, unit))
    return found


def source_size(source: UploadSource) -> int:
    end = source.end if source.end is not None else source.path.stat().st_size
    return end - source.start


class Leftovers:
    """Our uploads on each troubled provider, listed at most once per pass."""

    def __init__(self, apis: Mapping[str, ProviderApi], owner_tag: str, troubled: Collection[str]) -> None:
        self._apis = apis
        self._owner_tag = owner_tag
        self._troubled = set(troubled)
        self._suspect: set[str] = set()  # a retried upload may have left a copy there
        self._listed: dict[str, list[Upload]] = {}
        self._listing: dict[str, Future[list[Upload]]] = {}  # sent early, not yet needed
        self._taken: set[str] = set()
        self._lock = threading.Lock()

    @classmethod
    def after(cls, state: State, apis: Mapping[str, ProviderApi], owner_tag: str) -> Leftovers:
        """For a pass starting from `state`: troubled are the providers where an earlier pass
        left intents pending, or all of them when there is no record (a fresh or rebuilt state)."""
        if state.serial == 0:
            return cls(apis, owner_tag, apis.keys())
        return cls(apis, owner_tag, {job.provider for job in state.jobs.values() if job.pending})

    @classmethod
    def listing(cls, state: State, apis: Mapping[str, ProviderApi], owner_tag: str) -> Leftovers:
        """`after`, with each troubled provider's files listed from now on, in the background;
        nothing is sent when no provider is troubled (a recorded state with nothing pending)."""
        leftovers = cls.after(state, apis, owner_tag)
        for provider in sorted(leftovers._troubled):
            leftovers._listing[provider] = _in_background(functools.partial(leftovers._list, provider))
        return leftovers

    def reuse(self, provider: str, source: UploadSource) -> str | None:
        """The id of an earlier upload of these very bytes under this name, if one is left."""
        if provider not in self._troubled:
            return None
        size = source_size(source)
        with self._lock:
            for upload in self._uploads(provider):
                same = upload.filename == source.filename and upload.bytes == size
                if same and upload.id not in self._taken:
                    self._taken.add(upload.id)
                    return upload.id
        return None

    def suspect(self, provider: str) -> None:
        """An upload to `provider` was sent again after a try the server may have stored: sweep
        it after this pass, from a fresh list (an earlier one cannot hold that copy)."""
        with self._lock:
            self._suspect.add(provider)
            self._listed.pop(provider, None)
            self._listing.pop(provider, None)

    def sweep_all(
        self, desired: Mapping[str, DesiredJob], live: Sequence[LiveBatch], state: State
    ) -> list[Failure]:
        """Sweeps every troubled provider after a pass wrote `state`; a failure per provider."""
        generations = {name: job.generation for name, job in desired.items()}
        claimed = {p.input_file_id for job in state.jobs.values() for p in job.pending if p.input_file_id}
        failures = []
        for provider in sorted(self._troubled | self._suspect):
            try:
                self.sweep(provider, live, generations, claimed)
            except ApiError as error:
                failures.append(Failure.of(error, job=None, step="sweep", provider=provider))
        return failures

    def sweep(
        self, provider: str, live: Iterable[LiveBatch], desired: Mapping[str, str], claimed: Collection[str]
    ) -> list[str]:
        """Deletes our uploads no batch will read; `desired` maps job → current generation,
        `claimed` holds the file ids pending creates still mean to use."""
        if provider not in self._troubled | self._suspect:
            return []
        batches = [b for b in live if b.provider == provider]
        read = {b.record.input_file_id for b in batches} | set(claimed) | self._taken
        settled = {upload_key(b.unit) for b in batches}
        deleted = []
        for upload in self._uploads(provider):
            job, generation = upload.unit[:2]
            superseded = desired.get(job) != generation
            if upload.id not in read and (upload.unit in settled or superseded):
                self._delete(provider, upload.id)
                deleted.append(upload.id)
        return deleted

    def _uploads(self, provider: str) -> list[Upload]:
        if provider not in self._listed:
            early = self._listing.pop(provider, None)
            listed = _result_or_none(early) if early is not None else None
            self._listed[provider] = self._list(provider) if listed is None else listed
        return self._listed[provider]

    def _list(self, provider: str) -> list[Upload]:
        return _ours(self._apis[provider].reader.iter_files("batch"), self._owner_tag)

    def _delete(self, provider: str, file_id: str) -> None:
        try:
            writer_of(self._apis[provider]).delete_file(file_id)
        except ApiStatusError as error:
            if error.status != 404:  # already gone is what we wanted
                raise


def _in_background(work: Callable[[], list[Upload]]) -> Future[list[Upload]]:
    """`work` on a thread of its own: a pass that ends before it needs the answer does not wait."""
    future: Future[list[Upload]] = Future()

    def run() -> None:
        try:
            future.set_result(work())
        except BaseException as error:  # kept for whoever needs the answer
            future.set_exception(error)

    threading.Thread(target=run, name="leftovers", daemon=True).start()
    return future


def _result_or_none(future: Future[list[Upload]]) -> list[Upload] | None:
    try:
        return future.result()
    except ApiError:
        return None  # listed again by whoever needs it: the error becomes theirs
