"""One sandbox's state in this process: its stores, knobs, dice and request counts.

The stores live on disk and may be shared with other processes; knobs, dice and counts belong
to this server alone.
"""

from __future__ import annotations

import hmac
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from reconciler.sandbox import routes
from reconciler.sandbox.batches import BatchStore
from reconciler.sandbox.body import BodyReader
from reconciler.sandbox.config import SandboxConfig
from reconciler.sandbox.exchange import Call, Reply
from reconciler.sandbox.faults import Dice, injected_fault
from reconciler.sandbox.files import FileStore
from reconciler.sandbox.problems import ApiProblem, unknown_route


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
        found = routes.match(method, path)
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
