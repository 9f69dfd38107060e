"""The state file as a backend: the default, for one machine.  Reading and writing the file, its
journal, its locks, and the daemon's guard on it.

The file (`state.json`) is the whole document, one line per job: sorted keys, each job's record
compact on a line of its own (a diff shows one line per job that changed), readable by any JSON
parser.  It is replaced atomically (common/fileops.py, fsynced); the previous good copy is kept
beside it as `<name>.backup`.

A pass writes only what changed.  Each write appends the records of the jobs it changed (told
by identity: a pass hands back the very JobState objects it did not change) to the journal
beside the file (`<name>.journal`): one line per write, checksummed and fsynced, so a create's
intent is durable before its request without rewriting every job.  The journal's first line
names the file it continues (serial, lineage, size and checksum of its bytes): a file replaced
by anyone else (another tool, a restore) makes the journal stale, and it is ignored.  A line cut
short by a crash fails its checksum and is ignored with whatever follows it, as if that write
never happened.  Reading is the file and then the journal's lines in order.

The journal is folded into the file (compaction: the file rewritten whole, the journal removed)
when the owner's writer lock is let go, so after every command the file alone is complete.  The
daemon keeps its journal (`keep_journal`) and folds it in once its writes pause for
`compaction_lag` (longer the larger the file: a few seconds at 10,000 jobs), or once the journal
holds a quarter of the file's size, and when it stops.  Rewriting costs little CPU: each job's
line is kept, encoded, with the job object it was encoded from, and only the jobs changed since
are encoded again.

The file keeps its latest serial (with its journal) and the backup, not every version.

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
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from pydantic import ValidationError

from reconciler.common import fileops
from reconciler.common.errors import LockHeldError, ReconcilerError, StateError
from reconciler.common.limits import parse_seconds
from reconciler.state.backend import Version
from reconciler.state.document import (
    REBUILD_HINT,
    JobLines,
    encode_changes,
    encode_state,
    encoded,
    parse_state,
    with_changes,
)
from reconciler.state.model import FORMAT_VERSION, State


def new_state(owner: str | None = None) -> State:
    return State(lineage=str(uuid.uuid4()), owner=owner)


def journal_path(path: Path) -> Path:
    return path.with_name(path.name + ".journal")


@dataclass(frozen=True)
class Journal:
    """The journal beside a state file as last read or written: the base it continues, and how
    far its whole lines go."""

    base_serial: int
    base_lineage: str
    base_size: int
    base_crc: int
    end: int = 0  # bytes of whole, good lines (a torn tail beyond is cut off before the next append)
    entries: int = 0  # writes after the header
    last_at: float | None = None  # unix time of the latest write in it

    def continues(self, state: State) -> bool:
        return (self.base_serial, self.base_lineage) == (state.serial, state.lineage)


# The last state written (or read) per path, with the identity of the file and the journal then.
# Our writes go to a new inode (an atomic replace) or append to the journal, under the state
# lock, so an unchanged identity means unchanged bytes: a daemon pass reads the state several
# times, and at 10,000 jobs each parse is a second. A file someone else wrote in the last two
# seconds is not remembered: an edit in place within one tick of the filesystem's clock keeps
# its identity.
Identity = tuple[tuple[int, ...] | None, tuple[int, ...] | None]


@dataclass(frozen=True)
class _Seen:
    identity: Identity
    state: State
    journal: Journal | None  # None: no journal continues this file
    base: Journal  # the file itself: serial, lineage, size, checksum (a journal's header if started)


_known: dict[Path, _Seen] = {}
_KNOWN_PATHS = 8
_SETTLED_NS = 2_000_000_000
# Each job's encoded line, with the object it was encoded from: compaction encodes only the
# jobs that changed since (an identity check).
_lines: dict[Path, JobLines] = {}


def _stat(path: Path) -> tuple[int, ...] | None:
    try:
        found = os.stat(path)
    except OSError:
        return None
    return (found.st_dev, found.st_ino, found.st_size, found.st_mtime_ns, found.st_ctime_ns)


def _identity(path: Path) -> Identity:
    return _stat(path), _stat(journal_path(path))


def _remember(path: Path, seen: _Seen | None) -> None:
    _known.pop(path, None)
    if seen is not None and seen.identity[0] is not None:
        _known[path] = seen
        while len(_known) > _KNOWN_PATHS:
            forgotten = next(iter(_known))
            del _known[forgotten]
            _lines.pop(forgotten, None)


def read_state(path: Path) -> State:
    """The state on disk (the file, then its journal); a missing file is an empty state, a
    damaged one an error."""
    return _seen(path).state


def _seen(path: Path) -> _Seen:
    identity = _identity(path)
    known = _known.get(path)
    if known is not None and known.identity == identity:
        return known
    raw, state = _read_state(path)
    base = Journal(state.serial, state.lineage, len(raw), zlib.crc32(raw))
    state, journal = _replay(path, base, state) if raw else (state, None)
    seen = _Seen(identity, state, journal, base)
    # The journal is only ever appended to (its size moves with every write): the file's own
    # age is what an edit in place could hide behind, unless it is the very file known already.
    same_file = known is not None and known.identity[0] == identity[0]
    settled = identity[0] is not None and (same_file or time.time_ns() - identity[0][4] > _SETTLED_NS)
    _remember(path, seen if settled else None)  # stat before read: a later write only misses
    return seen


def _read_state(path: Path) -> tuple[bytes, State]:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return b"", new_state()
    except OSError as error:
        raise StateError(f"{path}: cannot read the state file ({error.strerror})") from None
    fast = _current_format(raw)
    if fast is not None:
        return raw, fast
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise StateError(f"{path}: state file is damaged (not JSON); kept as is; {_recovery(path)}") from None
    except RecursionError:  # `[[[[…` a thousand deep: no state of ours nests like that
        message = f"{path}: state file is damaged (nested too deeply); kept as is; {_recovery(path)}"
        raise StateError(message) from None
    return raw, parse_state(data, str(path), "state file", _recovery(path))


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


# --- the journal: `<crc32 hex> <json>` per line, the first a header naming the file it continues
JOURNAL_VERSION = 1


def _line(payload: bytes) -> bytes:
    return b"%08x %s\n" % (zlib.crc32(payload), payload)


def _good_lines(raw: bytes) -> Iterator[tuple[dict[str, Any], int]]:
    """(entry, end offset) of each whole line whose checksum holds, up to the first that does not."""
    start = 0
    while (stop := raw.find(b"\n", start)) >= 0:
        line = raw[start:stop]
        try:
            good = line[8:9] == b" " and int(line[:8], 16) == zlib.crc32(line[9:])
            entry = orjson.loads(line[9:]) if good else None
        except (ValueError, orjson.JSONDecodeError):
            return
        if not isinstance(entry, dict):
            return
        yield entry, stop + 1
        start = stop + 1


def _replay(path: Path, base: Journal, state: State) -> tuple[State, Journal | None]:
    """The state `path`'s journal brings the file's `state` to; the journal as found, or None when
    there is none, or it continues another file."""
    where = journal_path(path)
    try:
        raw = where.read_bytes()
    except FileNotFoundError:
        return state, None
    except OSError as error:
        raise StateError(f"{where}: cannot read the state's journal ({error.strerror})") from None
    lines = _good_lines(raw)
    header, end = next(lines, ({}, 0))
    if _header_journal(header, where) != base:
        return state, None
    changes: list[dict[str, Any]] = []
    serial, last_at = state.serial, None
    for entry, stop in lines:
        if entry.get("serial") != serial + 1 or entry.get("lineage") != state.lineage:
            break
        changes.append(entry.get("changes") or {})
        serial, end, last_at = serial + 1, stop, entry.get("at")
    if changes:
        state = with_changes(state, changes, serial, str(where))
    stamp = float(last_at) if isinstance(last_at, (int, float)) else None
    return state, replace(base, end=end, entries=len(changes), last_at=stamp)


def _header_journal(header: dict[str, Any], where: Path) -> Journal | None:
    version = header.get("format_version")
    if isinstance(version, int) and version > FORMAT_VERSION:
        raise StateError(
            f"{where}: state format_version {version} is newer than this reconciler understands "
            f"({FORMAT_VERSION}); upgrade reconciler"
        )
    base = header.get("base")
    if header.get("journal") != JOURNAL_VERSION or not isinstance(base, dict):
        return None
    try:
        return Journal(int(base["serial"]), str(base["lineage"]), int(base["size"]), int(base["crc32"]))
    except (KeyError, TypeError, ValueError):
        return None


def write_state(path: Path, state: State) -> State:
    """Writes `state` whole with the serial bumped and returns what was written."""
    written = state.model_copy(update={"serial": state.serial + 1, "format_version": FORMAT_VERSION})
    return _write_whole(path, written)


def _write_whole(path: Path, state: State) -> State:
    """The file replaced by `state` as it is (the backup kept), its journal removed."""
    encoded = encode_state(state, _lines.setdefault(path, JobLines()))
    _known.pop(path, None)
    with fileops.replacing(path, durable=True, before_replace=lambda: _keep_backup(path)) as out:
        out.write(encoded)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(journal_path(path))  # stale now: its header names the file replaced
    base = Journal(state.serial, state.lineage, len(encoded), zlib.crc32(encoded))
    _remember(path, _Seen(_identity(path), state, None, base))  # still under the state lock
    return state


def append_state(path: Path, state: State) -> State | None:
    """Writes `state` (serial bumped) as a journal line holding only what changed since the state
    last read or written here; None when that is not what is on disk (write it whole)."""
    known = _known.get(path)
    if known is None or known.identity != _identity(path) or known.identity[0] is None:
        return None
    previous = known.state
    if (state.serial, state.lineage) != (previous.serial, previous.lineage):
        return None
    written = state.model_copy(update={"serial": state.serial + 1, "format_version": FORMAT_VERSION})
    changes = encode_changes(previous, written, _lines.setdefault(path, JobLines()))
    entry = b'{"at":%s,"changes":%s,"lineage":%s,"serial":%d}' % (
        encoded(round(time.time(), 3)),
        changes,
        encoded(written.lineage),
        written.serial,
    )
    _known.pop(path, None)
    journal = _appended(path, known, _line(entry))
    _remember(path, _Seen(_identity(path), written, journal, known.base))
    return written


def _appended(path: Path, known: _Seen, line: bytes) -> Journal:
    where = journal_path(path)
    journal = known.journal
    if journal is None:  # a new journal, its header naming the file it continues
        base = known.base
        named = {"serial": base.base_serial, "lineage": base.base_lineage, "size": base.base_size}
        header = {
            "journal": JOURNAL_VERSION,
            "format_version": FORMAT_VERSION,
            "base": named | {"crc32": base.base_crc},
        }
        first = _line(encoded(header))
        fileops.write_bytes(where, first + line, durable=True)
        return replace(base, end=len(first) + len(line), entries=1, last_at=time.time())
    try:
        with where.open("r+b") as out:
            out.truncate(journal.end)  # a torn line a crash left is cut off, not continued
            out.seek(journal.end)
            out.write(line)
            out.flush()
            os.fsync(out.fileno())
    except OSError as error:
        raise StateError(f"{where}: cannot write the state's journal ({error.strerror})") from None
    return replace(journal, end=journal.end + len(line), entries=journal.entries + 1, last_at=time.time())


COMPACTION_SECONDS = 0.25  # a small state file is brought up to date this soon after writes pause…
COMPACTION_BYTES_PER_SECOND = 10_000_000  # …a larger one later: rewriting it is a share of the time
COMPACTION_SHARE = 4  # …or once the journal holds a quarter of the file's size, writes or not


def compaction_lag(base_size: int) -> float:
    """How long the daemon's journal must go unwritten before it is folded into a file of this
    size (2.6 s at 10,000 jobs, 24 s at 100,000)."""
    return COMPACTION_SECONDS + base_size / COMPACTION_BYTES_PER_SECOND


def compact(path: Path, force: bool = False) -> float | None:
    """Folds the journal into the file when it is due (or `force`); else the seconds until it is
    due; None when there is nothing to fold.  The caller holds the state lock.

    Due once the writes pause (compaction_lag after the latest), or once the journal holds a
    COMPACTION_SHARE of the file.  Folding rewrites every job, so it is not done while changes
    keep coming (a daemon adding one spec after another at 100,000 jobs rewrote 230 MB every
    24 s), and a stream of changes that never pauses costs at most COMPACTION_SHARE bytes
    rewritten per byte appended: what changed, not what exists."""
    seen = _seen(path)
    journal = seen.journal
    if journal is None or journal.entries == 0:
        return None
    left = (journal.last_at or 0.0) + compaction_lag(journal.base_size) - time.time()
    share = max(journal.base_size // COMPACTION_SHARE, 1 << 20)
    if not force and left > 0 and journal.end < share:
        return left
    _write_whole(path, seen.state)
    return None


def remove_stale_temps(path: Path) -> None:
    """A writer killed mid-write leaves `.<name>[.journal].<pid>.tmp` behind; the pid says whose."""
    for temp in path.parent.glob(f".{path.name}.*tmp"):
        pid = temp.name.rsplit(".", 2)[-2]
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
    with contextlib.suppress(FileNotFoundError):  # it continued the file set aside: kept with it
        os.replace(journal_path(path), journal_path(kept))
    _known.pop(path, None)
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
    """`keep_journal`: the daemon's; a write only appends to the journal, which `settle` folds in
    when due.  Otherwise the journal is folded in as the writer lock is let go."""

    def __init__(self, path: Path, owner_tag: str | None, *, keep_journal: bool = False) -> None:
        self.path, self.owner_tag, self.keep_journal = path, owner_tag, keep_journal
        self._locked = False

    @property
    def where(self) -> str:
        return str(self.path)

    def read(self) -> State:
        return read_state(self.path)

    def write(self, state: State) -> State:
        written = append_state(self.path, state) if self._locked else None
        return written if written is not None else write_state(self.path, state)

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
            self._locked = True
            try:
                yield
            except BaseException:
                if not self.keep_journal:  # what was written stays; the error is what is told
                    with contextlib.suppress(ReconcilerError, OSError):
                        compact(self.path, force=True)
                raise
            else:
                if not self.keep_journal:
                    compact(self.path, force=True)
            finally:
                self._locked = False

    def settle(self, force: bool = False) -> float | None:
        """Folds the journal into the file when due (or `force`); else seconds until it is due,
        None when nothing is owed.  The caller holds the writer lock."""
        return compact(self.path, force)

    def leadership(self) -> DaemonLock:
        return DaemonLock(self.path)

    def history(self, limit: int) -> list[Version]:
        """The file keeps two versions at most: its latest (with its journal) and its backup."""
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
            if candidate.exists() and read_state(candidate).serial == serial:
                return read_state(candidate)
        raise StateError(
            f"{self.path}: serial {serial} is not kept; a state file keeps only its latest serial "
            "and one backup (a PostgreSQL state keeps every serial)"
        )


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
