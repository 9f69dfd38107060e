"""Files on disk: `files/<id>.data` holds the bytes, `files/<id>.json` the File object.

The metadata is written last, so a file exists for readers only once its bytes are complete;
deleting removes the metadata first for the same reason. Ids sort by creation time.

A file past its `expires_at` is gone, as at the real API: whoever reads it first deletes it
(a 404 from then on), and `sweep` deletes the rest while nobody asks: a thread
(`FileJanitor`) sweeps the files folder every second, reading it again only when something
is due.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import secrets
import threading
import time
from pathlib import Path
from typing import BinaryIO

from reconciler.sandbox.disk import FileRecord, Listing, StatCache, sortable_id, unique_ns, write_json

_FILE_ID = re.compile(r"^file-[A-Za-z0-9]{1,64}$")
_STALE_UPLOAD_SECONDS = 3600.0


class FileStore:
    def __init__(self, root: Path) -> None:
        self.folder = root / "files"
        self.spool = root / "tmp"
        self.folder.mkdir(parents=True, exist_ok=True)
        self.spool.mkdir(parents=True, exist_ok=True)
        self._cache: StatCache[FileRecord] = StatCache(FileRecord.model_validate_json)
        self._listing = Listing(self.folder, _FILE_ID)
        self._swept: list[str] | None = None  # the listing the last sweep went through
        self._next_expiry: int | None = None  # the earliest expires_at it left
        self._remove_abandoned_uploads()

    def data_path(self, file_id: str) -> Path:
        return self.folder / f"{file_id}.data"

    def spool_path(self) -> Path:
        """A fresh temporary path on the same filesystem, so adopting it is a rename."""
        return self.spool / f"upload-{secrets.token_hex(8)}"

    def add(self, temp: Path, filename: str, purpose: str, expires_after: int | None = None) -> FileRecord:
        """Takes over the finished temp file as a new uploaded file, expiring `expires_after`
        seconds after its creation (None: never)."""
        at_ns = unique_ns()
        file_id = sortable_id("file-", at_ns)
        created = at_ns / 1e9
        expires_at = None if expires_after is None else int(created) + expires_after
        return self.adopt(temp, file_id, filename, purpose, created, expires_at)

    def adopt(
        self,
        temp: Path,
        file_id: str,
        filename: str,
        purpose: str,
        created: float,
        expires_at: int | None = None,
    ) -> FileRecord:
        record = FileRecord(
            id=file_id,
            bytes=temp.stat().st_size,
            created_at=int(created),
            filename=filename,
            purpose=purpose,
            expires_at=expires_at,
        )
        os.replace(temp, self.data_path(file_id))
        write_json(self.folder / f"{file_id}.json", record.model_dump())
        return record

    def get(self, file_id: str) -> FileRecord | None:
        if not _FILE_ID.match(file_id):
            return None
        record = self._cache.read(os.path.join(self.folder, f"{file_id}.json"))
        if record is not None and expired(record, time.time()):
            self._remove(file_id)
            return None
        return record

    def sweep(self, now: float) -> None:
        """Deletes every expired file. Cheap when nothing is due: the folder is read again only
        when it changed or the earliest expiry it holds has come."""
        ids = self._listing.ids()  # the same list while the folder is unchanged
        due = self._next_expiry
        if ids is self._swept and (due is None or now < due):
            return
        upcoming: list[int] = []
        for file_id in ids:
            record = self._cache.read(os.path.join(self.folder, f"{file_id}.json"))
            if record is None or record.expires_at is None:
                continue
            if expired(record, now):
                self._remove(file_id)
            else:
                upcoming.append(record.expires_at)
        self._swept, self._next_expiry = ids, min(upcoming, default=None)

    def open(self, file_id: str) -> BinaryIO | None:
        """The content, open: it stays readable even if the file is deleted meanwhile."""
        if self.get(file_id) is None:
            return None
        try:
            return open(self.data_path(file_id), "rb")
        except FileNotFoundError:
            return None

    def delete(self, file_id: str) -> bool:
        if self.get(file_id) is None:
            return False
        self._remove(file_id)
        return True

    def _remove(self, file_id: str) -> None:
        meta = self.folder / f"{file_id}.json"
        with contextlib.suppress(FileNotFoundError):
            os.unlink(meta)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.data_path(file_id))
        self._cache.forget(str(meta))

    def page(
        self, *, after: str | None, limit: int, newest_first: bool, purpose: str | None
    ) -> tuple[list[FileRecord], bool]:
        """One page of the list and whether more follow it."""
        ids = self._listing.ids()[:: -1 if newest_first else 1]
        if after is not None:
            ids = [i for i in ids if (i < after if newest_first else i > after)]
        found: list[FileRecord] = []
        for file_id in ids:
            record = self.get(file_id)
            if record is not None and purpose in (None, record.purpose):
                if len(found) == limit:
                    return found, True
                found.append(record)
        return found, False

    def _remove_abandoned_uploads(self) -> None:
        """Uploads a crashed process left behind; old enough that no one is still writing them."""
        cutoff = time.time() - _STALE_UPLOAD_SECONDS
        with os.scandir(self.spool) as entries:
            for entry in entries:
                with contextlib.suppress(OSError):
                    if entry.stat().st_mtime < cutoff:
                        os.unlink(entry.path)


def expired(record: FileRecord, now: float) -> bool:
    return record.expires_at is not None and record.expires_at <= now


def scaled(lifetime: int, scale: float) -> int:
    """A lifetime in whole seconds under the `file_lifetime_scale` knob; at least one second."""
    return max(1, math.ceil(lifetime * scale))


SWEEP_SECONDS = 1.0


class FileJanitor:
    def __init__(self, files: FileStore) -> None:
        self._files = files
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sandbox-expiry", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5.0)

    def _run(self) -> None:
        while not self._stop.wait(SWEEP_SECONDS):
            try:
                self._files.sweep(time.time())
            except OSError:  # the data dir went away under us (a test's tmp dir): try next time
                continue
