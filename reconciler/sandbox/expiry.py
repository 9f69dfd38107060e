"""Files past their `expires_at` leave the disk even while nobody asks for them: a thread
sweeps the files folder every second (reading it again only when something is due)."""

from __future__ import annotations

import threading
import time

from reconciler.sandbox.files import FileStore

SWEEP_SECONDS = 1.0


class FileJanitor:
    def __init__(self, files: FileStore) -> None:
        self._files = files
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sandbox-expiry", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5.0)

    def _run(self) -> None:
        while not self._stop.wait(SWEEP_SECONDS):
            try:
                self._files.sweep(time.time())
            except OSError:  # the data dir went away under us (a test's tmp dir): try next time
                continue
