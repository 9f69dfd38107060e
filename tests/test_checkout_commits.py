"""Writers at different commits of one repo, sharing one state: the newer commit's change stands.

CI at a new commit replaced a job's generation; the daemon's checkout, one commit behind,
cancelled CI's batch and resumed the old generation (4 batches where 2 were meant).  Each
change now records the commit it was made from, and a checkout behind it (or, when neither
holds the other, at the older commit) leaves the job alone and says so.  Real git clones of
one origin, against the sandbox; batches counted there.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from reconciler.sandbox import Sandbox
from tests.fixtures.daemon import StartDaemon
from tests.fixtures.postgres import StateDb
from tests.fixtures.repo import RunCli, UserRepo, planned
from tests.reconcile_helpers import OWNER, batches, mutating, sdk, use_sandbox, wait_until

T0 = 1_800_000_000  # commit dates are set, so "newer" never depends on how fast the test runs
CREATES = "POST /v1/batches"


@dataclass(frozen=True)
class Clone:
    root: Path
    state: Path

    def git(self, *args: str, when: int = T0) -> str:
        env = os.environ | {"GIT_AUTHOR_DATE": f"@{when} +0000", "GIT_COMMITTER_DATE": f"@{when} +0000"}
        identity = ["-c", "user.name=test", "-c", "user.email=test@example.com"]
        done = subprocess.run(
            ["git", *identity, "-C", str(self.root), *args],
            capture_output=True,
            text=True,
            env=env,
            check=True,
        )
        return done.stdout.strip()

    def commit(self, message: str, when: int) -> str:
        self.git("add", "-A")
        self.git("commit", "-q", "-m", message, when=when)
        return self.git("rev-parse", "HEAD")

    @property
    def repo(self) -> UserRepo:
        return UserRepo(self.root)

    def args(self, *extra: str) -> list[str]:
        return ["--repo", str(self.root), "--state", str(self.state), *extra]


@pytest.fixture
def clone(tmp_path: Path, sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch) -> Callable[[str], Clone]:
    """Clones of one origin whose first commit holds `nightly-eval`; all share one state file."""
    use_sandbox(monkeypatch, sandbox)
    sandbox.configure(validation_seconds=600)  # every batch stays running: a change is a replace
    origin = tmp_path / "origin.git"
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(origin)], check=True)
    state = tmp_path / "shared" / "state.json"
    author = Clone(tmp_path / "author", state)
    subprocess.run(["git", "clone", "-q", str(origin), str(author.root)], check=True, capture_output=True)
    author.git("checkout", "-q", "-b", "main")
    author.repo.write_job("nightly-eval", requests=3)
    author.commit("nightly-eval", T0)
    author.git("push", "-q", "origin", "main")

    def make(name: str) -> Clone:
        made = Clone(tmp_path / name, state)
        if name != "author":
            subprocess.run(["git", "clone", "-q", str(origin), str(made.root)], check=True)
        return made

    return make


def new_commit(author: Clone, requests: int, when: int, branch: str = "main") -> str:
    """A commit that changes nightly-eval's input (a new generation), pushed to `branch`."""
    author.repo.write_input("data/nightly-eval.jsonl", requests)
    sha = author.commit(f"nightly-eval: {requests} requests", when)
    author.git("push", "-q", "origin", f"HEAD:{branch}")
    return sha


def live(sandbox: Sandbox) -> list[str]:
    return [b.id for b in batches(sandbox) if b.status not in ("cancelling", "cancelled")]


