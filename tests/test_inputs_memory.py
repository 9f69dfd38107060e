"""What a pass reads before it plans stays small per job: the state read into records, and the
specs loaded into documents and desired jobs.  Counted in bytes the allocator hands out for
each added job (tracemalloc, the same on every run of one build), never timed.  Before this
round a converged job's record took 7.2 KB here and its spec and desired job 6.0 KB."""

from __future__ import annotations

import gc
import itertools
import shutil
import tracemalloc
from collections.abc import Callable
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

import pytest
from pydantic import ValidationError

from reconciler.engine.workspace import prepare
from reconciler.specs import loader
from reconciler.specs.models import BatchJobSpec
from reconciler.state.document import JobLines, encode_state, encoded
from reconciler.state.file import new_state, read_state, write_state
from reconciler.state.model import Definition, JobState, State
from tests.fixtures.repo import MakeRepo

KIB = 1024


def _converged(index: int) -> JobState:
    """A job as a pass over a converged repo records it: one batch, one run, its definition."""
    batch = f"batch_{index:032x}"
    counts = {"completed": 0, "failed": 0, "total": 5}
    return JobState.model_validate(
        {
            "generation": f"{index:016x}",
            "provider": "sandbox",
            "status": "in_progress",
            "request_counts": counts,
            "batches": [
                {
                    "batch_id": batch,
                    "input_file_id": f"file-{index:032x}",
                    "status": "in_progress",
                    "request_counts": counts,
                    "attempt": f"{index:012x}",
                    "run": "default",
                    "created_at": 1_796_544_968 + index,
                    "usage": {"input_tokens": 0, "output_tokens": 0, "total_tokens": 0},
                }
            ],
            "definition": {
                "completion_window": "24h",
                "endpoint": "/v1/chat/completions",
                "input": {"model": "gpt-4o-mini", "requests": 5, "sha256": f"{index:064x}"},
                "metadata": {"description": f"job {index}"},
                "provider": "sandbox",
                "run": None,
                "split": None,
            },
            "history": [
                {
                    "run": "default",
                    "generation": f"{index:016x}",
                    "status": "in_progress",
                    "request_counts": counts,
                    "batches": [batch],
                    "started_at": 1_796_544_968 + index,
                }
            ],
            "prices": {"input": 0.075, "output": 0.3, "cached_input": 0.0375, "max_output_tokens": 16384},
            "run": "default",
            "observed_at": "2026-12-06T08:16:33Z",
        }
    )


def _bytes_held(make: Callable[[], object]) -> int:
    """What `make`'s result holds, as allocated while it was made and still alive after."""
    tracemalloc.start()
    try:
        made = make()
        gc.collect()  # only what is alive: loading pauses the collector
        held, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    del made
    return held


def _state_file(folder: Path, jobs: int) -> Path:
    written = folder / "written.json"
    write_state(written, new_state("me").with_jobs({f"job-{i:05d}": _converged(i) for i in range(jobs)}))
    copy = folder / f"state-{jobs}.json"  # a file this process never wrote: read, not remembered
    shutil.copyfile(written, copy)
    return copy


def test_a_converged_jobs_record_holds_under_four_and_a_half_kib_once_read(tmp_path: Path) -> None:
    small, large = _state_file(tmp_path, 200), _state_file(tmp_path, 600)
    per_job = (_bytes_held(lambda: read_state(large)) - _bytes_held(lambda: read_state(small))) / 400
    # 7.2 KB before records shared their set of given fields, 4.8 KB while the definition was
    # held as three dicts (now 3.9 KB: its JSON text)
    assert per_job < 4.5 * KIB


def _lines_kept(state_file: Path) -> int:
    state = read_state(state_file)
    return _bytes_held(lambda: _encoded_with_lines(state))


def _encoded_with_lines(state: State) -> JobLines:
    lines = JobLines()  # as a writer keeps them between writes (the daemon's, for its whole life)
    encode_state(state, lines)
    return lines


def test_the_lines_a_state_writer_keeps_hold_under_two_kib_a_job_and_read_as_before(tmp_path: Path) -> None:
    small, large = _state_file(tmp_path, 200), _state_file(tmp_path, 600)
    per_job = (_lines_kept(large) - _lines_kept(small)) / 400
    assert per_job < 2 * KIB  # 9.8 KB before: each record's bytes from orjson kept its 4 KB buffer
    state = read_state(small)
    lines = _encoded_with_lines(state)
    job = state.jobs["job-00007"]
    assert lines.of("job-00007", job) == encoded(job.model_dump(mode="json"))
    assert lines.line("job-00007", job) == b'    "job-00007": ' + lines.of("job-00007", job)


