"""The state file as a backend: the default, for one machine.  Reading and writing the file, its
locks, and the daemon's guard on it.

Written atomically (common/fileops.py, fsynced) with sorted keys, two-space indented; the
previous good copy is kept beside it as `<name>.backup`.  The file keeps its latest serial and
that backup, not every version.

A pass holds the owner's lock and then the state file's own lock (`state_lock`: one writer at
a time for a state file, and a refusal that names the holder), always in that order, so no two
can wait on each other.  The owner's lock is one writer per owner on this machine, whichever
state file it writes: the batches belong to the owner, not to a state file, so two checkouts
of one repo, or the daemon with `--state` elsewhere and a manual `apply` in the checkout, must
not plan at the same time.  Its lock file is keyed by the owner tag in a per-user runtime
directory ($XDG_RUNTIME_DIR/reconciler, else <temp dir>/reconciler-<uid>), held with flock and
naming its holder (common/fileops.py).  Across machines, only a shared backend can do this.

The daemon's guard (`DaemonLock`) is one daemon per state file, for the daemon's whole life: a
lock file beside the state (`<state>.daemon.lock`) that names its holder.  It is separate from
the state lock, which every pass takes only briefly, so `status`, `plan` and a manual `apply`
keep working between the daemon's passes.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import orjson
from pydantic import ValidationError

from reconciler.common import fileops
from reconciler.common.errors import LockHeldError, StateError
from reconciler.common.limits import parse_seconds
from reconciler.state.backend import Version
from reconciler.state.document import REBUILD_HINT, parse_state
from reconciler.state.model import FORMAT_VERSION, State


def new_state(owner: str | None = None) -> State:
    return State(lineage=str(uuid.uuid4()), owner=owner)


# The last state written (or read) per path, with the file's identity then. Our writes go to a
# new inode (an atomic replace, the old one kept as the backup) under the state lock, so an
# unchanged identity means unchanged bytes: a daemon pass reads the file three times, and at
# 10,000 jobs each parse is a second. A file someone else wrote in the last two seconds is not
# remembered: an edit in place within one tick of the filesystem's clock keeps its identity.
_known: dict[Path, tuple[tuple[int, ...], State]] = {}
_KNOWN_PATHS = 8
_SETTLED_NS = 2_000_000_000


def _identity(path: Path) -> tuple[int, ...] | None:
    try:
        found = os.stat(path)
    except OSError:
        return None
    return (found.st_dev, found.st_ino, found.st_size, found.st_mtime_ns, found.st_ctime_ns)


def _remember(path: Path, identity: tuple[int, ...] | None, state: State) -> None:
    _known.pop(path, None)
    if identity is not None:
        _known[path] = (identity, state)
        while len(_known) > _KNOWN_PATHS:
            del _known[next(iter(_known))]


def read_state(path: Path) -> State:
    """The state on disk; a missing file is an empty state, a damaged one an error."""
    identity = _identity(path)
    known = _known.get(path)
    if identity is not None and known is not None and known[0] == identity:
        return known[1]
    state = _read_state(path)
    settled = identity is not None and time.time_ns() - identity[4] > _SETTLED_NS
    _remember(path, identity if settled else None, state)  # stat before read: a later write only misses
    return state


def _read_state(path: Path) -> State:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return new_state()
    except OSError as error:
        raise StateError(f"{path}: cannot read the state file ({error.strerror})") from None
    fast = _current_format(raw)
    if fast is not None:
        return fast
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise StateError(f"{path}: state file is damaged (not JSON); kept as is; {_recovery(path)}") from None
    except RecursionError:  # `[[[[…` a thousand deep: no state of ours nests like that
        message = f"{path}: state file is damaged (nested too deeply); kept as is; {_recovery(path)}"
        raise StateError(message) from None
    return parse_state(data, str(path), "state file", _recovery(path))


def _current_format(raw: bytes) -> State | None:
    """A file of a format that needs no upgrade, parsed by pydantic-core straight into the model:
    no dict of the whole file beside it (a third of the peak memory at 10,000 jobs), and faster.
    Anything else (None) takes the long way, which upgrades it or words what is wrong."""
    try:
        state = State.model_validate_json(raw)
    except ValidationError:
        return None
    return state if state.format_version != 1 and state.format_version <= FORMAT_VERSION else None


def _recovery(path: Path) -> str:
    backup = path.with_name(path.name + ".backup")
    return f"{REBUILD_HINT} (the previous good copy is {backup.name})" if backup.exists() else REBUILD_HINT


def write_state(path: Path, state: State) -> State:
    """Writes `state` with the serial bumped and returns what was written."""
    written = state.model_copy(update={"serial": state.serial + 1, "format_version": FORMAT_VERSION})
    encoded = encode_state(written)
    _known.pop(path, None)
    with fileops.replacing(path, durable=True, before_replace=lambda: _keep_backup(path)) as out:
        out.write(encoded)
    _remember(path, _identity(path), written)  # still under the state lock: no one else wrote
    return written


_LAYOUT = orjson.OPT_SORT_KEYS | orjson.OPT_INDENT_2 | orjson.OPT_APPEND_NEWLINE


def encode_state(state: State) -> bytes:
    """The file's bytes: what `json.dumps(sort_keys=True, indent=2)` writes (non-ASCII text as
    UTF-8 rather than escaped), five times faster. `indent` makes json.dumps use its
    pure-Python encoder: 0.3 s of every write at 1,000 jobs, 3 s at 10,000."""
    data = state.model_dump(mode="json")
    try:
        return orjson.dumps(data, option=_LAYOUT)
    except orjson.JSONEncodeError:  # a server's integer beyond 64 bits, say: the slow way still writes it
        return (json.dumps(data, sort_keys=True, indent=2) + "\n").encode()


def remove_stale_temps(path: Path) -> None:
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


LOCK_TIMEOUT_ENV = "RECONCILER_LOCK_TIMEOUT"
DEFAULT_LOCK_TIMEOUT = 5.0


@contextlib.contextmanager
def state_lock(path: Path, command: str, timeout: float | None = None) -> Iterator[None]:
    """Holds the state lock for the block; waits up to `timeout` seconds (default
    lock_timeout()), then fails naming the holder."""
    lock_path = path.with_name(path.name + ".lock")
    wait = lock_timeout() if timeout is None else timeout
    with fileops.holding(lock_path, command, wait) as held:
        if not held:
            holder = fileops.holder(lock_path)
            raise LockHeldError(f"state is locked by {holder}; wait for it to finish or stop it")
        remove_stale_temps(path)
        yield


def lock_timeout() -> float:
    """$RECONCILER_LOCK_TIMEOUT seconds, else 5."""
    raw = os.environ.get(LOCK_TIMEOUT_ENV)
    try:
        return parse_seconds(raw) if raw else DEFAULT_LOCK_TIMEOUT
    except ValueError as error:
        raise StateError(f"${LOCK_TIMEOUT_ENV}={raw!r} {error}") from None


RUNTIME_ENV = "XDG_RUNTIME_DIR"


def owner_lock_path(owner_tag: str) -> Path:
    return runtime_dir() / "owners" / f"{owner_tag}.lock"


def runtime_dir() -> Path:
    """Ours alone: created 0700, and refused when another user owns it (it could fake a holder
    or, worse, make us wait forever)."""
    base = os.environ.get(RUNTIME_ENV)
    folder = Path(base) / "reconciler" if base else Path(tempfile.gettempdir()) / f"reconciler-{os.getuid()}"
    try:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        owner = folder.stat().st_uid
    except OSError as error:
        raise StateError(f"{folder}: cannot create the lock folder ({error.strerror})") from None
    if owner != os.getuid():
        raise StateError(f"{folder}: the lock folder belongs to uid {owner}, not us; set ${RUNTIME_ENV}")
    return folder


class FileBackend:
    def __init__(self, path: Path, owner_tag: str | None) -> None:
        self.path, self.owner_tag = path, owner_tag

    @property
    def where(self) -> str:
        return str(self.path)

    def read(self) -> State:
        return read_state(self.path)

    def write(self, state: State) -> State:
        return write_state(self.path, state)

    def fresh(self) -> State:
        set_aside_damaged(self.path)
        return new_state(self.owner_tag)

    @contextlib.contextmanager
    def writer_lock(self, command: str, timeout: float | None = None) -> Iterator[None]:
        wait = lock_timeout() if timeout is None else timeout
        with contextlib.ExitStack() as stack:
            if self.owner_tag is not None:
                stack.enter_context(_owner_lock(self.owner_tag, command, wait))
            stack.enter_context(state_lock(self.path, command, wait))
            yield

    def leadership(self) -> DaemonLock:
        return DaemonLock(self.path)

    def history(self, limit: int) -> list[Version]:
        """The file keeps two versions at most: itself and its backup."""
        kept = []
        for candidate in (self.path, self.path.with_name(self.path.name + ".backup")):
            if candidate.exists():
                state = read_state(candidate)
                stamp = datetime.fromtimestamp(candidate.stat().st_mtime, UTC)
                written = stamp.isoformat(timespec="seconds").replace("+00:00", "Z")
                kept.append(Version(state.serial, state.lineage, written, None, len(state.jobs)))
        return kept[:limit]

    def version(self, serial: int) -> State:
        for candidate in (self.path, self.path.with_name(self.path.name + ".backup")):
            if candidate.exists() and _serial_of(candidate) == serial:
                return read_state(candidate)
        raise StateError(
            f"{self.path}: serial {serial} is not kept; a state file keeps only its latest serial "
            "and one backup (a PostgreSQL state keeps every serial)"
        )


def _serial_of(path: Path) -> int | None:
    try:
        serial = json.loads(path.read_bytes()).get("serial")
    except (OSError, ValueError, AttributeError, RecursionError):
        return None
    return serial if isinstance(serial, int) else None


@contextlib.contextmanager
def _owner_lock(owner_tag: str, command: str, timeout: float) -> Iterator[None]:
    path = owner_lock_path(owner_tag)
    with fileops.holding(path, command, timeout) as held:
        if not held:
            raise LockHeldError(
                f"state is locked by {fileops.holder(path)} (owner {owner_tag}, in any checkout "
                "or state file on this machine); wait for it to finish or stop it"
            )
        yield


COMMAND = "reconciler reconcile --watch"  # what the daemon lock names as its holder


def daemon_lock_path(state: Path) -> Path:
    return state.with_name(state.name + ".daemon.lock")


@contextlib.contextmanager
def hold_daemon_lock(state: Path) -> Iterator[Path]:
    """Held until the block ends (or the process dies: the kernel drops a flock with its owner)."""
    path = daemon_lock_path(state)
    with fileops.holding(path, COMMAND, timeout=0) as held:
        if not held:
            raise LockHeldError(
                f"{state}: another daemon already reconciles this state file: {fileops.holder(path)}; "
                "stop it first, or give this one another --state"
            )
        yield path


class DaemonLock:
    """The daemon's guard on a state file: one daemon per file, which always leads."""

    always_leads = True

    def __init__(self, state: Path) -> None:
        self.state = state
        self._held = contextlib.ExitStack()

    def __enter__(self) -> DaemonLock:
        self._held.enter_context(hold_daemon_lock(self.state))
        return self

    def __exit__(self, *exc: object) -> None:
        self._held.close()

    def try_lead(self, command: str) -> bool:
        return True

    def holder(self) -> str:
        return "this daemon"
