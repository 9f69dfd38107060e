"""The reading half of the Batch and Files API: list, retrieve, download.  Changes nothing."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, BinaryIO

from reconciler.api.batch import Batch
from reconciler.api.transport import MAX_PAGES, Transport, parse_batch, segment

PAGE_SIZE = 100
FILE_PAGE_SIZE = 10_000  # the Files API allows up to 10,000 a page


class BatchReader:
    def __init__(self, transport: Transport) -> None:
        self.transport = transport

    def retrieve_batch(self, batch_id: str) -> Batch:
        return parse_batch(self.transport.call("GET", f"/batches/{segment(batch_id)}"))

    def iter_batches(self, page_size: int = PAGE_SIZE, max_pages: int = MAX_PAGES) -> Iterator[Batch]:
        """Every batch, newest first, one page at a time; bounded against lists that never end."""
        for item in self.transport.pages("/batches", {"limit": page_size}, max_pages):
            yield parse_batch(item)

    def download_file(self, file_id: str, out: BinaryIO) -> int:
        """Streams a file's content into `out` (a retry starts it over); returns the byte count."""
        return self.transport.download(f"/files/{segment(file_id)}/content", out)

    def iter_files(self, purpose: str = "batch", max_pages: int = MAX_PAGES) -> Iterator[dict[str, Any]]:
        """Every file of `purpose` with an id, as the server describes it."""
        params: dict[str, str | int] = {"purpose": purpose, "limit": FILE_PAGE_SIZE}
        for item in self.transport.pages("/files", params, max_pages):
            if isinstance(item, dict) and isinstance(item.get("id"), str):
                yield item
