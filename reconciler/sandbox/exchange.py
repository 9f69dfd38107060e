"""What an endpoint gets (a Call) and gives back (a Reply), independent of the HTTP server."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, BinaryIO

from reconciler.sandbox.batches import BatchStore
from reconciler.sandbox.config import Dice, SandboxConfig
from reconciler.sandbox.file_store import FileStore
from reconciler.sandbox.wire import ApiProblem, BodyReader, bad_request


@dataclass(frozen=True)
class Reply:
    status: int = 200
    json: Any = None
    stream: BinaryIO | None = None  # raw bytes, sent as application/octet-stream
    headers: dict[str, str] = field(default_factory=dict)

    @staticmethod
    def of(problem: ApiProblem) -> Reply:
        return Reply(problem.status, problem.body(), headers=problem.headers)


@dataclass(frozen=True)
class Call:
    files: FileStore
    batches: BatchStore
    config: SandboxConfig
    dice: Dice
    params: dict[str, str]
    query: dict[str, str]
    headers: dict[str, str]
    body: BodyReader
    now: float

    def int_query(self, name: str, default: int, lowest: int, highest: int) -> int:
        raw = self.query.get(name)
        if raw is None:
            return default
        try:
            value = int(raw)
        except ValueError:
            raise bad_request(
                f"Invalid '{name}': expected an integer, but got '{raw[:40]}'.",
                param=name,
                code="invalid_type",
            ) from None
        if not lowest <= value <= highest:
            message = f"Invalid '{name}': must be between {lowest} and {highest}, got {value}."
            code = "integer_below_min_value" if value < lowest else "integer_above_max_value"
            raise bad_request(message, param=name, code=code)
        return value


def listing(data: list[dict[str, Any]], has_more: bool) -> dict[str, Any]:
    """The OpenAPI schema types `first_id` and `last_id` as strings, never null: an empty list
    has empty ones."""
    return {
        "object": "list",
        "data": data,
        "first_id": data[0]["id"] if data else "",
        "last_id": data[-1]["id"] if data else "",
        "has_more": has_more,
    }
