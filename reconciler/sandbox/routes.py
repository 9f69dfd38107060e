"""The /v1 route table: method + path template -> endpoint function."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from reconciler.sandbox import api_batches, api_files
from reconciler.sandbox.exchange import Call, Reply

Endpoint = Callable[[Call], Reply]


@dataclass(frozen=True)
class Route:
    method: str
    template: str  # "/v1/batches/{id}": what request_counts() reports
    pattern: re.Pattern[str]
    endpoint: Endpoint

    @property
    def name(self) -> str:
        return f"{self.method} {self.template}"


def _route(method: str, template: str, endpoint: Endpoint) -> Route:
    pattern = re.compile("^" + template.replace("{id}", "(?P<id>[^/]+)") + "/?$")
    return Route(method, template, pattern, endpoint)


ROUTES = (
    _route("POST", "/v1/files", api_files.upload),
    _route("GET", "/v1/files", api_files.list_files),
    _route("GET", "/v1/files/{id}", api_files.retrieve),
    _route("GET", "/v1/files/{id}/content", api_files.content),
    _route("DELETE", "/v1/files/{id}", api_files.delete),
    _route("POST", "/v1/batches", api_batches.create),
    _route("GET", "/v1/batches", api_batches.list_batches),
    _route("GET", "/v1/batches/{id}", api_batches.retrieve),
    _route("POST", "/v1/batches/{id}/cancel", api_batches.cancel),
    _route("GET", "/v1/batches/{id}/output", api_batches.output),
)


def match(method: str, path: str) -> tuple[Route, dict[str, str]] | None:
    for route in ROUTES:
        found = route.pattern.match(path)
        if found and route.method == method:
            return route, found.groupdict()
    return None
