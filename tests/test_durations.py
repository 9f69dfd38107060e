"""Every number of seconds a command reads, from a flag or the environment: finite and in range.

`--interval inf` crashed the daemon after its first pass (a wait past what threading
accepts), `--interval nan` was taken and the daemon then waited forever, a NaN HTTP timeout
was a traceback. Each such value is now one line and exit 1, before anything starts. The
commands run as subprocesses, so a value taken by mistake cannot hang the test run.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from reconciler.sandbox import Sandbox
from tests.fixtures.daemon import reconciler_env, watch_command
from tests.fixtures.repo import UserRepo
from tests.reconcile_helpers import mutating

NOT_SECONDS = ["inf", "nan", "-1", "1e300"]


def run(command: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=30)


def refused(result: subprocess.CompletedProcess[str], *words: str) -> None:
    assert result.returncode == 1, result.stdout + result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("error: ") and all(word in line for word in words), line


@pytest.mark.parametrize("value", NOT_SECONDS)
def test_the_daemon_refuses_an_interval_that_is_not_a_finite_number_of_seconds(
    value: str, user_repo: UserRepo, sandbox: Sandbox
) -> None:
    result = run(watch_command(user_repo, "--interval", value), reconciler_env(sandbox))
    refused(result, "--interval", repr(value))
    assert user_repo.written() == []
    assert sandbox.request_counts() == {}


@pytest.mark.parametrize("value", ["inf", "nan", "-1"])
def test_reconcile_wait_refuses_a_timeout_that_is_not_a_finite_number_of_seconds(
    value: str, user_repo: UserRepo, sandbox: Sandbox
) -> None:
    command = [sys.executable, "-m", "reconciler", "reconcile", "--wait", "--timeout", value]
    refused(run([*command, *user_repo.args()], reconciler_env(sandbox)), "--timeout", repr(value))
    assert sandbox.request_counts() == {}


@pytest.mark.parametrize("wait", [(), ("--wait",)])
def test_reconcile_refuses_a_timeout_of_zero_which_would_end_it_before_it_began(
    wait: tuple[str, ...], user_repo: UserRepo, sandbox: Sandbox
) -> None:
    command = [sys.executable, "-m", "reconciler", "reconcile", *wait, "--timeout", "0"]
    refused(run([*command, *user_repo.args()], reconciler_env(sandbox)), "--timeout", "must be more than 0")
    assert user_repo.written() == []
    assert sandbox.request_counts() == {}


@pytest.mark.parametrize(
    "variable", ["RECONCILER_LOCK_TIMEOUT", "RECONCILER_HTTP_TIMEOUT", "RECONCILER_CREATE_QUARANTINE"]
)
@pytest.mark.parametrize("value", ["nan", "inf"])
def test_a_number_of_seconds_from_the_environment_must_be_finite(
    variable: str, value: str, user_repo: UserRepo, sandbox: Sandbox
) -> None:
    command = [sys.executable, "-m", "reconciler", "reconcile", *user_repo.args()]
    result = run(command, reconciler_env(sandbox, **{variable: value}))
    refused(result, f"${variable}={value!r} is not a finite number of seconds")
    assert mutating(sandbox.request_counts()) == {}


@pytest.mark.parametrize("value", ["nan", "1e300"])
def test_the_sandbox_refuses_a_latency_that_is_not_a_finite_number_of_seconds(value: str) -> None:
    result = run(
        [sys.executable, "-m", "reconciler", "sandbox", "--port", "0", "--latency-seconds", value],
        reconciler_env(),
    )
    refused(result, "--latency-seconds", repr(value))


@pytest.mark.parametrize("value", ["inf", "1e300"])
def test_the_sandbox_refuses_a_rate_past_its_bound(value: str) -> None:
    result = run(
        [sys.executable, "-m", "reconciler", "sandbox", "--port", "0", "--requests-per-second", value],
        reconciler_env(),
    )
    refused(result, "--requests-per-second")