@pytest.mark.slow
@pytest.mark.parametrize("fetched", [True, False], ids=["fetched", "not-fetched"])
def test_a_checkout_behind_the_commit_that_last_changed_a_job_leaves_it_alone_and_says_so(
    clone: Callable[[str], Clone], sandbox: Sandbox, run_cli: RunCli, fetched: bool
) -> None:
    author, ci, daemon = clone("author"), clone("ci"), clone("daemon")
    first = daemon.git("rev-parse", "HEAD")
    assert run_cli("apply", "--auto-approve", *daemon.args()).exit_code == 0

    second = new_commit(author, requests=4, when=T0 + 60)
    ci.git("pull", "-q", "--ff-only")
    replaced = run_cli("apply", "--auto-approve", *ci.args())
    assert replaced.exit_code == 0 and "~ replace" in replaced.stdout, replaced.stdout + replaced.stderr
    (kept,) = live(sandbox)
    if fetched:
        daemon.git("fetch", "-q")  # the commit is here, not checked out: provably behind

    plan = run_cli("plan", "--detailed-exitcode", *daemon.args())
    assert plan.exit_code == 0, plan.stdout + plan.stderr  # nothing this checkout would do
    # Nothing to do, and not in sync: the summary says so, as `status` does.
    assert "No changes: 0 jobs in sync; 1 out of sync: left to a newer checkout." in plan.stdout
    change = planned(run_cli, daemon)["nightly-eval"]
    assert (change["action"], change["reason_code"]) == ("noop", "left_to_newer_checkout")
    relation = "behind" if fetched else "missing"
    assert change["reason_data"] == {
        "job": "nightly-eval",
        "checkout": first,
        "commit": second,
        "relation": relation,
    }
    sandbox.reset_counts()
    for _ in range(2):
        assert run_cli("reconcile", *daemon.args()).exit_code == 0
    assert mutating(sandbox.request_counts()) == {}
    assert live(sandbox) == [kept] and len(batches(sandbox)) == 2

    daemon.git("pull", "-q", "--ff-only")  # caught up: in sync, nothing to undo
    assert run_cli("plan", "--detailed-exitcode", *daemon.args()).exit_code == 0
    assert run_cli("reconcile", *daemon.args()).exit_code == 0
    assert mutating(sandbox.request_counts()) == {}
    assert len(batches(sandbox)) == 2
    recorded = run_cli("status", "--json", *daemon.args())
    assert f'"commit": "{second}"' in recorded.stdout


@pytest.mark.slow
def test_of_two_diverged_checkouts_the_newer_commit_goes_first(
    clone: Callable[[str], Clone], sandbox: Sandbox, run_cli: RunCli
) -> None:
    author, main, older, newer = clone("author"), clone("main"), clone("older"), clone("newer")
    base = author.git("rev-parse", "HEAD")
    main_commit = new_commit(author, requests=4, when=T0 + 60)
    main.git("pull", "-q", "--ff-only")
    assert run_cli("apply", "--auto-approve", *main.args()).exit_code == 0

    for branch, requests, when in (("older", 5, T0 + 30), ("newer", 6, T0 + 120)):
        author.git("checkout", "-q", "-b", branch, base)
        new_commit(author, requests, when, branch)
    for checkout, branch in ((older, "older"), (newer, "newer")):
        checkout.git("fetch", "-q")
        checkout.git("checkout", "-q", branch)

    left = planned(run_cli, older)["nightly-eval"]
    assert (left["reason_code"], left["reason_data"]["relation"]) == ("left_to_newer_checkout", "diverged")
    assert left["reason_data"]["commit"] == main_commit
    assert run_cli("reconcile", *older.args()).exit_code == 0
    assert len(batches(sandbox)) == 1

    went = run_cli("reconcile", *newer.args())  # diverged too, but newer: it goes first
    assert went.exit_code == 0 and "~ replace" in went.stdout, went.stdout
    assert len(batches(sandbox)) == 2 and len(live(sandbox)) == 1
    main.git("checkout", "-q", main_commit)
    left = planned(run_cli, main)["nightly-eval"]  # older, and never fetched the newer: not "behind"
    assert (left["reason_code"], left["reason_data"]["relation"]) == ("left_to_newer_checkout", "missing")
    assert len(batches(sandbox)) == 2


