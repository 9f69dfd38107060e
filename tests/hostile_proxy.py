"""A real HTTP server in front of a sandbox that passes every request through, except the
content of files, which a test may replace with what a hostile provider would send: one line
of half a gigabyte, compressed; a hundred megabytes of answers to requests never made.

    with hostile_proxy(sandbox.base_url) as proxy:
        proxy.replace_content = lambda file_id, real: Body(chunks, {"content-encoding": "gzip"})
        ... RECONCILER_SANDBOX_URL=proxy.base_url ...

`replace_content(file_id, real_bytes)` returns a `Body` (chunks sent as they come, chunked unless
`length` is given) or None to pass the real content on. `served` counts replaced answers.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx

_CONTENT = re.compile(r"^/v1/files/([^/]+)/content$")
_PASSED = ("content-type", "retry-after", "retry-after-ms", "x-request-id")


@dataclass
class Body:
    chunks: Iterable[bytes]
    headers: dict[str, str] = field(default_factory=dict)
    length: int | None = None  # announced in Content-Length; None: sent chunked


Replace = Callable[[str, bytes], Body | None]


class HostileProxy:
    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.removesuffix("/v1")
        self.replace_content: Replace = lambda file_id, real: None
        self.served = 0
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                self._pass(b"")

            def do_POST(self) -> None:
                self._pass(self.rfile.read(int(self.headers.get("Content-Length") or 0)))

            def do_DELETE(self) -> None:
                self._pass(b"")

            def _pass(self, body: bytes) -> None:
                headers = {
                    k: v
                    for k, v in self.headers.items()
                    if k.lower() not in ("host", "content-length", "accept-encoding", "connection")
                }
                answer = httpx.request(
                    self.command, proxy.upstream + self.path, content=body, headers=headers, timeout=60
                )
                found = _CONTENT.match(self.path.split("?", 1)[0])
                hostile = proxy.replace_content(found.group(1), answer.content) if found else None
                try:
                    if hostile is not None and answer.status_code == 200:
                        with proxy._lock:
                            proxy.served += 1
                        self._send_body(hostile)
                    else:
                        self._send_answer(answer)
                except OSError:  # the client hung up: what a bounded client does
                    self.close_connection = True

            def _send_answer(self, answer: httpx.Response) -> None:
                self.send_response(answer.status_code)
                for name in _PASSED:
                    if name in answer.headers:
                        self.send_header(name, answer.headers[name])
                self.send_header("Content-Length", str(len(answer.content)))
                self.end_headers()
                self.wfile.write(answer.content)

            def _send_body(self, hostile: Body) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "application/octet-stream")
                for name, value in hostile.headers.items():
                    self.send_header(name, value)
                chunked = hostile.length is None
                if chunked:
                    self.send_header("Transfer-Encoding", "chunked")
                else:
                    self.send_header("Content-Length", str(hostile.length))
                self.end_headers()
                for chunk in hostile.chunks:
                    if chunk:
                        self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk) if chunked else chunk)
                if chunked:
                    self.wfile.write(b"0\r\n\r\n")

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler


@contextmanager
def hostile_proxy(upstream: str) -> Iterator[HostileProxy]:
    proxy = HostileProxy(upstream)
    try:
        yield proxy
    finally:
        proxy.close()