def test_a_definition_read_from_the_state_reads_compares_and_is_written_as_its_dict(tmp_path: Path) -> None:
    path = _state_file(tmp_path, 2)
    state = read_state(path)
    definition = state.jobs["job-00000"].definition
    given = _converged(0).model_dump(mode="json")["definition"]
    assert isinstance(definition, Definition)  # held as its text
    assert definition == given and dict(definition) == given and definition != {**given, "run": "r"}
    assert definition["input"]["sha256"] == f"{0:064x}" and definition.get("nothing") is None
    assert state.jobs["job-00001"].definition != definition
    assert encode_state(state) == path.read_bytes()  # the file's bytes, as read
    huge = {"metadata": {"d": "é"}, "split": [2**70, 1]}  # beyond 64 bits: orjson cannot write it
    record = JobState(generation="g", provider="p", status="none", definition=huge)
    assert record.definition == huge and record.model_dump()["definition"] == huge
    copied = record.model_copy(update={"definition": given})  # not validated: a plain dict
    assert copied.model_dump(mode="json")["definition"] == given


def test_records_read_still_dump_every_field_and_copy_apart(tmp_path: Path) -> None:
    state = read_state(_state_file(tmp_path, 2))
    first, second = state.jobs["job-00000"], state.jobs["job-00001"]
    assert first.model_dump(mode="json") == _converged(0).model_dump(mode="json")
    changed = first.model_copy(update={"status": "completed"})
    assert (changed.status, first.status, second.status) == ("completed", "in_progress", "in_progress")
    assert changed.model_fields_set == first.model_fields_set == set(JobState.model_fields)


@pytest.fixture
def old_enough(monkeypatch: pytest.MonkeyPatch) -> None:
    """Spec files count as settled at once (normally after 2 s), so the spec cache keeps them."""
    monkeypatch.setattr(loader, "RECENT_SECONDS", -1.0)


def _prepared_bytes(make_repo: MakeRepo, jobs: int) -> int:
    repo = make_repo(f"repo-{jobs}")
    repo.write_input("data/shared.jsonl", 5)
    for index in range(jobs):
        repo.write_job(
            f"job-{index:05d}",
            input="data/shared.jsonl",
            labels={"team": "bench"},
            metadata={"d": str(index)},
        )
    prepare(repo.paths, "me")  # fills the spec cache, as a first command does
    return _bytes_held(lambda: prepare(repo.paths, "me"))


def test_a_one_shot_commands_desired_job_holds_under_two_kib_once_its_spec_is_let_go(
    make_repo: MakeRepo, old_enough: None
) -> None:
    per_job = (_prepared_bytes(make_repo, 300) - _prepared_bytes(make_repo, 100)) / 200
    # 6.0 KB before models shared their sets of given fields and kept slots; 3.6 KB while the
    # workspace kept every job's document, which only the daemon reads again (now 1.3 KB)
    assert per_job < 2 * KIB


def test_a_spec_still_knows_which_fields_it_was_given() -> None:
    bare = {"endpoint": "/v1/chat/completions", "input": "a.jsonl"}
    given = BatchJobSpec.model_validate(bare | {"priority": 3})
    also = BatchJobSpec.model_validate(bare | {"priority": 4})
    assert given.model_fields_set == also.model_fields_set == {"endpoint", "input", "priority"}
    assert BatchJobSpec.model_validate(bare).model_fields_set == {"endpoint", "input"}
    copied = given.model_copy(update={"suspend": True})  # adds to a copy of the shared set
    assert copied.model_fields_set == {"endpoint", "input", "priority", "suspend"}
    assert given.model_fields_set == also.model_fields_set == {"endpoint", "input", "priority"}
    with pytest.raises(ValidationError, match="only apply with a schedule"):
        BatchJobSpec.model_validate(bare | {"timezone": "Europe/Berlin"})


def _refused_as_absolute(value: str) -> bool:
    spec: dict[str, Any] = {"endpoint": "/v1/chat/completions", "input": value}
    try:
        BatchJobSpec.model_validate(spec)
    except ValidationError as error:
        return "is absolute" in str(error)
    return False


def test_an_input_is_absolute_exactly_when_pathlib_says_so_on_posix_or_windows() -> None:
    letters = ["/", "\\", ":", "c", "Z", "1", ".", "é", "?"]
    for size in (1, 2, 3, 4):
        for value in map("".join, itertools.product(letters, repeat=size)):
            anchored = PurePosixPath(value).is_absolute() or bool(PureWindowsPath(value).anchor)
            assert _refused_as_absolute(value) == anchored, value
