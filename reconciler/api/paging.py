"""Cursor-paged lists (`GET /batches`, `GET /files`), one page at a time, bounded."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from reconciler.api.transport import MAX_PAGES, Transport
from reconciler.common.errors import ApiConnectionError


def pages(
    transport: Transport, path: str, params: dict[str, str | int], max_pages: int = MAX_PAGES
) -> Iterator[Any]:
    """The items of a cursor-paged list.  A next page that does not move on (the server
    ignores `after`, or its cursors go round in circles) is an error, never a quiet end:
    a list cut short could hide a batch of ours, which would then be created twice."""
    after: str | None = None
    cursors: set[str] = set()
    shown = transport.describe(f"GET {path}")
    for _ in range(max_pages):
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
