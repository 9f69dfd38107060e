"""The health port's connections, bounded: a flood of them must never take the descriptors the
passes need, nor stop `/healthz` from answering.

- At most `Caps.connections` are open at once, a thread each. A new one beyond that takes the
  place of the oldest still sending its request (an idle or slow client); when every open one
  is being answered, the new one gets a 503 at once and is closed.
- A request must arrive whole within `READ_SECONDS`; a client still sending it then is cut off.
- Event streams (`/events`) have their own, lower cap (`Caps.streams`, kept by web.py).
- The caps follow the process's descriptor limit (RLIMIT_NOFILE): the health port holds at
  most an eighth of it, the rest stays for the passes (provider connections, the state, the
  file watch, the embedded sandbox).
"""

from __future__ import annotations

import contextlib
import errno
import resource
import socket
import sys
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

READ_SECONDS = 10.0  # to send one whole request: a probe or a webhook takes milliseconds
MIN_CONNECTIONS, MAX_CONNECTIONS = 8, 128
_BUSY_TEXT = b"too many connections; try again\n"
_BUSY = (
    b"HTTP/1.0 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\nRetry-After: 1\r\n"
    b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(_BUSY_TEXT), _BUSY_TEXT)
)
_OUT_OF_DESCRIPTORS = (errno.EMFILE, errno.ENFILE)


@dataclass(frozen=True)
class Caps:
    connections: int
    streams: int

    @staticmethod
    def for_this_process() -> Caps:
        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
        limit = soft if soft != resource.RLIM_INFINITY else 1 << 20
        connections = max(MIN_CONNECTIONS, min(MAX_CONNECTIONS, limit // 8))
        return Caps(connections=connections, streams=connections // 2)


@dataclass
class _Open:
    connection: socket.socket
    since: float = field(default_factory=time.monotonic)
    reading: bool = True  # still receiving its request
    evicted: bool = False


class CappedServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # the kernel's queue of connections not yet accepted: no descriptors

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler], caps: Caps) -> None:
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        self.caps = caps
        self._lock = threading.Lock()
        self._open: dict[socket.socket, _Open] = {}
        super().__init__(address, handler)

    def get_request(self) -> tuple[socket.socket, Any]:
        try:
            return super().get_request()
        except OSError as error:
            if error.errno in _OUT_OF_DESCRIPTORS:
                time.sleep(0.05)  # the listening socket stays readable: do not spin on it
            raise

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._admit(request):
            _answer_busy(request)
            return
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._lock:
            self._open.pop(request, None)
        super().shutdown_request(request)

    def request_read(self, connection: socket.socket) -> None:
        """The handler has the whole request: from now on it is being answered."""
        with self._lock:
            found = self._open.get(connection)
            if found is not None:
                found.reading = False

    def service_actions(self) -> None:
        """Every half second, on the serving thread: cuts off requests too slow to arrive."""
        cutoff = time.monotonic() - READ_SECONDS
        with self._lock:
            late = [o for o in self._open.values() if o.reading and not o.evicted and o.since < cutoff]
            for entry in late:
                _cut(entry)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client hanging up or cut off is normal; anything else is a bug worth its traceback."""
        if not isinstance(sys.exc_info()[1], OSError):
            super().handle_error(request, client_address)

    def _admit(self, request: socket.socket) -> bool:
        with self._lock:
            live = [entry for entry in self._open.values() if not entry.evicted]
            if len(live) >= self.caps.connections:
                waiting = [entry for entry in live if entry.reading]
                if not waiting:
                    return False
                _cut(min(waiting, key=lambda entry: entry.since))
            self._open[request] = _Open(request)
            return True


def _cut(entry: _Open) -> None:
    """Wakes the connection's thread from its read (it ends, and closes the connection)."""
    entry.evicted = True
    with contextlib.suppress(OSError):
        entry.connection.shutdown(socket.SHUT_RDWR)


def _answer_busy(request: socket.socket) -> None:
    """A 503 without a thread and without waiting: what arrived is read, the answer fits the
    socket's buffer, and the connection is closed."""
    with contextlib.suppress(OSError):
        request.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            request.recv(65536)
        request.send(_BUSY)
        request.shutdown(socket.SHUT_WR)
    request.close()
