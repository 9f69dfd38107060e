"""A sandbox in its own process (`reconciler sandbox`), driven over its `/_sandbox/` routes.

Running it apart keeps its CPU and memory out of the client's figures, and is closer to a
real provider: the client under test shares nothing with the server but a socket.
"""

from __future__ import annotations

import contextlib
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

from tests.bench.procs import bench_env, peak_rss_mb_of, reconciler_argv, reset_peak_rss

# Batches finish in about a tenth of a second: the suite measures the client, not the timeline.
FAST_TIMELINE: dict[str, Any] = {
    "validation_seconds": 0.02,
    "requests_per_second": 1_000_000.0,
    "finalizing_seconds": 0.02,
    "cancel_seconds": 0.02,
}


class ExternalSandbox:
    def __init__(self, process: subprocess.Popen[str], base_url: str, data_dir: Path) -> None:
        self.process = process
        self.base_url = base_url  # ends in /v1
        self.data_dir = data_dir
        self._control = httpx.Client(base_url=base_url.removesuffix("/v1"), timeout=60)

    @property
    def pid(self) -> int:
        return self.process.pid

    def configure(self, **knobs: Any) -> None:
        self._control.post("/_sandbox/config", json=knobs).raise_for_status()

    def counts(self) -> dict[str, int]:
        counts: dict[str, int] = self._control.get("/_sandbox/requests").json()
        return counts

    def reset_counts(self) -> None:
        self._control.post("/_sandbox/requests/reset").raise_for_status()

    def settle(self) -> int:
        """Lists every batch once, so the sandbox does its lazy work (validating inputs, writing
        results) now rather than inside the next measured request; returns the batch count."""
        seen, after = 0, None
        while True:
            params: dict[str, Any] = {"limit": 100} | ({"after": after} if after else {})
            page = httpx.get(f"{self.base_url}/batches", params=params, timeout=600).json()
            seen += len(page["data"])
            if not page.get("has_more") or not page["data"]:
                return seen
            after = page["data"][-1]["id"]

    def reset_peak_rss(self) -> bool:
        return reset_peak_rss(self.pid)

    def peak_rss_mb(self) -> float:
        return peak_rss_mb_of(self.pid)

    def close(self) -> None:
        self._control.close()


def total(counts: dict[str, int], *routes: str) -> int:
    """Requests to `routes` ("POST /v1/files" …), or to every route when none is named."""
    return sum(n for route, n in counts.items() if not routes or route in routes)


@contextlib.contextmanager
def external_sandbox(data_dir: Path, **knobs: Any) -> Iterator[ExternalSandbox]:
    flags = [f"--{name.replace('_', '-')}={value}" for name, value in knobs.items()]
    argv = reconciler_argv("sandbox", "--port", "0", "--data", str(data_dir), *flags)
    data_dir.mkdir(parents=True, exist_ok=True)
    process = subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=bench_env(), cwd=data_dir
    )
    try:
        assert process.stdout is not None
        first = process.stdout.readline()
        found = re.search(r"http://\S+/v1", first)
        if not found:
            raise RuntimeError(f"the sandbox did not start: {first!r}")
        sandbox = ExternalSandbox(process, found.group(0), data_dir)
        try:
            yield sandbox
        finally:
            sandbox.close()
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.stdout is not None:
            process.stdout.close()
