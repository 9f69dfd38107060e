"""The reading half of the Batch and Files API: list, retrieve, download.  Changes nothing.

Lists are cursor-paged (`GET /batches`, `GET /files`) and read one page at a time, bounded
(`pages`).  The first page of the batches can be sent ahead (`BatchReader.start_listing`, on a
thread of its own) and is then read by the next list instead of asking again.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from concurrent.futures import Future
from typing import Any, BinaryIO

from reconciler.api.batch import Batch
from reconciler.api.transport import MAX_PAGES, Transport, parse_batch, segment
from reconciler.common.errors import ApiConnectionError
from reconciler.common.ownership import KEY_OWNER


def pages(
    transport: Transport,
    path: str,
    params: dict[str, str | int],
    max_pages: int = MAX_PAGES,
    first: Future[Any] | None = None,
) -> Iterator[Any]:
    """The items of a cursor-paged list.  A next page that does not move on (the server
    ignores `after`, or its cursors go round in circles) is an error, never a quiet end:
    a list cut short could hide a batch of ours, which would then be created twice.
    `first`: the first page, already asked for with the same `params`."""
    after: str | None = None
    cursors: set[str] = set()
    shown = transport.describe(f"GET {path}")
    for _ in range(max_pages):
        if first is not None:
            page, first = first.result(), None
        else:
            page = transport.call("GET", path, params=params | ({"after": after} if after else {}))
        data = page.get("data")
        if not isinstance(data, list):
            raise ApiConnectionError(f"{shown}: response has no `data` list")
        yield from data
        if not page.get("has_more") or not data:
            return
        last = data[-1].get("id") if isinstance(data[-1], dict) else None
        if not isinstance(last, str) or last in cursors:
            raise ApiConnectionError(
                f"{shown}: has_more is true but the next page repeats an earlier one "
                "(does the server ignore `after`?)"
            )
        cursors.add(last)
        after = last
    raise ApiConnectionError(f"{shown}: the list did not end after {max_pages} pages")


log = logging.getLogger("reconciler")
PAGE_SIZE = 100
FILE_PAGE_SIZE = 10_000  # the Files API allows up to 10,000 a page


class BatchReader:
    def __init__(self, transport: Transport) -> None:
        self.transport = transport
        self._first_page: Future[Any] | None = None  # sent by start_listing, read by the next list

    def start_listing(self) -> None:
        """Asks for the first page of the batches now, on a thread of its own: `apply` sends it
        as soon as it holds the owner's lock, and builds the specs' jobs and reads the state
        while the answer comes.  The next list reads that page instead of asking again
        (once: a later list asks afresh).  Safe to read ahead because the caller holds the
        owner's writer lock, so no batch of ours can be made between this page and the next;
        a batch of another owner made meanwhile only sits above it, and the next page follows
        on from this one's last id whatever was added."""
        future: Future[Any] = Future()
        params: dict[str, str | int] = {"limit": PAGE_SIZE}

        def run() -> None:
            try:
                future.set_result(self.transport.call("GET", "/batches", params=params))
            except BaseException as error:  # raised where the page is read, as if asked there
                future.set_exception(error)

        # A daemon thread: a command that fails before it reads the page does not wait for it.
        threading.Thread(target=run, name="first-page", daemon=True).start()
        self._first_page = future

    def retrieve_batch(self, batch_id: str) -> Batch:
        return parse_batch(self.transport.call("GET", f"/batches/{segment(batch_id)}"))

    def iter_batches(self, page_size: int = PAGE_SIZE, max_pages: int = MAX_PAGES) -> Iterator[Batch]:
        """Every batch, newest first, one page at a time; bounded against lists that never end."""
        for item in self._items(page_size, max_pages):
            yield parse_batch(item)

    def iter_listed(
        self, owner_tag: str, page_size: int = PAGE_SIZE, max_pages: int = MAX_PAGES
    ) -> Iterator[tuple[str, Batch | None]]:
        """Every batch's id, newest first, with the batch parsed only when it carries `owner_tag`:
        a plan needs no more of anyone else's than that it is there, and parsing every foreign
        batch of a shared account was most of the cost of reading it.

        A malformed batch of ours is an error (skipping it could make us create it again); one
        that is not ours, without even an id, is skipped with a warning (one odd batch of
        another tool must not stop every plan)."""
        for item in self._items(page_size, max_pages):
            if isinstance(item, dict) and _carries(item, owner_tag):
                batch = parse_batch(item)
                yield batch.id, batch
            elif isinstance(item, dict) and isinstance(item.get("id"), str):
                yield item["id"], None
            else:
                shown = self.transport.describe("GET /batches")
                log.warning("%s: skipped, not ours: malformed batch object from the server", shown)

    def _items(self, page_size: int, max_pages: int) -> Iterator[Any]:
        first, self._first_page = self._first_page, None
        if page_size != PAGE_SIZE:
            first = None  # asked for with another page size: not this list's first page
        return pages(self.transport, "/batches", {"limit": page_size}, max_pages, first)

    def download_file(self, file_id: str, out: BinaryIO) -> int:
        """Streams a file's content into `out` (a retry starts it over); returns the byte count."""
        return self.transport.download(f"/files/{segment(file_id)}/content", out)

    def iter_files(self, purpose: str = "batch", max_pages: int = MAX_PAGES) -> Iterator[dict[str, Any]]:
        """Every file of `purpose` with an id, as the server describes it."""
        params: dict[str, str | int] = {"purpose": purpose, "limit": FILE_PAGE_SIZE}
        for item in pages(self.transport, "/files", params, max_pages):
            if isinstance(item, dict) and isinstance(item.get("id"), str):
                yield item


def _carries(item: dict[str, Any], owner_tag: str) -> bool:
    metadata = item.get("metadata")
    return isinstance(metadata, dict) and metadata.get(KEY_OWNER) == owner_tag
