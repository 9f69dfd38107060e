"""Issue 15, items 12, 17, 18 and 20: provider statuses, the sandbox's headers, and CLI edges."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from reconciler.sandbox import Sandbox
from tests.fixtures.repo import MakeRepo, RunCli, UserRepo
from tests.fixtures.sandbox import cli_env
from tests.reconcile_helpers import wait_until

OWNER = "tests/hardening"


@pytest.fixture(autouse=True)
def _owner(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RECONCILER_OWNER", OWNER)


@pytest.fixture
def local(make_repo: MakeRepo, sandbox: Sandbox) -> UserRepo:
    repo = make_repo()
    repo.write_provider("local", base_url=sandbox.base_url)
    return repo


# 12. ------------------------------------------------ Portkey's terminal statuses


@pytest.mark.slow
@pytest.mark.parametrize("status", ["file_upload_failed", "batch_start_failed"])
def test_a_portkey_start_failure_is_retried_by_batch_failed(
    local: UserRepo, sandbox: Sandbox, run_cli: RunCli, status: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    sandbox.configure(start_failure=status)
    # Past the waits of the two restarts a failed start gets first (issue 25, item 14).
    monkeypatch.setenv("RECONCILER_NOW", (datetime.now(UTC) + timedelta(hours=1)).isoformat())
    local.write_job(
        "nightly-eval",
        provider="local",
        results="../out/r.jsonl",
        retry={"max_attempts": 2, "on": ["batch_failed"]},
    )
    result = run_cli("reconcile", "--wait", "--timeout", "60", *local.args())
    # --wait fails a job that ended without completing, naming it and its status
    assert result.exit_code == 1 and f"nightly-eval: ended {status}" in result.stderr, result.stderr
    state = json.loads(local.state.read_text())["jobs"]["nightly-eval"]
    # Restarted twice (free), then retried once (max_attempts 2); the sandbox failed each the same way.
    assert [(b["status"], b["retry"]) for b in state["batches"]] == [(status, n) for n in (1, 2, 3, 4)]
    lines = [json.loads(line) for line in (local.root / "out" / "r.jsonl").read_text().splitlines()]
    assert {line["error"]["code"] for line in lines} == {"batch_failed"}
    # Item 20: an unanswered request names the last batch it was sent in.
    assert {(line["batch_id"], line["attempt"]) for line in lines} == {(state["batches"][3]["batch_id"], 4)}


# 17. --------------------------------------------------- the sandbox's Retry-After


def test_the_sandbox_sends_whole_seconds_in_retry_after_and_the_precise_wait_in_ms(sandbox: Sandbox) -> None:
    sandbox.configure(fault_rate=1.0, retry_after_seconds=0.05)
    statuses = set()
    with httpx.Client(base_url=sandbox.base_url) as http:
        for _ in range(20):
            response = http.get("/batches")
            statuses.add(response.status_code)
            if response.status_code in (429, 503):
                assert response.headers["retry-after"] == "1"
                assert response.headers["retry-after-ms"] == "50"
    assert statuses & {429, 503}


# 18. -------------------------------------------------------- nothing to approve


def test_apply_off_a_terminal_with_nothing_to_do_exits_0(local: UserRepo, run_cli: RunCli) -> None:
    local.write_job("nightly-eval", provider="local")
    assert run_cli("apply", "--auto-approve", *local.args()).exit_code == 0
    result = run_cli("apply", *local.args())  # stdin is not a terminal under pytest
    assert result.exit_code == 0, result.stderr
    assert "No changes" in result.stdout and result.stderr == ""


def test_apply_off_a_terminal_with_changes_still_refuses(
    local: UserRepo, sandbox: Sandbox, run_cli: RunCli
) -> None:
    local.write_job("nightly-eval", provider="local")
    result = run_cli("apply", *local.args())
    assert result.exit_code == 1
    assert result.stderr.strip() == (
        "error: apply asks before changing anything: pass --auto-approve, or a saved plan file"
    )
    assert sandbox.request_counts().get("POST /v1/batches", 0) == 0


# 20. ---------------------------------------------------------------- the rest


def test_status_on_a_damaged_state_is_one_line_and_exit_1_as_documented(
    user_repo: UserRepo, run_cli: RunCli
) -> None:
    user_repo.state.parent.mkdir(parents=True)
    user_repo.state.write_text("{not json")
    result = run_cli("status", *user_repo.args())
    assert result.exit_code == 1
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("error: ") and "Traceback" not in result.stderr


def test_plan_json_with_format_markdown_is_refused_not_silently_json(
    user_repo: UserRepo, run_cli: RunCli
) -> None:
    result = run_cli("plan", "--json", "--format", "markdown", *user_repo.args())
    assert result.exit_code == 1 and result.stdout == ""
    assert "--json and --format markdown ask for two formats" in result.stderr


def test_sandbox_help_offers_no_specs_or_state(run_cli: RunCli) -> None:
    result = run_cli("sandbox", "--help")
    assert result.exit_code == 0
    assert "--repo" in result.stdout and "--specs" not in result.stdout and "--state" not in result.stdout
    assert "--start-failure [file_upload_failed|batch_start_failed]" in result.stdout


def test_the_applied_line_counts_adopt_and_forget(local: UserRepo, run_cli: RunCli, tmp_path: Path) -> None:
    local.write_job("nightly-eval", provider="local")
    local.write_job("second", provider="local")
    assert run_cli("apply", "--auto-approve", *local.args()).exit_code == 0
    local.state.unlink()  # the batches are live but no longer recorded: adopt them
    adopted = run_cli("apply", "--auto-approve", *local.args())
    assert "Applied: 0 created, 0 cancelled, 2 adopted, 0 forgotten, 0 failed; 2 jobs." in adopted.stdout
    (local.specs / "second.yaml").unlink()
    removed = run_cli("apply", "--auto-approve", *local.args())
    assert "1 cancelled" in removed.stdout or "1 forgotten" in removed.stdout, removed.stdout


@pytest.mark.slow
def test_sighup_is_logged_and_the_daemon_keeps_running(local: UserRepo, tmp_path: Path) -> None:
    local.write_job("nightly-eval", provider="local")
    log_path = tmp_path / "daemon.log"
    command = [sys.executable, "-m", "reconciler", "reconcile", "--watch", "--interval", "0.2", *local.args()]
    with log_path.open("wb") as log:
        daemon = subprocess.Popen(
            command, env=cli_env() | {"RECONCILER_OWNER": OWNER}, stdout=log, stderr=log
        )
    try:
        wait_until(
            lambda: "start" in log_path.read_text() or "reconciling" in log_path.read_text(), timeout=30
        )
        daemon.send_signal(signal.SIGHUP)
        wait_until(lambda: "SIGHUP: reloading the specs" in log_path.read_text(), timeout=30)
        assert daemon.poll() is None  # still running
    finally:
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(timeout=30) == 0
    assert "stopped" in log_path.read_text()
