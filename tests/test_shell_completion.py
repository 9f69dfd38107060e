"""Shell completion of job names, through click's own protocol in a subprocess (what bash runs on
TAB): the specs' jobs and the state's, read offline — no request, no lock, no input read."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from reconciler.sandbox import Sandbox
from reconciler.state.file import state_lock
from tests.fixtures.repo import MakeRepo, RunCli, UserRepo
from tests.reconcile_helpers import use_sandbox


def complete(repo: UserRepo, *words: str, cwd: Path | None = None) -> list[str]:
    """What bash is offered for the last of `words` (`reconciler` implied before them)."""
    line = ["reconciler", *words]
    env = {
        **os.environ,
        "_RECONCILER_COMPLETE": "bash_complete",
        "COMP_WORDS": " ".join(line),
        "COMP_CWORD": str(len(line) - 1),
    }
    done = subprocess.run(
        [sys.executable, "-m", "reconciler"],
        env=env,
        cwd=cwd or repo.root,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0 and done.stderr == "", done.stderr
    items = [line.split(",", 1) for line in done.stdout.splitlines() if line]
    assert all(kind == "plain" for kind, _ in items), done.stdout
    return [value for _, value in items]


@pytest.fixture
def repo(make_repo: MakeRepo, sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch, run_cli: RunCli) -> UserRepo:
    """Three jobs applied, then one spec removed (its job is left in the state), and one job
    added whose spec is broken: its input is missing and a field misspelt."""
    use_sandbox(monkeypatch, sandbox)
    made = make_repo()
    for name in ("nightly-eval", "nightly-embed", "ab-test"):
        made.write_job(name)
    assert run_cli("apply", "--auto-approve", *made.args()).exit_code == 0
    (made.specs / "ab-test.yaml").unlink()
    made.write_spec(
        "specs/broken.yaml",
        """
        apiVersion: reconciler/v1
        kind: BatchJob
        metadata: {name: nightly-new}
        spec: {endpoint: /v1/chat/completions, input: ../data/none.jsonl, suspnd: true}
        """,
    )
    sandbox.reset_counts()
    return made


@pytest.mark.slow
def test_status_and_output_complete_the_jobs_of_the_specs_and_of_the_state(repo: UserRepo) -> None:
    assert complete(repo, "status", "") == ["ab-test", "nightly-embed", "nightly-eval", "nightly-new"]
    assert complete(repo, "status", "nightly-e") == ["nightly-embed", "nightly-eval"]
    assert complete(repo, "output", "a") == ["ab-test"]
    assert complete(repo, "status", "nightly-eval", "nightly-e") == ["nightly-embed"]  # not twice


@pytest.mark.slow
def test_target_completes_every_job_and_replace_only_those_with_a_spec(repo: UserRepo) -> None:
    everything = ["ab-test", "nightly-embed", "nightly-eval", "nightly-new"]
    for command in ("plan", "apply", "reconcile", "status"):
        assert complete(repo, command, "--target", "") == everything, command
    assert complete(repo, "apply", "--replace", "") == ["nightly-embed", "nightly-eval", "nightly-new"]


@pytest.mark.slow
def test_completion_reads_the_repo_named_by_repo(repo: UserRepo, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    assert complete(repo, "plan", "--repo", str(repo.root), "--target", "ab", cwd=elsewhere) == ["ab-test"]
    assert complete(repo, "plan", "--target", "ab", cwd=elsewhere) == []


@pytest.mark.slow
def test_completion_sends_nothing_and_answers_while_the_state_is_locked(
    repo: UserRepo, sandbox: Sandbox
) -> None:
    with state_lock(repo.state, "a pass in another terminal"):
        assert complete(repo, "status", "--target", "nightly-ev") == ["nightly-eval"]
    assert sandbox.request_counts() == {}


def test_a_damaged_state_file_completes_the_specs_jobs_without_a_word(repo: UserRepo) -> None:
    repo.state.write_text("{not json")
    assert complete(repo, "status", "") == ["nightly-embed", "nightly-eval", "nightly-new"]
