"""Concurrency: several processes on one state file, and two repos on one account.

Two `apply`s on one state: the second waits for the lock, or, when told not to wait,
refuses naming the holder; never a duplicate batch.  Two repos with different owner ids
(even with the same job name and input, so the same generation) never see, cancel, adopt
or clean up each other's batches and uploads.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from reconciler.sandbox import Sandbox
from tests.fixtures.daemon import reconciler_command, reconciler_env
from tests.fixtures.repo import MakeRepo, UserRepo
from tests.reconcile_helpers import batches, sdk, state_of, wait_until


def start(
    repo: Any, sandbox: Sandbox, owner: str, *args: str, lock_timeout: str = "60"
) -> subprocess.Popen[str]:
    env = reconciler_env(sandbox, owner, RECONCILER_LOCK_TIMEOUT=lock_timeout)
    command = reconciler_command(*args, *repo.args())
    return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(process: subprocess.Popen[str]) -> tuple[int, str, str]:
    out, err = process.communicate(timeout=120)
    assert "Traceback" not in err, err
    return process.returncode, out, err


def lock_holder(repo: Any) -> dict[str, Any] | None:
    try:
        holder: dict[str, Any] = json.loads(repo.state.with_name("state.json.lock").read_text())
    except (OSError, ValueError):
        return None
    return holder


def owned_units(sandbox: Sandbox, owner_tag: str) -> list[tuple[str, str]]:
    return sorted(
        (b.metadata["reconciler_job"], b.metadata["reconciler_generation"])
        for b in batches(sandbox)
        if (b.metadata or {}).get("reconciler_owner") == owner_tag
    )


@pytest.mark.slow
def test_a_second_apply_that_may_not_wait_refuses_naming_the_holder_and_sends_nothing(
    make_repo: MakeRepo, sandbox: Sandbox, tmp_path: Path
) -> None:
    # Each of the first apply's eight requests takes 2 s while the second starts: the lock is held
    # for far longer than a loaded machine needs to start a process; then it may finish quickly.
    sandbox.configure(latency_seconds=2)
    repo = make_repo()
    for name in ("a", "b", "c", "d"):
        repo.write_job(name)
    first = start(repo, sandbox, "tests/one", "apply", "--auto-approve", "--parallelism", "1")
    wait_until(lambda: (lock_holder(repo) or {}).get("pid") == first.pid, timeout=60)
    second = start(repo, sandbox, "tests/one", "apply", "--auto-approve", lock_timeout="0")
    code, _, err = finish(second)
    assert first.poll() is None, "the first apply was meant to still hold the lock"
    sandbox.configure(latency_seconds=0)
    assert code == 1
    (line,) = err.strip().splitlines()
    assert line.startswith(f"error: state is locked by pid {first.pid} on ") and "reconciler apply" in line
    assert finish(first)[0] == 0
    assert sorted(b.metadata["reconciler_job"] for b in batches(sandbox)) == ["a", "b", "c", "d"]


@pytest.mark.slow
def test_four_applies_started_at_once_wait_their_turn_and_create_each_batch_once(
    make_repo: MakeRepo, sandbox: Sandbox
) -> None:
    sandbox.configure(latency_seconds=0.02)
    repo = make_repo()
    for index in range(8):
        split: dict[str, Any] = {"split": {"max_requests": 2}} if index % 2 else {}
        repo.write_job(f"job-{index}", **split)
    running = [start(repo, sandbox, "tests/one", "apply", "--auto-approve") for _ in range(4)]
    results = [finish(process) for process in running]
    assert [code for code, _, _ in results] == [0, 0, 0, 0], [err for _, _, err in results]
    created = [int(out.split("Applied: ")[1].split(" created")[0]) for _, out, _ in results]
    assert sorted(created) == [0, 0, 0, 12]  # 4 whole jobs + 4 jobs of 2 parts, by one process
    keys = [(b.metadata["reconciler_job"], b.metadata["reconciler_part"]) for b in batches(sandbox)]
    assert len(keys) == len(set(keys)) == 12


@pytest.fixture
def two_repos(make_repo: MakeRepo, sandbox: Sandbox) -> tuple[UserRepo, UserRepo]:
    """Two repos with the same job, same input bytes: the same generation, different owners."""
    ours, theirs = make_repo("ours"), make_repo("theirs")
    for repo in (ours, theirs):
        repo.write_job("nightly-eval", requests=3)
        repo.write_job("shared-name", requests=2)
    return ours, theirs


@pytest.mark.slow
def test_two_repos_with_different_owners_never_touch_each_others_batches(
    two_repos: tuple[UserRepo, UserRepo], sandbox: Sandbox
) -> None:
    from reconciler.specs.identity import owner_tag

    sandbox.configure(validation_seconds=600)  # everything stays running, so a cancel would show
    ours, theirs = two_repos
    both = [
        start(ours, sandbox, "acme/ours", "apply", "--auto-approve"),
        start(theirs, sandbox, "acme/theirs", "apply", "--auto-approve"),
    ]
    assert [finish(p)[0] for p in both] == [0, 0]
    mine, others = owner_tag("acme/ours"), owner_tag("acme/theirs")
    assert len(owned_units(sandbox, mine)) == 2
    assert owned_units(sandbox, mine) == owned_units(sandbox, others)  # the same generations
    owner_of = {b.id: b.metadata["reconciler_owner"] for b in batches(sandbox)}
    their_files = {b.input_file_id for b in batches(sandbox) if owner_of[b.id] == others}

    code, out, err = finish(start(ours, sandbox, "acme/ours", "reconcile", "--rebuild-state"))
    assert code == 0 and "Applied: 0 created, 0 cancelled" in out, err
    recorded = {b["batch_id"] for j in state_of(ours.root)["jobs"].values() for b in j["batches"]}
    assert recorded == {i for i, owner in owner_of.items() if owner == mine}

    for spec in ours.specs.iterdir():
        spec.unlink()
    code, out, err = finish(start(ours, sandbox, "acme/ours", "apply", "--auto-approve", "--allow-empty"))
    assert code == 0 and "2 cancelled" in out, err
    statuses = {b.id: b.status for b in batches(sandbox)}
    assert {statuses[i] for i, owner in owner_of.items() if owner == others} == {"validating"}
    assert {statuses[i] for i, owner in owner_of.items() if owner == mine} <= {"cancelling", "cancelled"}
    assert their_files <= {f.id for f in sdk(sandbox).files.list()}
    recorded = {b["batch_id"] for j in state_of(theirs.root)["jobs"].values() for b in j["batches"]}
    assert recorded == {i for i, owner in owner_of.items() if owner == others}
