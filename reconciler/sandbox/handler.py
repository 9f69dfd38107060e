"""The HTTP layer: parses a request, hands it to the app, writes the reply, keeps connections
alive (HTTP/1.1) whenever the request body was fully read.

`/_sandbox/...` is answered here too: knobs and request counts over HTTP, for tests that drive
a sandbox running in another process (the CLI, the daemon) or behind the Portkey gateway.  Not
counted, no key.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import shutil
from http.server import BaseHTTPRequestHandler
from typing import Any, BinaryIO, cast
from urllib.parse import parse_qsl, urlsplit

from reconciler.sandbox.app import App
from reconciler.sandbox.exchange import Reply
from reconciler.sandbox.wire import ApiProblem, BodyReader, bad_request, unknown_route


def control(app: App, method: str, path: str, body: BodyReader) -> Reply:
    try:
        return _dispatch(app, method, path.rstrip("/"), body)
    except ApiProblem as problem:
        return Reply.of(problem)


def _dispatch(app: App, method: str, path: str, body: BodyReader) -> Reply:
    if (method, path) == ("GET", "/_sandbox/requests"):
        return Reply(json=app.counts())
    if (method, path) == ("POST", "/_sandbox/requests/reset"):
        app.reset_counts()
        return Reply(json=app.counts())
    if (method, path) == ("GET", "/_sandbox/config"):
        return Reply(json=app.config.public())
    if (method, path) == ("POST", "/_sandbox/config"):
        knobs = body.read_json()
        if not isinstance(knobs, dict):
            raise bad_request("The body must be a JSON object of knobs.")
        try:
            return Reply(json=app.configure(**knobs).public())
        except ValueError as error:
            raise bad_request(str(error)) from None
    raise unknown_route(method, path)


log = logging.getLogger("reconciler.sandbox")
_DRAIN_LIMIT = 16 * 1024 * 1024  # past this, closing the connection is cheaper than reading on


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 120  # an idle keep-alive connection gives its thread back after this
    disable_nagle_algorithm = True  # headers and body go out as two writes; don't hold the second
    app: App  # set on the subclass made for each server

    def do_GET(self) -> None:
        self._handle()

    def do_POST(self) -> None:
        self._handle()

    def do_DELETE(self) -> None:
        self._handle()

    def do_PUT(self) -> None:
        self._handle()

    def do_PATCH(self) -> None:
        self._handle()

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the sandbox often runs inside the CLI, whose output is the user's."""

    def _handle(self) -> None:
        body: BodyReader | None = None
        try:
            body = BodyReader(cast(BinaryIO, self.rfile), self.headers)
            reply = self._reply(body)
        except ApiProblem as problem:
            reply = Reply.of(problem)
        except Exception:
            log.exception("sandbox: %s %s failed", self.command, urlsplit(self.path).path)
            reply = Reply.of(ApiProblem(500, "The sandbox failed on this request.", kind="server_error"))
        if not _drained(body):
            self.close_connection = True
        self._send(reply)

    def _reply(self, body: BodyReader) -> Reply:
        split = urlsplit(self.path)
        path = split.path
        if path.startswith("/_sandbox/"):
            return control(self.app, self.command, path, body)
        if path != "/v1" and not path.startswith("/v1/"):
            raise unknown_route(self.command, path)
        query = dict(parse_qsl(split.query))
        headers = {name.lower(): value for name, value in self.headers.items()}
        return self.app.serve(self.command, path, query, headers, body)

    def _send(self, reply: Reply) -> None:
        if reply.stream is not None:
            with reply.stream:
                size = os.fstat(reply.stream.fileno()).st_size
                self._head(reply, "application/octet-stream", size)
                shutil.copyfileobj(reply.stream, self.wfile, 1 << 20)
            return
        payload = json.dumps(reply.json).encode()
        self._head(reply, "application/json", len(payload))
        self.wfile.write(payload)

    def _head(self, reply: Reply, content_type: str, size: int) -> None:
        self.send_response(reply.status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(size))
        # Every answer of the real API carries one; the official SDK reads it (`_request_id`).
        self.send_header("x-request-id", f"req_{secrets.token_hex(16)}")
        for name, value in reply.headers.items():
            self.send_header(name, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()


def _drained(body: BodyReader | None) -> bool:
    """Whether the connection can take another request: the rest of this body was read."""
    try:
        return body is not None and body.drain(_DRAIN_LIMIT)
    except ApiProblem:  # a malformed body cannot be skipped reliably
        return False
