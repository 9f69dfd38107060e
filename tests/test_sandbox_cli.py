"""`reconciler sandbox` as a user runs it: help, flag errors, startup line, clean exit."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from reconciler.sandbox.config import SandboxConfig
from tests.fixtures.sandbox import FAST_FLAGS, cli_env, cli_sandbox


def run_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "reconciler", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=cli_env(),
        cwd=cwd,
    )


@pytest.mark.slow
def test_help_documents_every_knob() -> None:
    done = run_cli("sandbox", "--help")

    assert done.returncode == 0
    for knob in SandboxConfig.model_fields:
        assert f"--{knob.replace('_', '-')}" in done.stdout
    for flag in ("--host", "--port", "--data"):
        assert flag in done.stdout


@pytest.mark.slow
@pytest.mark.parametrize(
    ("flag", "value", "named"),
    [
        ("--fault-rate", "1.5", "--fault-rate"),
        ("--lost-response-rate", "-0.1", "--lost-response-rate"),
        ("--requests-per-second", "0", "--requests-per-second"),
        ("--expiry-seconds", "inf", "--expiry-seconds"),
        ("--latency-seconds", "soon", "--latency-seconds"),
        ("--port", "70000", "--port"),
    ],
)
def test_a_bad_flag_value_is_one_line_and_exit_1(flag: str, value: str, named: str, tmp_path: Path) -> None:
    done = run_cli("sandbox", "--data", str(tmp_path / "data"), flag, value)

    assert done.returncode == 1
    assert done.stdout == ""
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and named in lines[0] and "Traceback" not in done.stderr
    assert not (tmp_path / "data").exists()  # nothing written


@pytest.mark.slow
def test_runs_prints_its_url_serves_and_exits_0_on_sigterm(tmp_path: Path) -> None:
    with cli_sandbox(tmp_path / "data", *FAST_FLAGS, "--api-key", "sk-cli") as (process, url):
        assert url.startswith("http://127.0.0.1:")
        assert httpx.get(f"{url}/batches").status_code == 401
        ok = httpx.get(f"{url}/batches", headers={"Authorization": "Bearer sk-cli"})
        assert ok.status_code == 200
        config = httpx.get(url.replace("/v1", "/_sandbox/config")).json()
        assert config["requests_per_second"] == 500 and config["api_key"] == "***"
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=20) == 0
        assert process.stderr is not None and process.stderr.read() == ""
    assert (tmp_path / "data" / "batches").is_dir()


@pytest.mark.slow
def test_sigint_stops_it_with_exit_0(tmp_path: Path) -> None:
    with cli_sandbox(tmp_path / "data") as (process, _):
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=20) == 0


@pytest.mark.slow
def test_data_defaults_to_the_repos_sandbox_dir(tmp_path: Path) -> None:
    with cli_sandbox(None, "--repo", str(tmp_path)) as (_, url):
        assert httpx.get(f"{url}/batches").status_code == 200
    assert (tmp_path / ".reconciler" / "sandbox" / "batches").is_dir()


@pytest.mark.slow
def test_a_port_in_use_is_one_line_and_exit_1(tmp_path: Path) -> None:
    with cli_sandbox(tmp_path / "a") as (_, url):
        port = url.rsplit(":", 1)[1].split("/")[0]
        done = run_cli("sandbox", "--data", str(tmp_path / "b"), "--port", port)

    assert done.returncode == 1
    assert len(done.stderr.splitlines()) == 1 and port in done.stderr
    assert not (tmp_path / "b").exists()  # nothing written
