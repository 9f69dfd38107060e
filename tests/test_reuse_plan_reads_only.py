"""`plan` is read-only with spec.reuse too: it reads the answer store and the provider's files
(into memory) to show what would be reused, and writes nothing: no answer, no recorded choice,
no file of what a run sends, no table.  apply then does what the plan said.  Real HTTP against
the sandbox, a real PostgreSQL."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from reconciler.sandbox import Sandbox
from tests.fixtures.repo import RunCli, UserRepo, planned, request_lines
from tests.reconcile_helpers import batches
from tests.test_reuse_keeps_its_choice import applied
from tests.test_reuse_runs import REUSE, newest_batch, reconciled, sent_lines, write_emb


def files_under(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_plan_writes_no_answer_and_no_sent_file_and_apply_does_what_it_said(
    sandbox_repo: UserRepo, sandbox: Sandbox, run_cli: RunCli
) -> None:
    first = request_lines(30)
    write_emb(sandbox_repo, first, **REUSE)
    reconciled(run_cli, sandbox_repo)
    shutil.rmtree(sandbox_repo.root / ".reconciler")  # a fresh checkout: answers only at the provider
    write_emb(sandbox_repo, first + request_lines(33)[30:], **REUSE)

    change = planned(run_cli, sandbox_repo)["emb"]
    assert change["launch"]["requests"] == 3 and change["reused"]["requests"] == 30
    folder = sandbox_repo.root / ".reconciler"
    left = files_under(folder) if folder.exists() else {}
    assert "answers.sqlite" not in left
    assert not [name for name in left if "sent-" in name], left
    assert planned(run_cli, sandbox_repo)["emb"]["launch"]["requests"] == 3
    assert files_under(folder) == left if folder.exists() else not left  # a second plan: the same

    applied(run_cli, sandbox_repo)
    assert [line["custom_id"] for line in sent_lines(sandbox, newest_batch(sandbox))] == [
        "req-00031",
        "req-00032",
        "req-00033",
    ]
    assert (folder / "answers.sqlite").is_file()


def test_plan_leaves_the_answer_store_as_it_was(
    sandbox_repo: UserRepo, sandbox: Sandbox, run_cli: RunCli
) -> None:
    first = request_lines(20)
    write_emb(sandbox_repo, first, **REUSE)
    reconciled(run_cli, sandbox_repo)
    store = sandbox_repo.root / ".reconciler" / "answers.sqlite"
    before, state_before = store.read_bytes(), sandbox_repo.state.read_bytes()
    write_emb(sandbox_repo, first + request_lines(22)[20:], **REUSE)
    assert planned(run_cli, sandbox_repo)["emb"]["launch"]["requests"] == 2
    assert store.read_bytes() == before and sandbox_repo.state.read_bytes() == state_before


def read_only(db: Any, on: bool) -> None:
    """The test role's sessions in this database only read (`default_transaction_read_only`)."""
    setting = "SET default_transaction_read_only = on" if on else "RESET default_transaction_read_only"
    with db.server.admin(db.name) as conn:
        conn.execute(f"ALTER ROLE reconciler IN DATABASE {db.name} {setting}")


ANSWER_TABLES = ("reconciler_answers", "reconciler_answer_batches", "reconciler_answer_choices")


@pytest.mark.slow
def test_plan_on_postgresql_creates_no_table_and_runs_as_a_role_that_only_reads(
    make_repo: Any, sandbox: Sandbox, run_cli: RunCli, state_db: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RECONCILER_SANDBOX_URL", sandbox.base_url)
    monkeypatch.setenv("RECONCILER_OWNER", "tests/reconciler")
    monkeypatch.setenv("RECONCILER_STATE_URL", state_db.url)
    repo = make_repo("pr")
    first = request_lines(30)
    write_emb(repo, first)  # a run without reuse: the answer tables are never made
    reconciled(run_cli, repo)
    write_emb(repo, first + request_lines(33)[30:], **REUSE)

    read_only(state_db, True)
    try:  # a process of its own: nothing this one set up (tables checked, migrations) carries over
        command = [sys.executable, "-m", "reconciler", "plan", "--json", *repo.args()]
        result = subprocess.run(command, capture_output=True, text=True, env=os.environ.copy(), timeout=120)
    finally:
        read_only(state_db, False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert '"requests": 3' in result.stdout and '"total": 33' in result.stdout
    tables = {row[0] for row in state_db.query("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}
    assert not tables & set(ANSWER_TABLES), tables

    reconciled(run_cli, repo)
    assert len(batches(sandbox, "emb")) == 2
    assert len(sent_lines(sandbox, newest_batch(sandbox))) == 3


def test_an_unchanged_inputs_request_identities_are_computed_once_across_plans(
    sandbox_repo: UserRepo, sandbox: Sandbox, run_cli: RunCli
) -> None:
    first = request_lines(20)
    write_emb(sandbox_repo, first, **REUSE)
    reconciled(run_cli, sandbox_repo)
    write_emb(sandbox_repo, first + request_lines(23)[20:], **REUSE)
    assert planned(run_cli, sandbox_repo)["emb"]["launch"]["requests"] == 3
    kept = list((sandbox_repo.root / ".reconciler" / "inputs").glob("*.ids"))
    assert len(kept) == 2  # the first run's input, and this one
    newest = max(kept, key=lambda p: p.stat().st_mtime_ns)
    written = newest.stat()

    assert planned(run_cli, sandbox_repo)["emb"]["launch"]["requests"] == 3
    again = newest.stat()
    assert (again.st_ino, again.st_mtime_ns) == (written.st_ino, written.st_mtime_ns)  # not written again
    # ... and what the second plan used is the kept identities, not the input hashed anew: one
    # identity changed in the kept file is one more request sent.
    head, second, *rest = newest.read_text().splitlines(keepends=True)
    newest.write_text(head + second.rpartition(" ")[0] + " " + "0" * 64 + "\n" + "".join(rest))
    assert planned(run_cli, sandbox_repo)["emb"]["launch"]["requests"] == 4
