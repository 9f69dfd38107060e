"""Reading the state file again after our own write costs no parse, and never hides another
writer's version: their write is a new file (or a fresh edit, which is never remembered)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from reconciler.state.file import new_state, read_state, write_state
from reconciler.state.model import JobState

OTHER_WRITER = """
import sys
from pathlib import Path
from reconciler.state.file import read_state, write_state
path = Path(sys.argv[1])
state = read_state(path)
write_state(path, state.model_copy(update={"owner": "someone-else"}))
"""


def _job(status: str) -> JobState:
    return JobState(generation="g1", provider="sandbox", status=status)


def test_the_state_just_written_is_read_back_without_parsing(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    written = write_state(path, new_state("me").with_jobs({"a": _job("completed")}))
    assert read_state(path) is written


def test_another_processes_write_is_read_not_the_remembered_state(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    written = write_state(path, new_state("me").with_jobs({"a": _job("completed")}))
    subprocess.run([sys.executable, "-c", OTHER_WRITER, str(path)], check=True)
    seen = read_state(path)
    assert seen.owner == "someone-else"
    assert seen.serial == written.serial + 1


def test_an_edit_in_place_of_the_same_size_is_read(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    write_state(path, new_state("me").with_jobs({"a": _job("completed")}))
    path.write_text(path.read_text())  # in place: same inode, a fresh ctime
    first = read_state(path)
    path.write_text(path.read_text().replace('"completed"', '"cancelled"'))
    assert read_state(path).jobs["a"].status == "cancelled"
    assert first.jobs["a"].status == "completed"
