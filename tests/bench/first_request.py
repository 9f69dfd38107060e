"""How soon a client's first request leaves: a listener that notes when each connection's
first request line has arrived, answers it 400 (`x-should-retry: false`, so no client tries
again) and closes.  The time is taken from the moment the client's process was started, so
it includes the interpreter's own start, its imports and whatever it does before sending."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import threading
import time
from collections.abc import Iterator, Mapping, Sequence

_BODY = b'{"error": {"message": "benchmark: the first request only"}}'
ANSWER = (
    b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\nx-should-retry: false\r\n"
    b"connection: close\r\ncontent-length: %d\r\n\r\n%s" % (len(_BODY), _BODY)
)


class Listener:
    def __init__(self) -> None:
        self._socket = socket.create_server(("127.0.0.1", 0))
        self._socket.settimeout(0.2)
        self.arrivals: list[float] = []  # perf_counter of each first request line
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._socket.getsockname()[1]}/v1"

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                connection, _ = self._socket.accept()
            except OSError:
                continue
            with connection:
                connection.settimeout(5)
                with contextlib.suppress(OSError):
                    if connection.recv(1):  # the request has started to arrive
                        self.arrivals.append(time.perf_counter())
                        connection.recv(65536)
                        connection.sendall(ANSWER)

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self._socket.close()


@contextlib.contextmanager
def listener() -> Iterator[Listener]:
    served = Listener()
    try:
        yield served
    finally:
        served.close()


def first_request_after(argv: Sequence[str], env: Mapping[str, str], served: Listener) -> float:
    """Seconds from starting `argv` to its first request reaching `served`; the process is
    left to fail on the answer and waited for."""
    served.arrivals.clear()
    started = time.perf_counter()
    process = subprocess.Popen(argv, env=dict(env), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        process.wait(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    if not served.arrivals:
        raise RuntimeError(f"`{' '.join(argv[1:3])}` sent no request")
    return served.arrivals[0] - started
