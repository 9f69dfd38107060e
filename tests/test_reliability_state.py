"""State damage: a truncated, empty, garbage, wrongly shaped or future-format state file.

Every command that reads it stops with one clear line, sends nothing that mutates, writes
nothing, and leaves the damaged file exactly as it was.  `reconcile --rebuild-state` then
rebuilds the state from the live list with zero creates, keeping the damaged file aside;
the previous good copy (`state.json.backup`) is kept beside the state throughout.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from reconciler.sandbox import Sandbox
from reconciler.state.model import State
from tests.fixtures.repo import MakeRepo, RunCli, UserRepo
from tests.reconcile_helpers import batches, mutating, state_of, use_sandbox

JOBS = ("nightly-eval", "ab-test", "embeddings")


def truncated(good: bytes) -> bytes:
    return good[: len(good) // 2]


DAMAGE = {
    "truncated": (truncated, "state file is damaged (not JSON)"),
    "empty": (lambda good: b"", "state file is damaged (not JSON)"),
    "garbage": (lambda good: os.urandom(64) + b"\x00\xff", "state file is damaged (not JSON)"),
    "not-an-object": (lambda good: b'["jobs"]', "state file is damaged (at top level)"),
    "wrong-shape": (lambda good: json.dumps({**json.loads(good), "jobs": 5}).encode(), "damaged (at jobs)"),
    "nested-too-deeply": (lambda good: b"[" * 200_000, "state file is damaged (nested too deeply)"),
    "version-1-wrong-shape": (
        lambda good: json.dumps(
            {**json.loads(good), "format_version": 1, "jobs": {"a": {"batches": 5}}}
        ).encode(),
        "state file is damaged (at top level)",
    ),
    "future-format": (
        lambda good: json.dumps({**json.loads(good), "format_version": 99}).encode(),
        "state format_version 99 is newer than this reconciler understands",
    ),
}


@pytest.fixture
def applied(
    make_repo: MakeRepo, sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch, run_cli: RunCli
) -> UserRepo:
    """A repo whose jobs have batches (kept running), applied twice so a backup exists."""
    use_sandbox(monkeypatch, sandbox)
    sandbox.configure(validation_seconds=600)
    repo = make_repo()
    for name in JOBS:
        repo.write_job(name)
    assert run_cli("apply", "--auto-approve", *repo.args()).exit_code == 0
    assert run_cli("reconcile", *repo.args()).exit_code == 0
    return repo


def backup_of(repo: UserRepo) -> Path:
    return repo.state.with_name("state.json.backup")


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_a_damaged_state_stops_every_command_in_one_line_and_is_kept_untouched(
    applied: UserRepo, sandbox: Sandbox, run_cli: RunCli, damage: str
) -> None:
    spoil, words = DAMAGE[damage]
    backup = backup_of(applied).read_bytes()
    State.model_validate_json(backup)  # the previous good copy is there before anything goes wrong
    damaged = spoil(applied.state.read_bytes())
    applied.state.write_bytes(damaged)
    before = applied.written()
    sandbox.reset_counts()
    for command in (["plan"], ["apply", "--auto-approve"], ["reconcile"], ["status"]):
        result = run_cli(*command, *applied.args())
        assert result.exit_code == 1, (command, result.stdout)
        (line,) = result.stderr.strip().splitlines()
        assert line.startswith(f"error: {applied.state}: ") and words in line, line
        assert damage == "future-format" or "previous good copy is state.json.backup" in line
    assert mutating(sandbox.request_counts()) == {}
    assert applied.state.read_bytes() == damaged
    assert backup_of(applied).read_bytes() == backup
    assert applied.written() == before


def test_state_show_of_a_state_nested_too_deeply_is_one_line(applied: UserRepo, run_cli: RunCli) -> None:
    applied.state.write_bytes(b"[" * 200_000)
    result = run_cli("state", "show", "2", *applied.args())
    assert result.exit_code == 1
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(f"error: {applied.state}: ") and "Traceback" not in result.stderr


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_rebuild_state_recovers_every_batch_from_the_live_list_with_zero_creates(
    applied: UserRepo, sandbox: Sandbox, run_cli: RunCli, damage: str
) -> None:
    spoil, _ = DAMAGE[damage]
    recorded = {
        j: [b["batch_id"] for b in job["batches"]] for j, job in state_of(applied.root)["jobs"].items()
    }
    damaged = spoil(applied.state.read_bytes())
    applied.state.write_bytes(damaged)
    sandbox.reset_counts()
    result = run_cli("reconcile", "--rebuild-state", *applied.args())
    assert result.exit_code == 0, result.stderr
    assert "Applied: 0 created, 0 cancelled" in result.stdout
    assert mutating(sandbox.request_counts()) == {}
    rebuilt = {
        j: [b["batch_id"] for b in job["batches"]] for j, job in state_of(applied.root)["jobs"].items()
    }
    assert rebuilt == recorded
    (kept,) = applied.state.parent.glob("state.json.damaged-*")
    assert kept.read_bytes() == damaged
    State.model_validate_json(backup_of(applied).read_bytes())
    assert len(batches(sandbox)) == len(JOBS)


def test_a_lost_state_file_is_rebuilt_by_adoption_not_by_creating_again(
    applied: UserRepo, sandbox: Sandbox, run_cli: RunCli
) -> None:
    before = sorted(b.id for b in batches(sandbox))
    applied.state.unlink()
    backup_of(applied).unlink()
    sandbox.reset_counts()
    result = run_cli("reconcile", *applied.args())
    assert result.exit_code == 0, result.stderr
    assert mutating(sandbox.request_counts()) == {}
    assert sorted(b.id for b in batches(sandbox)) == before
    assert "adopt" in result.stdout


def test_a_state_file_that_is_a_folder_is_one_line_not_a_crash(applied: UserRepo, run_cli: RunCli) -> None:
    applied.state.unlink()
    applied.state.mkdir()
    result = run_cli("plan", *applied.args())
    assert result.exit_code == 1
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(f"error: {applied.state}: cannot read the state file")


def test_a_damaged_lock_file_does_not_stop_anyone(applied: UserRepo, run_cli: RunCli) -> None:
    applied.state.with_name("state.json.lock").write_bytes(b"\x00garbage{")
    assert run_cli("reconcile", *applied.args()).exit_code == 0


def test_temp_files_of_killed_writers_are_removed_and_a_live_writers_kept(
    applied: UserRepo, run_cli: RunCli
) -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = applied.state.with_name(f".state.json.{dead.pid}.tmp")
    stale_link = applied.state.with_name(f".state.json.{dead.pid}.backup-tmp")
    live = applied.state.with_name(f".state.json.{os.getppid()}.tmp")
    for temp in (stale, stale_link, live):
        temp.write_text("{half a sta")
    assert run_cli("reconcile", *applied.args()).exit_code == 0
    assert not stale.exists() and not stale_link.exists() and live.exists()
