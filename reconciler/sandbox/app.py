"""One sandbox's state in this process: its stores, knobs, dice and request counts, and the /v1
route table (method + path template → endpoint function) that answers a request.

The stores live on disk and may be shared with other processes; knobs, dice and counts belong
to this server alone.
"""

from __future__ import annotations

import hmac
import re
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from reconciler.sandbox import api_batches, api_files
from reconciler.sandbox.batches import BatchStore
from reconciler.sandbox.config import Dice, SandboxConfig, injected_fault
from reconciler.sandbox.exchange import Call, Reply
from reconciler.sandbox.file_store import FileStore
from reconciler.sandbox.wire import ApiProblem, BodyReader, unknown_route

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


class App:
    def __init__(self, data_dir: Path, config: SandboxConfig) -> None:
        self.files = FileStore(data_dir)
        self.batches = BatchStore(data_dir, self.files)
        self._config = config
        self._dice = Dice(config.seed)
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()

    @property
    def config(self) -> SandboxConfig:
        return self._config

    def configure(self, **knobs: Any) -> SandboxConfig:
        with self._lock:
            self._config = self._config.changed(**knobs)
            if "seed" in knobs:
                self._dice.reseed(self._config.seed)
            return self._config

    def counts(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counts)

    def count(self, name: str) -> None:
        with self._lock:
            self._counts[name] += 1

    def reset_counts(self) -> None:
        with self._lock:
            self._counts.clear()

    def serve(
        self, method: str, path: str, query: dict[str, str], headers: dict[str, str], body: BodyReader
    ) -> Reply:
        found = match(method, path)
        with self._lock:
            self._counts[found[0].name if found else f"{method} (unknown route)"] += 1
        config = self._config
        if config.latency_seconds:
            time.sleep(config.latency_seconds)
        try:
            _check_key(config, headers)
            fault = injected_fault(self._dice, config)
            if fault is not None:
                raise fault
            if found is None:
                raise unknown_route(method, path)
            route, params = found
            call = Call(
                files=self.files,
                batches=self.batches,
                config=config,
                dice=self._dice,
                params={name: unquote(value) for name, value in params.items()},
                query=query,
                headers=headers,
                body=body,
                now=time.time(),
            )
            return route.endpoint(call)
        except ApiProblem as problem:
            return Reply.of(problem)


def _check_key(config: SandboxConfig, headers: dict[str, str]) -> None:
    if config.api_key is None:
        return
    scheme, _, given = headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not given.strip():
        message = "You didn't provide an API key. Provide it in the Authorization header as 'Bearer <key>'."
        raise ApiProblem(401, message)
    if not hmac.compare_digest(given.strip().encode(), config.api_key.encode()):
        # Never echo the key back, not even masked: it could be a real one sent to the wrong place.
        raise ApiProblem(401, "Incorrect API key provided.", code="invalid_api_key")
