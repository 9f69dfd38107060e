"""What people see of a reusing run (spec.reuse), the same everywhere: `output`'s text, `status
JOB`'s runs, `status` and the dashboard write reused counts alike; `output --download` says
where the answers are; the plan names "most" of a source run only when there are several."""

from __future__ import annotations

import json

import pytest

from reconciler.sandbox import Sandbox
from tests.fixtures.repo import RunCli, UserRepo, request_lines
from tests.test_reuse_runs import REUSE, reconciled, write_emb


@pytest.mark.slow
def test_reused_counts_read_alike_in_output_status_runs_and_the_dashboard(
    sandbox_repo: UserRepo, sandbox: Sandbox, run_cli: RunCli
) -> None:
    first = request_lines(1001)
    write_emb(sandbox_repo, first, **REUSE)
    reconciled(run_cli, sandbox_repo)
    write_emb(sandbox_repo, request_lines(1002), **REUSE)
    plan = run_cli("plan", *sandbox_repo.args()).stdout
    assert "1 of 1,002 requests (1,001 reused from run default)" in plan, plan
    reconciled(run_cli, sandbox_repo)

    shown = run_cli("output", *sandbox_repo.args()).stdout
    assert "1/0/1 done/failed/total +1,001 reused" in shown, shown
    detail = run_cli("status", "emb", *sandbox_repo.args()).stdout
    current = [line for line in detail.splitlines() if "(current)" in line]
    assert current and "1/0/1 +1,001 reused" in current[0], detail
    table = run_cli("status", "--offline", *sandbox_repo.args()).stdout
    assert "1/0/1 +1,001 reused" in table, table
    assert "1 request:" in table and "1 requests" not in table, table

    from reconciler.daemon.board import Snapshot
    from reconciler.daemon.dashboard import job_page, overview
    from reconciler.state.file import FileBackend

    snap = Snapshot(version=1, state=FileBackend(sandbox_repo.state, None).read())
    assert "1/1 +1,001 reused" in overview(snap)
    page = job_page(snap, "emb")
    assert page is not None and "1/1 +1,001 reused" in page

    refused = run_cli("output", "emb", "--download", str(sandbox_repo.root / "dl"), *sandbox_repo.args())
    assert refused.exit_code == 1
    assert "set results:" not in refused.stderr and "results file" in refused.stderr, refused.stderr
    job = json.loads(run_cli("status", "--json", *sandbox_repo.args()).stdout)["jobs"]["emb"]
    assert job["results"]["path"] in refused.stderr

    write_emb(sandbox_repo, request_lines(1003), run="third", **REUSE)
    plan = run_cli("plan", *sandbox_repo.args()).stdout
    assert "1 of 1,003 requests (1,002 reused most from run default)" in plan, plan
