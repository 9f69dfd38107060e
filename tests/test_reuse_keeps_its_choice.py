"""A run decides once (spec.reuse): the choice a run recorded when it started holds whatever the
spec's `reuse` says later (removed, added, another max_age).  Real HTTP against the sandbox."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from reconciler.sandbox import Sandbox
from tests.fixtures.repo import RunCli, UserRepo, planned, request_lines
from tests.reconcile_helpers import batches, state_of
from tests.test_reuse_runs import REUSE, newest_batch, reconciled, results_of, sent_lines, write_emb


def applied(run_cli: RunCli, repo: UserRepo) -> None:
    result = run_cli("apply", "--auto-approve", *repo.args())
    assert result.exit_code == 0, result.stdout + result.stderr


def test_removing_reuse_after_a_run_that_reused_everything_sends_nothing_more(
    sandbox_repo: UserRepo, sandbox: Sandbox, run_cli: RunCli
) -> None:
    lines = request_lines(40)
    write_emb(sandbox_repo, lines, **REUSE)
    reconciled(run_cli, sandbox_repo)
    write_emb(sandbox_repo, lines, run="second", **REUSE)
    reconciled(run_cli, sandbox_repo)  # every answer reused: no batch, completed
    assert len(batches(sandbox, "emb")) == 1

    write_emb(sandbox_repo, lines, run="second")  # spec.reuse removed
    assert planned(run_cli, sandbox_repo)["emb"]["action"] == "noop"
    reconciled(run_cli, sandbox_repo)
    assert len(batches(sandbox, "emb")) == 1
    job = state_of(sandbox_repo.root)["jobs"]["emb"]
    assert job["status"] == "completed" and job["reuse"]["reused"] == 40
    assert job["request_counts"] is None or job["request_counts"]["total"] == 0
    shown = run_cli("status", "--offline", *sandbox_repo.args()).stdout
    assert "0/0/0 +40 reused" in shown, shown


@pytest.mark.slow
def test_removing_reuse_mid_run_sends_only_what_the_run_chose(
    sandbox_repo: UserRepo, sandbox: Sandbox, run_cli: RunCli
) -> None:
    first = request_lines(30)
    write_emb(sandbox_repo, first, **REUSE)
    reconciled(run_cli, sandbox_repo)
    grown = first + request_lines(33)[30:]
    write_emb(sandbox_repo, grown, **REUSE)
    applied(run_cli, sandbox_repo)  # the run starts: 3 sent, 30 reused
    assert len(sent_lines(sandbox, newest_batch(sandbox))) == 3

    write_emb(sandbox_repo, grown)  # spec.reuse removed while the run is on
    assert planned(run_cli, sandbox_repo)["emb"]["action"] in ("noop", "adopt")
    reconciled(run_cli, sandbox_repo)
    assert len(batches(sandbox, "emb")) == 2
    after, _ = results_of(sandbox_repo)
    assert len(after) == 33
    assert all(json.loads(line)["response"]["status_code"] == 200 for line in after)
    job = state_of(sandbox_repo.root)["jobs"]["emb"]
    assert job["reuse"]["reused"] == 30 and job["request_counts"]["total"] == 3


@pytest.mark.slow
def test_reuse_added_to_a_run_already_started_changes_nothing_of_it(
    sandbox_repo: UserRepo, sandbox: Sandbox, run_cli: RunCli
) -> None:
    first = request_lines(30)
    write_emb(sandbox_repo, first)
    reconciled(run_cli, sandbox_repo)
    write_emb(sandbox_repo, first + request_lines(33)[30:])
    applied(run_cli, sandbox_repo)  # a run that sends all 33
    write_emb(sandbox_repo, first + request_lines(33)[30:], **REUSE)
    assert planned(run_cli, sandbox_repo)["emb"]["action"] in ("noop", "adopt")
    reconciled(run_cli, sandbox_repo)
    assert len(batches(sandbox, "emb")) == 2
    assert len(sent_lines(sandbox, newest_batch(sandbox))) == 33
    after, _ = results_of(sandbox_repo)
    assert len(after) == 33
    assert state_of(sandbox_repo.root)["jobs"]["emb"].get("reuse") is None


@pytest.mark.slow
def test_a_shorter_max_age_mid_run_neither_resends_nor_prunes_what_the_run_reuses(
    sandbox_repo: UserRepo, sandbox: Sandbox, run_cli: RunCli, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = request_lines(30)
    write_emb(sandbox_repo, first, **REUSE)
    reconciled(run_cli, sandbox_repo)
    grown = first + request_lines(33)[30:]
    write_emb(sandbox_repo, grown, **REUSE)
    applied(run_cli, sandbox_repo)  # 3 sent, 30 reused

    later = datetime.now(UTC) + timedelta(days=10)  # the answers are 10 days old by then
    monkeypatch.setenv("RECONCILER_NOW", later.isoformat().replace("+00:00", "Z"))
    write_emb(sandbox_repo, grown, reuse={"max_age": "1d"})
    reconciled(run_cli, sandbox_repo)
    assert len(batches(sandbox, "emb")) == 2
    after, _ = results_of(sandbox_repo)
    assert len(after) == 33
    assert all(json.loads(line)["response"]["status_code"] == 200 for line in after)
