"""`apply`'s first request: the list of batches, sent as soon as the specs and inputs are checked
and the owner's lock is held, before the state is read and the jobs are built
(cli/commands/apply.py, api/reader.BatchReader.start_listing).

A user's mistake still sends nothing; the list is never read before the owner's lock (a second
writer of the same owner could make a batch in between: two where one was meant); and the page
sent ahead is read by the pass, not asked for again.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
import time
from pathlib import Path

import pytest

from reconciler.common import fileops
from reconciler.sandbox import Sandbox
from reconciler.specs.identity import owner_tag
from reconciler.state.file import owner_lock_path
from tests.fixtures.daemon import reconciler_command, reconciler_env
from tests.fixtures.repo import CliResult, MakeRepo, RunCli, UserRepo
from tests.reconcile_helpers import batches, use_sandbox, wait_until

OWNER = "tests/first-request"
LIST = "GET /v1/batches"


@pytest.fixture
def repo(make_repo: MakeRepo, sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch) -> UserRepo:
    use_sandbox(monkeypatch, sandbox)
    monkeypatch.setenv("RECONCILER_OWNER", OWNER)
    made = make_repo()
    made.write_job("nightly-eval")
    made.write_job("ab-test")
    return made


def test_apply_sends_the_list_of_batches_before_it_reads_the_state(
    repo: UserRepo, sandbox: Sandbox, run_cli: RunCli
) -> None:
    # The state file is a pipe: reading it waits until the test writes into it.  The list must
    # reach the sandbox while apply waits there.
    repo.state.parent.mkdir(parents=True, exist_ok=True)
    os.mkfifo(repo.state)
    sandbox.reset_counts()
    results: list[CliResult] = []
    applying = threading.Thread(
        target=lambda: results.append(run_cli("apply", "--auto-approve", *repo.args()))
    )
    applying.start()
    try:
        wait_until(lambda: sandbox.request_counts().get(LIST) == 1, 30)
    finally:
        # Let the read go on once apply waits in it: the pipe moved aside (a second read finds
        # no file), then written.
        written = wait_until(lambda: _writer_of(repo.state), 60)
        repo.state.rename(repo.state.with_name("state.pipe"))
        os.write(written, b"{ not a state")
        os.close(written)
        applying.join(timeout=60)
    (result,) = results
    assert result.exit_code == 1 and "state" in result.stderr, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    assert sandbox.request_counts() == {LIST: 1}  # nothing else was sent: the state stopped it


def _writer_of(pipe: Path) -> int | None:
    """The pipe opened for writing, once a reader waits in it."""
    try:
        return os.open(pipe, os.O_WRONLY | os.O_NONBLOCK)
    except OSError:  # ENXIO: nobody reads it yet
        return None


def test_apply_asks_for_the_first_page_it_sent_ahead_only_once(
    repo: UserRepo, sandbox: Sandbox, run_cli: RunCli
) -> None:
    assert run_cli("apply", "--auto-approve", *repo.args()).exit_code == 0
    sandbox.reset_counts()
    again = run_cli("apply", "--auto-approve", *repo.args())
    assert again.exit_code == 0, again.stdout + again.stderr
    assert sandbox.request_counts()[LIST] == 1  # one page, sent ahead and read by the pass


@pytest.mark.parametrize(
    "mistake",
    ["unknown field", "input not JSONL", "misspelt --target", "--replace outside --target"],
)
def test_apply_sends_nothing_and_writes_nothing_for_a_users_mistake(
    repo: UserRepo, sandbox: Sandbox, run_cli: RunCli, mistake: str
) -> None:
    flags: list[str] = []
    if mistake == "unknown field":
        repo.write_job("typo", completion_windw="24h")
    elif mistake == "input not JSONL":
        repo.write_input("data/ab-test.jsonl", lines=["{not json"])
    elif mistake == "misspelt --target":
        flags = ["--target", "nightly-evl"]
    else:
        flags = ["--target", "nightly-eval", "--replace", "ab-test"]
    sandbox.reset_counts()
    result = run_cli("apply", "--auto-approve", *flags, *repo.args())
    assert result.exit_code == 1, result.stdout + result.stderr
    assert len(result.stderr.splitlines()) == 1 and result.stderr.startswith("error: "), result.stderr
    assert sandbox.request_counts() == {}
    assert not repo.state.exists()


def test_a_target_only_the_state_knows_is_checked_against_it_before_the_list_is_sent(
    repo: UserRepo, sandbox: Sandbox, run_cli: RunCli
) -> None:
    assert run_cli("apply", "--auto-approve", *repo.args()).exit_code == 0
    (repo.specs / "ab-test.yaml").unlink()
    sandbox.reset_counts()
    misspelt = run_cli("apply", "--auto-approve", "--target", "ab-tst", *repo.args())
    assert misspelt.exit_code == 1 and "did you mean 'ab-test'" in misspelt.stderr, misspelt.stderr
    assert sandbox.request_counts() == {}
    removed = run_cli("apply", "--auto-approve", "--target", "ab-test", *repo.args())
    assert removed.exit_code == 0, removed.stdout + removed.stderr
    assert sandbox.request_counts()[LIST] == 1  # listed once, after the state named the job


@pytest.mark.slow
def test_apply_lists_batches_only_once_it_holds_the_owners_lock(
    make_repo: MakeRepo, sandbox: Sandbox, tmp_path: Path
) -> None:
    """Two checkouts of one repo (one owner, two state files) wait for the owner's lock held by
    a third party.  Neither may read the list while it waits: both would find no batch, and the
    one that goes second would create the job's batch again."""
    first = make_repo("first")
    first.write_job("nightly-eval")
    second = UserRepo(tmp_path / "second")
    shutil.copytree(first.root, second.root)
    env = reconciler_env(sandbox, OWNER, RECONCILER_LOCK_TIMEOUT="120")
    sandbox.reset_counts()
    with fileops.holding(owner_lock_path(owner_tag(OWNER)), "a third writer", 0) as held:
        assert held
        running = [
            subprocess.Popen(
                reconciler_command("apply", "--auto-approve", *checkout.args()),
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for checkout in (first, second)
        ]
        # Both have checked their specs and inputs (the input cache is written then) and wait.
        caches = [checkout.root / ".reconciler" / "input-cache.json" for checkout in (first, second)]
        wait_until(lambda: all(cache.exists() for cache in caches), 60)
        time.sleep(0.5)  # for an apply that would list before the lock to do so: a count, not a time
        assert all(process.poll() is None for process in running)
        assert sandbox.request_counts() == {}, "a list was read before the owner's lock"
    results = [process.communicate(timeout=120) for process in running]
    assert [process.returncode for process in running] == [0, 0], results
    assert len(batches(sandbox, "nightly-eval")) == 1, results
