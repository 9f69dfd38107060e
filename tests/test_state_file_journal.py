"""The state file is written by what changed: a write appends the records of the jobs it changed
to the journal beside the file (told by identity), and the journal is folded into the file when
a command lets go of the writer lock, or when the daemon's is due.  A torn line is a write that
never happened; a file replaced by another tool makes the journal stale.  Readers in other
processes read the file and the journal, as every reconciler command does."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import zlib
from pathlib import Path

from reconciler.state.file import FileBackend, journal_path, read_state, write_state
from reconciler.state.model import (
    Admitted,
    IntentKey,
    IntentState,
    JobState,
    PendingCreate,
    QueueBook,
    QueueLearning,
    State,
)

READER = """
import json, sys
from pathlib import Path
from reconciler.state.file import read_state
state = read_state(Path(sys.argv[1]))
print(json.dumps({"serial": state.serial, "statuses": {n: j.status for n, j in state.jobs.items()}}))
"""


def _jobs(count: int, status: str = "completed") -> dict[str, JobState]:
    return {
        f"job-{i:03d}": JobState(generation="g1", provider="sandbox", status=status) for i in range(count)
    }


def _seed(path: Path, count: int = 50) -> State:
    return write_state(path, State(lineage="l-1", owner="tag").with_jobs(_jobs(count)))


def _changed(state: State, name: str, status: str) -> State:
    return state.with_jobs({**state.jobs, name: state.jobs[name].model_copy(update={"status": status})})


def _entries(path: Path) -> list[dict[str, object]]:
    lines = journal_path(path).read_bytes().splitlines()
    return [json.loads(line[9:]) for line in lines[1:]]


def _read_elsewhere(path: Path) -> dict[str, object]:
    done = subprocess.run(
        [sys.executable, "-c", READER, str(path)], capture_output=True, text=True, check=True
    )
    result: dict[str, object] = json.loads(done.stdout)
    return result


def test_a_write_appends_only_the_records_of_the_jobs_it_changed(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    _seed(path)
    file_before = path.read_bytes()
    backend = FileBackend(path, "tag", keep_journal=True)
    with backend.writer_lock("test"):
        state = backend.read()
        written = backend.write(_changed(state, "job-007", "cancelled"))
        written = backend.write(written.with_jobs({k: v for k, v in written.jobs.items() if k != "job-010"}))

    assert path.read_bytes() == file_before  # the daemon's journal is not folded in yet
    first, second = _entries(path)
    assert first["changes"] == {
        "jobs": {"job-007": written.jobs["job-007"].model_dump(mode="json")},
        "set": {},
    }
    assert second["changes"] == {"jobs": {"job-010": None}, "set": {}}
    assert (first["serial"], second["serial"]) == (state.serial + 1, state.serial + 2)
    seen = _read_elsewhere(path)
    assert seen["serial"] == written.serial
    statuses = seen["statuses"]
    assert isinstance(statuses, dict) and statuses["job-007"] == "cancelled" and "job-010" not in statuses
    assert len(statuses) == 49


def test_a_command_folds_the_journal_into_the_file_as_it_lets_go_of_the_lock(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    _seed(path)
    backend = FileBackend(path, "tag")
    with backend.writer_lock("test"):
        written = backend.write(_changed(backend.read(), "job-001", "failed"))
        assert journal_path(path).exists()
    assert not journal_path(path).exists()
    document = json.loads(path.read_text())
    assert document["serial"] == written.serial and document["jobs"]["job-001"]["status"] == "failed"
    assert json.loads(path.with_name("state.json.backup").read_text())["serial"] == written.serial - 1


def test_a_torn_journal_line_is_a_write_that_never_happened_and_is_cut_off(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    _seed(path)
    backend = FileBackend(path, "tag", keep_journal=True)
    with backend.writer_lock("test"):
        first = backend.write(_changed(backend.read(), "job-001", "failed"))
    with journal_path(path).open("ab") as journal:  # a crash in the middle of the next append
        journal.write(b'0badc0de {"at":1,"changes":{"jobs":{"job-002":{"gen')

    assert _read_elsewhere(path)["serial"] == first.serial
    with backend.writer_lock("test"):
        state = backend.read()
        assert state.serial == first.serial and state.jobs["job-002"].status == "completed"
        second = backend.write(_changed(state, "job-003", "expired"))
    assert len(_entries(path)) == 2  # the torn bytes were cut off before the append
    seen = _read_elsewhere(path)
    assert seen["serial"] == second.serial
    assert isinstance(seen["statuses"], dict) and seen["statuses"]["job-003"] == "expired"


def test_a_file_another_tool_wrote_whole_makes_the_journal_stale(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    _seed(path)
    backend = FileBackend(path, "tag", keep_journal=True)
    with backend.writer_lock("test"):
        backend.write(_changed(backend.read(), "job-001", "failed"))
    document = json.loads(path.read_text())  # an older tool reads the file alone and writes it back
    document["serial"] += 5
    path.write_text(json.dumps(document, indent=2))

    seen = _read_elsewhere(path)
    assert seen["serial"] == document["serial"]
    assert isinstance(seen["statuses"], dict) and seen["statuses"]["job-001"] == "completed"


def test_the_daemons_journal_is_folded_in_when_due_and_not_before(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    _seed(path, 5_000)  # a file large enough that folding waits a while
    backend = FileBackend(path, "tag", keep_journal=True)
    with backend.writer_lock("test"):
        written = backend.write(_changed(backend.read(), "job-001", "failed"))
        due = backend.settle()
    assert due is not None and due > 0 and journal_path(path).exists()
    with backend.writer_lock("test"):
        assert backend.settle(force=True) is None
    assert not journal_path(path).exists()
    assert json.loads(path.read_text())["jobs"]["job-001"]["status"] == "failed"
    assert read_state(path) == written


def _with_intent(state: State, name: str) -> State:
    intent = PendingCreate.planned("a-1", IntentKey.of(name, "g1", None, 0, 1), 5).uploaded("file-1")
    job = state.jobs[name].model_copy(update={"pending": (intent,)})
    return state.with_jobs({**state.jobs, name: job})


def test_a_journal_line_written_before_intents_had_a_state_reads_as_todays(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    _seed(path)
    backend = FileBackend(path, "tag", keep_journal=True)
    with backend.writer_lock("test"):
        backend.write(_with_intent(backend.read(), "job-007"))
    header, line = journal_path(path).read_bytes().splitlines()
    entry = json.loads(line[9:])
    del entry["changes"]["jobs"]["job-007"]["pending"][0]["state"]  # as format 3 wrote it
    payload = json.dumps(entry, separators=(",", ":")).encode()
    journal_path(path).write_bytes(header + b"\n" + b"%08x %s\n" % (zlib.crc32(payload), payload))

    (intent,) = read_state(path).jobs["job-007"].pending
    assert intent.state is IntentState.UPLOADED and intent.input_file_id == "file-1"


def test_the_daemons_journal_is_not_folded_while_writes_keep_coming(tmp_path: Path) -> None:
    """Folding rewrites every job: the daemon waits for its writes to pause (the wait starts
    again with each write), so a change after another is never followed by a whole rewrite."""
    path = tmp_path / "state.json"
    _seed(path, 20_000)  # a file large enough that folding waits a while
    inode = path.stat().st_ino
    backend = FileBackend(path, "tag", keep_journal=True)
    with backend.writer_lock("test"):
        written = backend.write(_changed(backend.read(), "job-001", "failed"))
        first_due = backend.settle()
    assert first_due is not None
    time.sleep(first_due / 2)
    with backend.writer_lock("test"):
        backend.write(_changed(written, "job-002", "failed"))
        second_due = backend.settle()
    assert second_due is not None and second_due > first_due * 0.75  # counted from the latest write
    assert path.stat().st_ino == inode and len(_entries(path)) == 2


def test_a_daemons_journal_that_never_pauses_is_folded_once_it_holds_a_quarter_of_the_file(
    tmp_path: Path,
) -> None:
    """Writes that never pause are folded in by size: what is rewritten is bounded by what was
    appended, not by how long the daemon has run."""
    path = tmp_path / "state.json"
    _seed(path, 20)
    backend = FileBackend(path, "tag", keep_journal=True)
    big = "x" * 100_000  # a record of ~100 KB: eleven writes pass the 1 MiB floor
    rewritten = 0
    with backend.writer_lock("test"):
        state = backend.read()
        for write in range(40):
            job = state.jobs["job-001"].model_copy(update={"status": "failed", "generation": f"{big}{write}"})
            state = backend.write(state.with_jobs({**state.jobs, "job-001": job}))
            inode = path.stat().st_ino
            backend.settle()
            rewritten += path.stat().st_ino != inode
    assert rewritten == 3  # after 11, 22 and 33 writes: 1.1 MB appended for each fold
    assert read_state(path) == state


def test_a_write_carries_the_queue_book_entries_it_changed_and_a_reader_sees_the_whole_book(
    tmp_path: Path,
) -> None:
    """The queue book (learnt limits, admitted estimates, places, every job's turn) is part of what
    a write changes: the journal line holds the entries that changed, not the whole book (its
    order holds every job), and a reader of the file and its journal sees the whole book."""
    path = tmp_path / "state.json"
    seeded = _seed(path)
    order = {name: float(i) for i, name in enumerate(seeded.jobs)}
    with FileBackend(path, "tag").writer_lock("test"):  # a command: folded in as it lets go
        FileBackend(path, "tag").write(read_state(path).model_copy(update={"queue": QueueBook(order=order)}))
    backend = FileBackend(path, "tag", keep_journal=True)
    admitted = Admitted(provider="sandbox", model="gpt-4o-mini", tokens=900, requests=3)
    with backend.writer_lock("test"):
        state = backend.read()
        book = state.queue.model_copy(
            update={
                "learnt": {"sandbox": {"gpt-4o-mini": QueueLearning(tokens=90_000)}},
                "admitted": {"job-001|g1|default|0|1": admitted},
                "order": {k: v for k, v in state.queue.order.items() if k != "job-002"} | {"job-new": 99.0},
            }
        )
        written = backend.write(state.model_copy(update={"queue": book}))

    (entry,) = _entries(path)
    assert entry["changes"]["queue"] == {  # type: ignore[index]
        "admitted": {"job-001|g1|default|0|1": admitted.model_dump(mode="json")},
        "order": {"job-new": 99.0, "job-002": None},
        "learnt": {"sandbox": {"gpt-4o-mini": QueueLearning(tokens=90_000).model_dump(mode="json")}},
    }
    done = subprocess.run(
        [sys.executable, "-c", QUEUE_READER, str(path)], capture_output=True, text=True, check=True
    )
    assert json.loads(done.stdout) == written.queue.model_dump(mode="json")


QUEUE_READER = """
import json, sys
from pathlib import Path
from reconciler.state.file import read_state
print(json.dumps(read_state(Path(sys.argv[1])).queue.model_dump(mode="json")))
"""
