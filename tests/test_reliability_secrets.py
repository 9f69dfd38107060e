"""Secrets: a recognisable key, read through `${VAR}`, reaches no file and no output.

The sandbox requires the key, so every pass that succeeds proves the key was sent; then
every file under the test's temporary folder (the repo, its state, backup, lock, saved
plan, results, work dir, the sandbox's own data and the daemon's log) and everything any
command printed, on success and on every error path, is searched for it.
"""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

import pytest

from reconciler.sandbox import Sandbox
from tests.fixtures.daemon import StartDaemon, reconciler_env
from tests.fixtures.repo import MakeRepo, RunCli, UserRepo
from tests.hostile_server import hostile_server

KEY = f"sk-reliability-{secrets.token_hex(16)}"
PORTKEY = f"pk-reliability-{secrets.token_hex(16)}"
WRONG = f"sk-wrong-{secrets.token_hex(16)}"
HEADERS = {"Authorization": "Bearer ${RECON_TEST_KEY}", "x-portkey-api-key": "${RECON_TEST_PORTKEY}"}


def leaks(text: str | bytes) -> list[str]:
    """Which secrets `text` holds, whole or as a telling piece (a middle slice survives masking)."""
    data = text.encode() if isinstance(text, str) else text
    found = []
    for secret in (KEY, PORTKEY, WRONG):
        pieces = (secret, secret[-20:-4])
        if any(piece.encode() in data for piece in pieces):
            found.append(secret[:12])
    return found


def files_with_secrets(root: Path) -> dict[str, list[str]]:
    return {
        str(path.relative_to(root)): found
        for path in root.rglob("*")
        if path.is_file() and (found := leaks(path.read_bytes()))
    }


@pytest.fixture
def secure(make_repo: MakeRepo, sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch) -> UserRepo:
    """A repo whose only provider is the sandbox, behind a key passed as `${VAR}`."""
    sandbox.configure(api_key=KEY)
    monkeypatch.setenv("RECONCILER_OWNER", "tests/secrets")
    monkeypatch.setenv("RECON_TEST_KEY", KEY)
    monkeypatch.setenv("RECON_TEST_PORTKEY", PORTKEY)
    repo = make_repo()
    repo.write_provider("secure", base_url=sandbox.base_url, headers=HEADERS)
    repo.write_job(
        "nightly-eval",
        provider="secure",
        requests=4,
        results="../results/nightly-eval.jsonl",
        retry={"max_attempts": 2},
    )
    return repo


def outputs(run_cli: Any, repo: Any, *commands: tuple[str, ...]) -> list[Any]:
    return [run_cli(*command, *repo.args()) for command in commands]


def assert_clean(results: list[Any], root: Path) -> None:
    for result in results:
        assert leaks(result.stdout + result.stderr) == [], result.stdout + result.stderr
        assert "Traceback" not in result.stderr
    assert files_with_secrets(root) == {}


def test_the_key_reaches_no_file_and_no_output_on_the_happy_path(
    secure: UserRepo, run_cli: RunCli, tmp_path: Path
) -> None:
    plan_file = secure.root / "plan.json"
    results = outputs(
        run_cli,
        secure,
        ("validate",),
        ("plan",),
        ("plan", "--json", "--out", str(plan_file)),
        ("plan", "--format", "markdown"),
        ("apply", str(plan_file)),
        ("reconcile", "--wait", "--timeout", "60"),
        ("status",),
        ("status", "--json"),
    )
    assert [r.exit_code for r in results] == [0, 0, 0, 0, 0, 0, 0, 0], [r.stderr for r in results]
    assert (secure.root / "results" / "nightly-eval.jsonl").exists()  # the key really worked
    assert_clean(results, tmp_path)


def test_a_wrong_key_a_missing_key_and_a_dead_host_fail_without_showing_a_key(
    secure: UserRepo, run_cli: RunCli, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("RECON_TEST_KEY", WRONG)
    wrong = outputs(run_cli, secure, ("plan",), ("apply", "--auto-approve"), ("reconcile",))
    assert all(r.exit_code == 1 and "HTTP 401" in r.stderr for r in wrong), [r.stderr for r in wrong]
    monkeypatch.delenv("RECON_TEST_KEY")
    missing = outputs(run_cli, secure, ("plan",), ("apply", "--auto-approve"))
    assert all(r.exit_code == 1 and "${RECON_TEST_KEY}" in r.stderr for r in missing)
    monkeypatch.setenv("RECON_TEST_KEY", KEY)
    (secure.specs / "secure.yaml").unlink()
    secure.write_provider("secure", base_url="http://127.0.0.1:9/v1", headers=HEADERS)
    dead = outputs(run_cli, secure, ("plan",), ("reconcile",))
    assert all(r.exit_code == 1 and "(connection refused)" in r.stderr for r in dead), [
        r.stderr for r in dead
    ]
    assert_clean(wrong + missing + dead, tmp_path)


def test_a_server_that_echoes_the_key_back_has_it_scrubbed_from_the_error(
    secure: UserRepo, run_cli: RunCli, tmp_path: Path
) -> None:
    with hostile_server() as hostile:
        (secure.specs / "secure.yaml").unlink()
        secure.write_provider("secure", base_url=hostile.base_url("echo-auth"), headers=HEADERS)
        results = outputs(run_cli, secure, ("plan",), ("reconcile",))
    assert all(r.exit_code == 1 and "Incorrect API key provided: Bearer ***" in r.stderr for r in results)
    assert_clean(results, tmp_path)


def test_the_daemon_log_holds_no_key_on_success_or_on_a_401(
    secure: UserRepo, start_daemon: StartDaemon, tmp_path: Path
) -> None:
    log_path = tmp_path / "daemon.log"
    for key in (KEY, WRONG):
        env = reconciler_env(owner="tests/secrets", RECON_TEST_PORTKEY=PORTKEY, RECON_TEST_KEY=key)
        daemon = start_daemon(
            secure,
            None,
            "--log-format",
            "json",
            interval="0.2",
            env=env,
            log_file=log_path,
            ready=None,
            stdout_to_log=True,
        )
        try:
            daemon.wait_for_log("HTTP 401" if key == WRONG else '"created"', timeout=60)
        finally:
            daemon.stop(timeout=30)
    assert "HTTP 401" in log_path.read_text()
    assert files_with_secrets(tmp_path) == {}


def test_the_search_finds_a_key_even_with_its_tail_masked(tmp_path: Path) -> None:
    (tmp_path / "log.txt").write_text(f"Incorrect API key provided: {KEY[:-4]}****")
    assert files_with_secrets(tmp_path) == {"log.txt": [KEY[:12]]}