def test_a_writer_outside_git_changes_the_job_as_before_and_records_no_commit(
    clone: Callable[[str], Clone], sandbox: Sandbox, run_cli: RunCli, tmp_path: Path
) -> None:
    ci = clone("ci")
    assert run_cli("apply", "--auto-approve", *ci.args()).exit_code == 0
    assert '"commit": "' in run_cli("status", "--json", *ci.args()).stdout

    plain = Clone(tmp_path / "export", ci.state)  # `git archive` of an older tree: no .git
    subprocess.run(["cp", "-r", str(ci.root), str(plain.root)], check=True)
    subprocess.run(["rm", "-rf", str(plain.root / ".git")], check=True)
    plain.repo.write_input("data/nightly-eval.jsonl", 7)
    went = run_cli("apply", "--auto-approve", *plain.args())
    assert went.exit_code == 0 and "~ replace" in went.stdout, went.stdout + went.stderr
    assert '"applied_from": null' in run_cli("status", "--json", *plain.args()).stdout
    assert len(batches(sandbox)) == 2


@pytest.mark.slow
def test_the_postgresql_state_carries_the_commit_a_job_was_applied_from(
    clone: Callable[[str], Clone],
    sandbox: Sandbox,
    run_cli: RunCli,
    state_db: StateDb,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("RECONCILER_STATE_URL", state_db.url)
    author, ci, daemon = clone("author"), clone("ci"), clone("daemon")
    assert run_cli("apply", "--auto-approve", "--repo", str(daemon.root)).exit_code == 0
    second = new_commit(author, requests=4, when=T0 + 60)
    ci.git("pull", "-q", "--ff-only")
    assert run_cli("apply", "--auto-approve", "--repo", str(ci.root)).exit_code == 0
    ((top, record),) = state_db.query(  # the head, and the job's row
        "SELECT h.top, j.record FROM reconciler_state_heads h JOIN reconciler_state_jobs j "
        "ON j.owner = h.owner WHERE j.name = 'nightly-eval'"
    )
    assert top["format_version"] == 5  # type: ignore[index]
    assert record["applied_from"]["commit"] == second  # type: ignore[index]
    sandbox.reset_counts()
    left = planned(run_cli, daemon.repo)["nightly-eval"]
    assert (left["reason_code"], left["reason_data"]["relation"]) == ("left_to_newer_checkout", "missing")
    assert left["reason_data"]["commit"] == second
    assert run_cli("reconcile", "--repo", str(daemon.root)).exit_code == 0
    assert mutating(sandbox.request_counts()) == {}


@pytest.mark.slow
def test_the_daemon_claims_a_pulled_commit_that_changed_no_spec_file(
    clone: Callable[[str], Clone], sandbox: Sandbox, run_cli: RunCli, start_daemon: StartDaemon
) -> None:
    """A pull that touches only a README moves HEAD without a file event the daemon watches: it
    must still act from the new commit, or a job CI changed there stays left alone for good."""
    author, ci, daemon = clone("author"), clone("ci"), clone("daemon")
    author.repo.write_job("keepalive", requests=2)  # a batch that runs on: the daemon keeps polling
    author.commit("keepalive", T0 + 10)
    author.git("push", "-q", "origin", "main")
    for checkout in (ci, daemon):
        checkout.git("pull", "-q", "--ff-only")
    (author.root / "README.md").write_text("batch jobs\n")
    readme = author.commit("README", T0 + 60)
    author.git("push", "-q", "origin", "main")
    ci.git("pull", "-q", "--ff-only")
    assert run_cli("apply", "--auto-approve", "--replace", "nightly-eval", *ci.args()).exit_code == 0

    (current,) = batches(sandbox, "nightly-eval")
    sdk(sandbox).batches.cancel(current.id)  # now nightly-eval has something to resume
    wait_until(lambda: sdk(sandbox).batches.retrieve(current.id).status == "cancelled")
    sandbox.reset_counts()
    running = start_daemon(daemon.repo, sandbox, "--state", str(daemon.state), owner=OWNER)
    running.wait_for_log(re.escape(f"does not have {readme[:7]}, a newer commit"))
    assert CREATES not in sandbox.request_counts()  # behind: no resume from here

    daemon.git("pull", "-q", "--ff-only")  # only README.md changes
    running.eventually(lambda: sandbox.request_counts().get(CREATES, 0) >= 1)
    assert running.stop() == 0, running.log()
    assert sandbox.request_counts()[CREATES] == 1
    assert len(batches(sandbox, "nightly-eval")) == 2


def test_a_job_deleted_at_a_newer_commit_is_not_created_again_from_a_checkout_behind_it(
    clone: Callable[[str], Clone], sandbox: Sandbox, run_cli: RunCli
) -> None:
    author, ci, daemon = clone("author"), clone("ci"), clone("daemon")
    assert run_cli("apply", "--auto-approve", *daemon.args()).exit_code == 0
    (first,) = batches(sandbox)
    (author.root / "specs" / "nightly-eval.yaml").unlink()
    author.repo.write_job("weekly-eval", requests=2)  # the daemon's checkout does not have it either
    deleted = author.commit("nightly-eval is no more", T0 + 60)
    author.git("push", "-q", "origin", "main")
    ci.git("pull", "-q", "--ff-only")
    assert "- cancel" in run_cli("reconcile", *ci.args()).stdout
    wait_until(lambda: sdk(sandbox).batches.retrieve(first.id).status == "cancelled")
    assert ". forget" in run_cli("reconcile", *ci.args()).stdout

    daemon.git("fetch", "-q")
    sandbox.reset_counts()
    changes = planned(run_cli, daemon)
    for job in ("nightly-eval", "weekly-eval"):
        assert changes[job]["reason_code"] == "left_to_newer_checkout"
        assert (changes[job]["reason_data"]["relation"], changes[job]["reason_data"]["commit"]) == (
            "behind",
            deleted,
        )
    assert run_cli("reconcile", *daemon.args()).exit_code == 0
    assert mutating(sandbox.request_counts()) == {}
    daemon.git("pull", "-q", "--ff-only")
    assert run_cli("plan", "--detailed-exitcode", *daemon.args()).exit_code == 0
    assert [b.id for b in batches(sandbox, "nightly-eval")] == [first.id]
    assert len(batches(sandbox, "weekly-eval")) == 1


@pytest.mark.parametrize("version", [2, 3])
def test_an_older_state_reads_as_it_is_and_is_written_back_as_version_4(
    clone: Callable[[str], Clone], sandbox: Sandbox, run_cli: RunCli, version: int
) -> None:
    ci = clone("ci")
    assert run_cli("apply", "--auto-approve", *ci.args()).exit_code == 0
    document = json.loads(ci.state.read_text())
    applied = document["jobs"]["nightly-eval"]["applied_from"]
    for job in document["jobs"].values():
        for run in job["history"]:
            del run["results_overwritten_by"]  # version 4's
        if version == 2:
            del job["applied_from"]  # version 3's
    if version == 2:
        del document["forgotten"]
    ci.state.write_text(json.dumps({**document, "format_version": version}))  # as that version wrote it

    sandbox.reset_counts()
    assert run_cli("plan", "--detailed-exitcode", *ci.args()).exit_code == 0
    assert run_cli("reconcile", *ci.args()).exit_code == 0
    assert mutating(sandbox.request_counts()) == {}
    again = json.loads(ci.state.read_text())
    assert again["format_version"] == 5 and again["lineage"] == document["lineage"]
    # version 2 had no commits: nothing changed, so nothing is claimed; version 3's is kept
    assert again["jobs"]["nightly-eval"]["applied_from"] == (None if version == 2 else applied)
