"""`--replace JOB` starts exactly one new run per command, over real HTTP against the sandbox.

The run's id carries a stamp; taken afresh on every pass, `reconcile --wait --replace` saw
its own new run as "not the one asked for" on the next pass and replaced it again, forever
(59 batches in 60 s).  The stamp is fixed once per command, and a saved plan carries its own,
so applying the same saved plan twice cannot start two runs either.  Creates are counted at
the sandbox.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from reconciler.sandbox import Sandbox
from tests.fixtures.repo import MakeRepo, RunCli, UserRepo
from tests.reconcile_helpers import batches, mutating, state_of, use_sandbox

CREATES = "POST /v1/batches"
CANCELS = "POST /v1/batches/{id}/cancel"


@pytest.fixture
def repo(make_repo: MakeRepo, sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch, run_cli: RunCli) -> UserRepo:
    """A job whose first run has completed."""
    use_sandbox(monkeypatch, sandbox)
    made = make_repo()
    made.write_job("nightly-eval", requests=3)
    assert run_cli("reconcile", "--wait", "--timeout", "60", *made.args()).exit_code == 0
    return made


def runs(sandbox: Sandbox) -> list[str]:
    return sorted(b.metadata["reconciler_run"] for b in batches(sandbox, "nightly-eval"))


@pytest.mark.slow
def test_replace_with_wait_makes_one_new_run_per_command_and_waits_for_it(
    repo: UserRepo, sandbox: Sandbox, run_cli: RunCli
) -> None:
    # The new run outlasts a few of --wait's one-second polls: every pass sees it running.
    sandbox.configure(validation_seconds=3.5)
    sandbox.reset_counts()
    waited = run_cli("reconcile", "--wait", "--replace", "nightly-eval", "--timeout", "30", *repo.args())
    assert waited.exit_code == 0, waited.stdout + waited.stderr
    assert mutating(sandbox.request_counts()) == {"POST /v1/files": 1, CREATES: 1}
    first, second = runs(sandbox)
    assert first == "default" and second.startswith("default+")
    job = state_of(repo.root)["jobs"]["nightly-eval"]
    assert (job["run"], job["status"]) == (second, "completed")  # what --wait waited for
    assert waited.stdout.count("(--replace)") == 1  # planned once, then only waited


def test_replace_without_wait_makes_one_new_run_per_command(
    repo: UserRepo, sandbox: Sandbox, run_cli: RunCli
) -> None:
    sandbox.configure(validation_seconds=600)
    for command in ("apply --auto-approve", "reconcile"):
        sandbox.reset_counts()
        done = run_cli(*command.split(), "--replace", "nightly-eval", *repo.args())
        assert done.exit_code == 0, done.stderr
        assert mutating(sandbox.request_counts()).get(CREATES) == 1, command
    assert len(set(runs(sandbox))) == 3
    sandbox.reset_counts()
    assert run_cli("reconcile", *repo.args()).exit_code == 0  # no --replace: the latest run goes on
    assert mutating(sandbox.request_counts()) == {}


def test_a_saved_replace_plan_starts_its_run_once_however_often_it_is_applied(
    repo: UserRepo, sandbox: Sandbox, run_cli: RunCli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sandbox.configure(validation_seconds=600)
    saved = tmp_path / "replace.plan"
    monkeypatch.setenv("RECONCILER_NOW", "2026-12-01T10:00:00Z")  # planned at ten, applied at eleven
    planned = run_cli("plan", "--replace", "nightly-eval", "--out", str(saved), *repo.args())
    assert planned.exit_code == 0, planned.stderr
    (change,) = json.loads(saved.read_text())["changes"]
    sandbox.reset_counts()
    monkeypatch.setenv("RECONCILER_NOW", "2026-12-01T11:00:00Z")
    first = run_cli("apply", str(saved), *repo.args())
    assert first.exit_code == 0, first.stderr
    assert mutating(sandbox.request_counts()) == {"POST /v1/files": 1, CREATES: 1}
    assert change["run"].startswith("default+20261201T1000")
    assert change["run"] in runs(sandbox)  # the run the saved plan showed, not one named at apply

    again = run_cli("apply", str(saved), *repo.args())
    assert again.exit_code == 1
    assert "saved plan no longer holds: nightly-eval was to create, now needs nothing" in again.stderr
    assert mutating(sandbox.request_counts()) == {"POST /v1/files": 1, CREATES: 1}
