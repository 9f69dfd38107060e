"""`reconcile --watch` flags: mistakes are one line, exit 1, and nothing is written."""

from __future__ import annotations

import json
import socket

import pytest

from tests.fixtures.repo import CliResult, RunCli, UserRepo


@pytest.fixture
def repo(user_repo: UserRepo, monkeypatch: pytest.MonkeyPatch) -> UserRepo:
    monkeypatch.setenv("RECONCILER_OWNER", "tests/watch-cli")
    return user_repo


def _refused(result: CliResult, repo: UserRepo, *words: str) -> None:
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ")
    assert all(word in lines[0] for word in words), lines[0]
    assert "Traceback" not in result.stderr
    assert repo.written() == []


@pytest.mark.parametrize("flag", [["--interval", "5"], ["--log-format", "json"], ["--health-port", "9090"]])
def test_daemon_flags_without_watch_are_refused(flag: list[str], repo: UserRepo, run_cli: RunCli) -> None:
    _refused(run_cli("reconcile", *flag, *repo.args()), repo, "only with --watch")


@pytest.mark.parametrize("flag", ["--wait", "--rebuild-state"])
def test_one_shot_flags_do_not_combine_with_watch(flag: str, repo: UserRepo, run_cli: RunCli) -> None:
    _refused(run_cli("reconcile", "--watch", flag, *repo.args()), repo, flag, "--watch")


@pytest.mark.parametrize("value", ["http", "localhost:99999", "9090:"])
def test_a_health_port_that_is_not_host_and_port_is_refused(
    value: str, repo: UserRepo, run_cli: RunCli
) -> None:
    _refused(run_cli("reconcile", "--watch", "--health-port", value, *repo.args()), repo, "PORT")


def test_a_daemon_without_an_owner_id_stops_before_taking_any_lock(
    repo: UserRepo, run_cli: RunCli, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("RECONCILER_OWNER")
    _refused(run_cli("reconcile", "--watch", *repo.args()), repo, "owner")


def test_a_health_port_already_in_use_is_one_line_and_exit_1(repo: UserRepo, run_cli: RunCli) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_cli("reconcile", "--watch", "--health-port", str(port), *repo.args())
    assert result.exit_code == 1
    assert result.stderr.strip().splitlines() == [
        f"error: --health-port 127.0.0.1:{port}: Address already in use"
    ]


def test_a_state_file_of_another_owner_stops_the_daemon_before_it_starts(
    repo: UserRepo, run_cli: RunCli
) -> None:
    repo.state.parent.mkdir()
    foreign = {"format_version": 1, "serial": 3, "lineage": "l-1", "owner": "0123456789abcdef", "jobs": {}}
    repo.state.write_text(json.dumps(foreign), encoding="utf-8")
    result = run_cli("reconcile", "--watch", *repo.args())
    assert result.exit_code == 1
    assert "belongs to owner tag 0123456789abcdef" in result.stderr
    assert repo.written() == [".reconciler/state.json"]  # not even the daemon's lock file
