"""Which files wake the daemon, and the thread that watches them with watchfiles.

The specs directory, the folder of every input and reconciler.yaml's, the repo root, are
watched (recursively, as watchfiles watches every root; changes to other files are filtered
out); the set is re-derived after each load, since a spec may name a new input.  Bursts are
gathered by watchfiles: a `git pull` touching fifty files arrives as one change, naming the
files that changed.  A burst ends after QUIET_MS without a write, so a new spec's create goes
out at once; what a change would cancel (a spec removed, renamed, edited while its batch runs)
waits until the files have been quiet for SETTLE_SECONDS (daemon/loop.py), so a rename, a
checkout or an editor's delete-then-write never cancels anything.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from watchfiles import Change, DefaultFilter, watch

from reconciler.specs.repo import SETTINGS_FILE, RepoPaths

DEBOUNCE_MS = 1000  # the longest a burst of writes is gathered into one wake-up
QUIET_MS = 50  # a burst ends after this long without another write
SETTLE_SECONDS = 1.0  # what a change would cancel waits for this long without a write
IDLE_TICK_MS = 200  # how often the watch thread looks up when nothing happens
READY_WAIT_SECONDS = 3.0


@dataclass(frozen=True)
class WatchTargets:
    roots: frozenset[Path]  # folders watched recursively
    trees: frozenset[Path]  # any change below these counts (the specs directory)
    files: frozenset[Path]  # these exact paths count (inputs, a symlinked repo)


def targets_for(specs: Path, inputs: Iterable[Path], links: Iterable[Path] = ()) -> WatchTargets:
    """`links`: paths that may be swapped for another target (git-sync's repo symlink)."""
    files = {Path(p) for p in inputs} | {Path(p) for p in links}
    wanted = {_existing(specs)} | {_existing(p.parent) for p in files}
    return WatchTargets(frozenset(_outermost(wanted)), frozenset({specs}), frozenset(files))


def watched_files(paths: RepoPaths, inputs: Iterable[Path]) -> list[Path]:
    """The files whose change reloads the specs: every input, and reconciler.yaml, which each
    load reads again (an edit of it alone must not wait for a change under specs/)."""
    return [*inputs, paths.repo / SETTINGS_FILE]


def _existing(path: Path) -> Path:
    """The path, or its nearest existing ancestor: a specs folder created later is still seen."""
    while not path.exists() and path.parent != path:
        path = path.parent
    return path


def _outermost(folders: set[Path]) -> set[Path]:
    return {f for f in folders if not any(f != o and f.is_relative_to(o) for o in folders)}


class RelevantChanges(DefaultFilter):
    """watchfiles' defaults (editor swap files, .git, …) narrowed to the targets."""

    def __init__(self, targets: WatchTargets) -> None:
        super().__init__()
        self.targets = targets  # replaced whole when only the files change: no restart needed

    def __call__(self, change: Change, path: str) -> bool:
        if not super().__call__(change, path):
            return False
        changed, targets = Path(path), self.targets
        return changed in targets.files or any(changed.is_relative_to(t) for t in targets.trees)


class FileWatcher:
    """Runs watchfiles on a thread and calls `on_change` with the files of each burst."""

    def __init__(self, on_change: Callable[[set[Path]], None], on_error: Callable[[str], None]) -> None:
        self._on_change = on_change
        self._on_error = on_error
        self._filter: RelevantChanges | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def follow(self, targets: WatchTargets) -> bool:
        """Watches `targets` from now on; True when the watch had to be (re)started.

        Changes made while no watch was set up are missed, so the caller should look at the
        files once more after a restart."""
        running = self._thread is not None and self._thread.is_alive()
        if running and self._filter is not None and self._filter.targets.roots == targets.roots:
            self._filter.targets = targets
            return False
        self.close()
        self._filter, self._stop = RelevantChanges(targets), threading.Event()
        ready = threading.Event()
        self._thread = threading.Thread(
            target=self._run,
            args=(targets.roots, self._filter, self._stop, ready),
            name="watch-files",
            daemon=True,
        )
        self._thread.start()
        ready.wait(READY_WAIT_SECONDS)
        return True

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2.0)
        self._thread = None

    def _run(
        self, roots: frozenset[Path], relevant: RelevantChanges, stop: threading.Event, ready: threading.Event
    ) -> None:
        try:
            for changes in watch(
                *sorted(roots),
                watch_filter=relevant,
                debounce=DEBOUNCE_MS,
                step=QUIET_MS,
                stop_event=stop,
                rust_timeout=IDLE_TICK_MS,
                yield_on_timeout=True,  # the first tick says the watch is set up
                raise_interrupt=False,
            ):
                ready.set()
                if changes:
                    self._on_change({Path(path) for _, path in changes})
        except Exception as error:  # e.g. out of inotify watches: the resync still runs
            self._on_error(f"{type(error).__name__}: {error}")
        finally:
            ready.set()
