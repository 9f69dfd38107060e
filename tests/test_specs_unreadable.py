"""A specs tree that cannot be read is a broken spec, never a smaller set of jobs.

Reading a folder or file of the specs can fail for reasons that are not the text's: no
permission, no descriptor left ("too many open files"), a FIFO where a file should be. Each
is reported naming the path; the command changes nothing, and the daemon keeps what it last
read instead of cancelling the jobs it can no longer see.

The tests run as root, for whom file permissions do not apply: a reconciler that must meet
them runs without the two capabilities that bypass them (setpriv), which is what an ordinary
user is. Descriptors run out in a child whose RLIMIT_NOFILE is lowered to what it already has
open, as a daemon holding a thousand connections would find.
"""

from __future__ import annotations

import os
import re
import resource
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from reconciler.sandbox import Sandbox
from tests.fixtures.daemon import Daemon, reconciler_env, watch_command
from tests.fixtures.repo import MakeRepo, UserRepo
from tests.reconcile_helpers import batches, mutating, settled

# The capabilities that let root read and list whatever the file modes say.
BYPASS = "-dac_override,-dac_read_search"
AS_A_USER = ["setpriv", f"--inh-caps={BYPASS}", f"--bounding-set={BYPASS}"]


def as_a_user(command: list[str]) -> list[str]:
    return [*AS_A_USER, "--", *command] if os.geteuid() == 0 else command


def run(command: list[str], env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=timeout)


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "reconciler", *args]


def reads(sandbox: Sandbox) -> int:
    return sum(n for route, n in sandbox.request_counts().items() if route.startswith("GET "))


@pytest.fixture
def two_folders(make_repo: MakeRepo, sandbox: Sandbox) -> Iterator[UserRepo]:
    """Job `top` in specs/, job `nested` in specs/team/, both applied and running."""
    sandbox.configure(validation_seconds=600)  # still running when the folder goes dark
    repo = make_repo()
    repo.write_job("top")
    repo.write_job("nested", file="specs/team/nested.yaml")
    applied = run(cli("apply", "--auto-approve", *repo.args()), reconciler_env(sandbox))
    assert applied.returncode == 0, applied.stderr
    assert len(batches(sandbox)) == 2
    sandbox.reset_counts()
    yield repo
    (repo.specs / "team").chmod(0o755)  # so tmp_path can be cleaned


@pytest.mark.slow
def test_apply_with_an_unreadable_specs_folder_fails_naming_it_and_cancels_nothing(
    two_folders: UserRepo, sandbox: Sandbox
) -> None:
    (two_folders.specs / "team").chmod(0)
    result = run(as_a_user(cli("apply", "--auto-approve", *two_folders.args())), reconciler_env(sandbox))
    assert result.returncode == 1, result.stdout
    (line,) = result.stderr.strip().splitlines()
    assert line == "error: specs/team: cannot read this folder: Permission denied"
    assert mutating(sandbox.request_counts()) == {}
    assert sorted(b.status for b in batches(sandbox)) == ["validating", "validating"]


def test_validate_out_of_file_descriptors_fails_naming_the_specs_folder(
    make_repo: MakeRepo, tmp_path: Path
) -> None:
    repo = make_repo()
    repo.write_job("nightly-eval")
    # The CLI runs once to import all it needs, then again with no descriptor left to open.
    starved = (
        "import contextlib, os, resource, sys\n"
        "from reconciler.cli.main import main\n"
        "with contextlib.suppress(SystemExit):\n"
        "    main(sys.argv[1:])\n"
        "lowest_free = os.open(os.devnull, os.O_RDONLY)\n"
        "os.close(lowest_free)\n"
        "resource.setrlimit(resource.RLIMIT_NOFILE, (lowest_free, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))\n"
        "main(sys.argv[1:])\n"
    )
    result = run([sys.executable, "-c", starved, "validate", *repo.args()], reconciler_env())
    assert result.stdout.splitlines()[0] == "1 job, 0 providers: valid"  # the first run
    assert result.returncode == 1, result.stdout
    (line,) = result.stderr.strip().splitlines()
    assert line == "error: specs: cannot read this folder: Too many open files"


def test_a_fifo_named_like_a_spec_is_refused_not_waited_for(make_repo: MakeRepo) -> None:
    repo = make_repo()
    repo.write_job("nightly-eval")
    os.mkfifo(repo.specs / "pipe.yaml")
    result = run(cli("validate", *repo.args()), reconciler_env(), timeout=30)
    assert result.returncode == 1
    (line,) = result.stderr.strip().splitlines()
    assert line == "error: specs/pipe.yaml: cannot read: not a regular file"


@pytest.mark.slow
def test_the_daemon_keeps_the_jobs_of_a_folder_it_cannot_read_and_says_so(
    two_folders: UserRepo, sandbox: Sandbox, tmp_path: Path
) -> None:
    log_file = tmp_path / "daemon.log"
    with log_file.open("ab") as log:
        process = subprocess.Popen(
            as_a_user(watch_command(two_folders, "--interval", "0.2")),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=log,
            env=reconciler_env(sandbox),
        )
    daemon = Daemon(process, log_file)
    try:
        daemon.wait_for_log("first pass done")
        (two_folders.specs / "team").chmod(0)
        daemon.wait_for_log(re.escape("specs/team: cannot read this folder: Permission denied"))
        looked = reads(sandbox)
        daemon.eventually(lambda: reads(sandbox) > looked + 4)  # passes go on, observing only
        assert mutating(sandbox.request_counts()) == {}, daemon.log()
        assert "cancel" not in daemon.log()

        (two_folders.specs / "team").chmod(0o755)  # readable again: it leads as before
        daemon.wait_for_log("the specs validate again")
        assert mutating(sandbox.request_counts()) == {}, daemon.log()
    finally:
        daemon.stop()


@pytest.mark.slow
def test_the_daemon_out_of_descriptors_reads_the_specs_again_once_it_has_them(
    two_folders: UserRepo, sandbox: Sandbox, tmp_path: Path
) -> None:
    log_file = tmp_path / "daemon.log"
    with log_file.open("ab") as log:
        process = subprocess.Popen(
            watch_command(two_folders, "--interval", "0.2"),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=log,
            env=reconciler_env(sandbox),
        )
    daemon = Daemon(process, log_file)
    try:
        daemon.wait_for_log("first pass done")
        limits = resource.prlimit(process.pid, resource.RLIMIT_NOFILE)
        resource.prlimit(process.pid, resource.RLIMIT_NOFILE, (3, limits[1]))
        (two_folders.specs / "top.yaml").touch()  # a change: the daemon reads the specs again
        daemon.wait_for_log(re.escape("specs: cannot read this folder: Too many open files"))
        resource.prlimit(process.pid, resource.RLIMIT_NOFILE, limits)
        daemon.wait_for_log("the specs validate again")
        settled(lambda: daemon.log().count("\n"), quiet=1.0)
        assert mutating(sandbox.request_counts()) == {}, daemon.log()
        assert sorted(b.status for b in batches(sandbox)) == ["validating", "validating"]
    finally:
        daemon.stop()
