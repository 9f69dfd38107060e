"""A real HTTP proxy in front of the sandbox whose batch listings leave batches out, as an
eventually consistent list does; every other request and answer passes through unchanged.

    with forgetful_list(sandbox.base_url) as proxy:
        proxy.base_url            the proxy's /v1, to use instead of the sandbox's
        proxy.hide(ids)           every listing leaves these batches out (until hide(()))
        proxy.forget_at(0.05, 7)  each batch left out of each listing with this chance (seeded)
        proxy.omitted             how many times a batch was left out of a listing
        proxy.calls               requests per `METHOD /route` (ids as {id})

Only `GET /v1/batches` is changed: a batch retrieved by id is always found.
"""

from __future__ import annotations

import http.client
import json
import random
import re
import threading
from collections import Counter
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "host"}


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _forward(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
        upstream = http.client.HTTPConnection(
            self.server.upstream_host, self.server.upstream_port, timeout=60
        )
        try:
            upstream.request(self.command, self.path, body=body, headers=headers)
            answer = upstream.getresponse()
            status, payload = answer.status, answer.read()
            answer_headers = [(k, v) for k, v in answer.getheaders() if k.lower() not in _HOP_BY_HOP]
        finally:
            upstream.close()
        path = urlsplit(self.path).path
        self.server.count(f"{self.command} {re.sub(r'/batch_[^/]+', '/{id}', path)}")
        if self.command == "GET" and path == "/v1/batches" and status == 200:
            payload = self.server.forget(payload)
        self.send_response(status)
        for key, value in answer_headers:
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = _forward
    do_POST = _forward
    do_DELETE = _forward


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, upstream: str) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        parts = urlsplit(upstream)
        self.upstream_host, self.upstream_port = parts.hostname or "127.0.0.1", parts.port or 80
        self.hidden: frozenset[str] = frozenset()
        self.rate = 0.0
        self.dice = random.Random(0)
        self.omitted = 0
        self.calls: Counter[str] = Counter()
        self.lock = threading.Lock()

    def count(self, call: str) -> None:
        with self.lock:
            self.calls[call] += 1

    def forget(self, payload: bytes) -> bytes:
        page = json.loads(payload)
        with self.lock:
            kept = [b for b in page["data"] if not self._left_out(b)]
            self.omitted += len(page["data"]) - len(kept)
        return json.dumps(page | {"data": kept}).encode()

    def _left_out(self, batch: dict[str, Any]) -> bool:
        return batch.get("id") in self.hidden or (self.rate > 0 and self.dice.random() < self.rate)


class ForgetfulList:
    def __init__(self, server: _Server) -> None:
        self._server = server
        self.base_url = f"http://127.0.0.1:{server.server_address[1]}/v1"

    def hide(self, ids: Iterable[str]) -> None:
        self._server.hidden = frozenset(ids)

    def forget_at(self, rate: float, seed: int) -> None:
        with self._server.lock:
            self._server.rate, self._server.dice = rate, random.Random(seed)

    @property
    def omitted(self) -> int:
        return self._server.omitted

    @property
    def calls(self) -> Counter[str]:
        return self._server.calls


@contextmanager
def forgetful_list(upstream: str) -> Iterator[ForgetfulList]:
    server = _Server(upstream)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield ForgetfulList(server)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
