"""Reading, writing and locking the state file.

Written atomically (temp file, fsync, rename) with sorted keys; the previous good copy is
kept beside it as `<name>.backup`. A lock file next to it, held with flock, keeps two
writers on one machine from interleaving and names its holder when it refuses.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

from pydantic import ValidationError

from reconciler.common.errors import LockHeldError, StateError
from reconciler.state.model import FORMAT_VERSION, State

LOCK_TIMEOUT_ENV = "RECONCILER_LOCK_TIMEOUT"
DEFAULT_LOCK_TIMEOUT = 5.0
REBUILD_HINT = "rebuild it from the live list with `reconciler reconcile --rebuild-state`"


def new_state(owner: str | None = None) -> State:
    return State(lineage=str(uuid.uuid4()), owner=owner)


def read_state(path: Path) -> State:
    """The state on disk; a missing file is an empty state, a damaged one an error."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return new_state()
    except OSError as error:
        raise StateError(f"{path}: cannot read the state file ({error.strerror})") from None
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise StateError(f"{path}: state file is damaged (not JSON); kept as is; {_recovery(path)}") from None
    version = data.get("format_version") if isinstance(data, dict) else None
    if isinstance(version, int) and version > FORMAT_VERSION:
        raise StateError(
            f"{path}: state format_version {version} is newer than this reconciler understands "
            f"({FORMAT_VERSION}); upgrade reconciler"
        )
    try:
        return State.model_validate(data)
    except ValidationError as error:
        where = ".".join(str(p) for p in error.errors()[0]["loc"]) or "top level"
        message = f"{path}: state file is damaged (at {where}); kept as is; {_recovery(path)}"
        raise StateError(message) from None


def _recovery(path: Path) -> str:
    backup = path.with_name(path.name + ".backup")
    return f"{REBUILD_HINT} (the previous good copy is {backup.name})" if backup.exists() else REBUILD_HINT


def write_state(path: Path, state: State) -> State:
    """Writes `state` with the serial bumped and returns what was written."""
    written = state.model_copy(update={"serial": state.serial + 1})
    text = json.dumps(written.model_dump(mode="json"), sort_keys=True, indent=2) + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with temp.open("w", encoding="utf-8") as out:
        out.write(text)
        out.flush()
        os.fsync(out.fileno())
    _keep_backup(path)
    os.replace(temp, path)
    _fsync_dir(path.parent)
    return written


def _remove_stale_temps(path: Path) -> None:
    """A writer killed mid-write leaves `.<name>.<pid>.tmp` behind; the pid says whose it was."""
    for temp in path.parent.glob(f".{path.name}.*tmp"):
        pid = temp.name[len(path.name) + 2 :].split(".", 1)[0]
        if pid.isdigit() and not _alive(int(pid)):
            with contextlib.suppress(FileNotFoundError):
                temp.unlink()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, someone else's
        return True
    return True


def _keep_backup(path: Path) -> None:
    """Hard-links the current file as the backup, so `path` itself never goes missing."""
    if not path.exists():
        return
    link = path.with_name(f".{path.name}.{os.getpid()}.backup-tmp")
    with contextlib.suppress(FileNotFoundError):
        os.unlink(link)
    os.link(path, link)
    os.replace(link, path.with_name(path.name + ".backup"))


def set_aside_damaged(path: Path) -> Path | None:
    """Moves a damaged state file out of the way, keeping it for inspection."""
    if not path.exists():
        return None
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    kept = path.with_name(f"{path.name}.damaged-{stamp}")
    os.replace(path, kept)
    return kept


@contextlib.contextmanager
def state_lock(path: Path, command: str, timeout: float | None = None) -> Iterator[None]:
    """Holds the state lock for the block; waits up to `timeout` seconds (default
    $RECONCILER_LOCK_TIMEOUT, else 5), then fails naming the holder."""
    if timeout is None:
        timeout = _lock_timeout_from_env()
    lock_path = path.with_name(path.name + ".lock")
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        _acquire(fd, lock_path, timeout)
        _remove_stale_temps(path)
        holder = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "command": command,
            "since": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(holder).encode(), 0)
        yield
    finally:
        os.close(fd)  # closing releases the flock


def _lock_timeout_from_env() -> float:
    raw = os.environ.get(LOCK_TIMEOUT_ENV)
    try:
        return max(float(raw), 0.0) if raw else DEFAULT_LOCK_TIMEOUT
    except ValueError:
        raise StateError(f"${LOCK_TIMEOUT_ENV}={raw!r} is not a number of seconds") from None


def _acquire(fd: int, lock_path: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() >= deadline:
                raise LockHeldError(f"state is locked by {_describe_holder(lock_path)}") from None
            time.sleep(0.05)


def _describe_holder(lock_path: Path) -> str:
    try:
        holder = json.loads(lock_path.read_text(encoding="utf-8"))
        return (
            f"pid {holder['pid']} on {holder['host']} ({holder['command']}, since {holder['since']}); "
            "wait for it to finish or stop it"
        )
    except (OSError, ValueError, KeyError, TypeError):
        return f"another process (lock file {lock_path})"


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
