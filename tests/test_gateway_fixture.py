"""The gateway harness itself: loopback only, no node left behind, a clear failure without node."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.fixtures.gateway import READY_TEXT, Gateway

ROOT = Path(__file__).resolve().parents[1]
INNER_TEST = """
import os
from pathlib import Path

def test_record_the_gateway(portkey_gateway) -> None:
    Path(os.environ["GATEWAY_PID_FILE"]).write_text(str(portkey_gateway.pid))
"""


def _listening_addresses(port: int) -> set[str]:
    """Local IPv4/IPv6 addresses with a socket listening on `port`, from /proc/net/tcp*."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for row in Path(table).read_text().splitlines()[1:]:
            local, state = row.split()[1], row.split()[3]
            address, hex_port = local.split(":")
            if state == "0A" and int(hex_port, 16) == port:  # 0A: LISTEN
                found.add(address)
    return found


def test_gateway_answers_and_listens_on_127_0_0_1_only(portkey_gateway: Gateway) -> None:
    port = int(portkey_gateway.root_url.rsplit(":", 1)[1])

    assert httpx.get(f"{portkey_gateway.root_url}/").text == READY_TEXT
    assert _listening_addresses(port) == {"0100007F"}  # 127.0.0.1, little-endian hex


def _run_inner_session(tmp_path: Path, path_env: str) -> tuple[subprocess.CompletedProcess[str], Path]:
    test_file = tmp_path / "test_inner_gateway.py"
    test_file.write_text(INNER_TEST)
    pid_file = tmp_path / "gateway.pid"
    env = {"PATH": path_env, "PYTHONPATH": str(ROOT), "GATEWAY_PID_FILE": str(pid_file)}
    env |= {name: os.environ[name] for name in ("HOME", "TMPDIR") if name in os.environ}
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(test_file)]
    command += ["-p", "tests.fixtures.sandbox", "-p", "tests.fixtures.gateway", "--rootdir", str(tmp_path)]
    run = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False)
    return run, pid_file


@pytest.mark.slow
def test_a_session_stops_its_gateway_when_it_ends(tmp_path: Path) -> None:
    run, pid_file = _run_inner_session(tmp_path, os.environ["PATH"])

    assert run.returncode == 0, run.stdout + run.stderr
    pid = int(pid_file.read_text())
    assert not Path(f"/proc/{pid}").exists()


@pytest.mark.slow
def test_without_node_the_gateway_tests_fail_saying_how_to_install_not_skip(tmp_path: Path) -> None:
    empty_bin = tmp_path / "bin"
    empty_bin.mkdir()

    run, pid_file = _run_inner_session(tmp_path, str(empty_bin))

    assert run.returncode == 1, run.stdout
    assert "1 error" in run.stdout and "skipped" not in run.stdout
    assert "npm install --prefix tests --no-audit --no-fund --no-package-lock" in run.stdout
    assert not pid_file.exists()
