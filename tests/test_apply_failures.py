"""Issue 25, item 9: failures are data (job, step, part, attempt, HTTP status) until printed.

A job split in parts used to keep only its last part's failure, and the daemon found HTTP
statuses again in that text with a regular expression.  Each part's failure is now kept and
shown, and the daemon's log and metrics read the status from the failure itself.
"""

from __future__ import annotations

import re

import httpx
import pytest

from reconciler.sandbox import Sandbox
from tests.fixtures.daemon import StartDaemon
from tests.fixtures.repo import RunCli, UserRepo
from tests.fixtures.sandbox import SandboxFactory


def split_job(repo: UserRepo) -> None:
    repo.write_job("nightly-eval", requests=4, split={"max_requests": 2})


@pytest.fixture
def lost_answers(sandbox: Sandbox) -> Sandbox:
    sandbox.configure(lost_response_rate=1.0)  # every create is made, and answered 500
    return sandbox


def test_apply_names_the_failure_of_every_part_of_a_split_job(
    sandbox_repo: UserRepo, lost_answers: Sandbox, run_cli: RunCli
) -> None:
    split_job(sandbox_repo)
    result = run_cli("apply", "--auto-approve", *sandbox_repo.args())
    assert result.exit_code == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert [line.split(": outcome unknown")[0] for line in errors] == [
        "error: nightly-eval: create part 0 attempt 1: create batch",
        "error: nightly-eval: create part 1 attempt 1: create batch",
    ], result.stderr
    assert all("HTTP 500" in line for line in errors)
    assert "1 failed; 1 job." in result.stdout  # jobs are counted once, however many parts failed


@pytest.mark.slow
def test_the_daemon_logs_and_counts_each_part_failure_by_its_http_status(
    sandbox_factory: SandboxFactory, sandbox_repo: UserRepo, start_daemon: StartDaemon
) -> None:
    sandbox = sandbox_factory(lost_response_rate=1.0)
    split_job(sandbox_repo)
    daemon = start_daemon(sandbox_repo, sandbox, "--health-port", "0", "--log-format", "json")

    def failed() -> list[dict[str, object]]:
        found = [e for e in daemon.events() if e["event"] == "action_failed"]
        return found if len(found) >= 2 else []

    events = daemon.eventually(failed)
    first_pass = [e for e in events if e["pass"] == events[0]["pass"]]
    assert sorted((e["job"], e["step"], e["part"], e["attempt"], e["status"]) for e in first_pass) == [
        ("nightly-eval", "create", 0, 1, 500),
        ("nightly-eval", "create", 1, 1, 500),
    ]
    port = next(e["port"] for e in daemon.events() if e["event"] == "health")
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
        metrics = http.get("/metrics").text
    counted = re.search(r'reconciler_api_errors_total\{status="500"\} (\d+)', metrics)
    assert counted and int(counted.group(1)) >= 2, metrics
    assert 'status="other"' not in metrics
