"""The state file's layout: sorted keys, one job per line (a diff shows one line per job that
changed), one trailing newline, the same document `json.dumps` would write, whichever encoder
wrote it."""

from __future__ import annotations

import json
from pathlib import Path

from reconciler.state.file import new_state, read_state, write_state
from reconciler.state.model import BatchRecord, JobState, State


def _state(counts: dict[str, int], description: str = "nightly") -> State:
    batch = BatchRecord(batch_id="batch_1", status="completed", request_counts=counts, created_at=1)
    job = JobState(
        generation="g1",
        provider="sandbox",
        status="completed",
        request_counts=counts,
        batches=(batch,),
        definition={"zeta": 1, "alpha": {"b": 2, "a": description}},
    )
    return new_state("owner-tag").with_jobs({"zz": job, "aa": job})


def test_the_state_file_is_sorted_with_one_line_per_job(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    written = write_state(path, _state({"total": 3, "completed": 3}))
    document = written.model_dump(mode="json")
    lines = path.read_text().splitlines()
    assert lines[lines.index('  "jobs": {') + 1 :][:2] == [
        f'    "aa": {json.dumps(document["jobs"]["aa"], separators=(",", ":"), sort_keys=True)},',
        f'    "zz": {json.dumps(document["jobs"]["zz"], separators=(",", ":"), sort_keys=True)}',
    ]
    assert json.loads(path.read_text()) == document
    keys = [line.split('"')[1] for line in lines if line.startswith('  "')]
    assert keys == sorted(document)
    assert path.read_text().endswith("}\n") and read_state(path) == written


def test_non_ascii_text_is_written_as_utf8_and_read_back(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    written = write_state(path, _state({"total": 1}, description="Zürich 夜"))
    assert "Zürich 夜" in path.read_text(encoding="utf-8")
    assert read_state(path) == written


def test_a_count_beyond_64_bits_from_a_server_is_still_written(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    written = write_state(path, _state({"total": 2**70}))
    assert json.loads(path.read_text())["jobs"]["aa"]["request_counts"]["total"] == 2**70
    assert read_state(path) == written
