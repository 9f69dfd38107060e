"""Running a sandbox: a threading HTTP server in a background thread of this process."""

from __future__ import annotations

import contextlib
import socket
import threading
from http.server import ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any

from reconciler.sandbox.app import App
from reconciler.sandbox.config import SandboxConfig
from reconciler.sandbox.file_store import FileJanitor
from reconciler.sandbox.handler import Handler
from reconciler.sandbox.webhook_sender import WebhookSender


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 512  # bursts of ~100 clients connecting at once

    def __init__(self, address: tuple[str, int]) -> None:
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        self._open: set[socket.socket] = set()
        self._open_lock = threading.Lock()
        self._handler: type[Handler] = type("BoundHandler", (Handler,), {})  # one app per server
        super().__init__(address, self._handler)

    def attach(self, app: App) -> None:
        self._handler.app = app

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._open_lock:
            self._open.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._open_lock:
            self._open.discard(request)
        super().shutdown_request(request)

    def close_open_connections(self) -> None:
        """Keep-alive connections would otherwise outlive the server that accepted them."""
        with self._open_lock:
            still_open = list(self._open)
        for connection in still_open:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client hanging up mid-request is normal; anything else already got a 500."""


class Sandbox:
    """A running sandbox. `with start_sandbox(...) as sandbox:` stops it on the way out."""

    def __init__(
        self,
        server: _Server,
        thread: threading.Thread,
        data_dir: Path,
        app: App,
        helpers: tuple[WebhookSender, FileJanitor],
    ) -> None:
        self._server = server
        self._thread = thread
        self._app = app
        self._helpers = helpers
        self.data_dir = data_dir
        host, port = server.server_address[:2]
        reachable = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(str(host), str(host))
        shown = f"[{reachable}]" if ":" in reachable else reachable
        self.base_url = f"http://{shown}:{port}/v1"

    @property
    def config(self) -> SandboxConfig:
        return self._app.config

    def configure(self, **knobs: Any) -> None:
        """Changes knobs now; timeline knobs apply to batches created from now on."""
        self._app.configure(**knobs)

    def request_counts(self) -> dict[str, int]:
        return self._app.counts()

    def reset_counts(self) -> None:
        self._app.reset_counts()

    def stop(self) -> None:
        for helper in self._helpers:
            helper.stop()
        if self._thread.is_alive():
            self._server.shutdown()
            self._thread.join()
        self._server.server_close()
        self._server.close_open_connections()

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.stop()


def start_sandbox(
    data_dir: Path,
    config: SandboxConfig | None = None,
    host: str = "127.0.0.1",
    port: int = 0,
) -> Sandbox:
    """Listening by the time it returns (the socket is bound and listening before the thread
    starts), so a client may connect at once. OSError if the address is taken."""
    server = _Server((host, port))  # first: a taken port must fail before anything is written
    data_dir = Path(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    app = App(data_dir, config or SandboxConfig())
    server.attach(app)
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="sandbox", daemon=True
    )
    thread.start()
    sender = WebhookSender(app)  # idle until webhook_url and webhook_secret are set
    janitor = FileJanitor(app.files)
    for helper in (sender, janitor):
        helper.start()
    return Sandbox(server, thread, data_dir, app, (sender, janitor))
