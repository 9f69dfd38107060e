"""validate is offline: the sample repo validates end to end, and no provider hears from it."""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.fixtures.repo import RunCli, UserRepo

ROOT = Path(__file__).resolve().parent.parent


class CountingHandler(BaseHTTPRequestHandler):
    requests: list[str] = []

    def do_GET(self) -> None:
        self._answer()

    def do_POST(self) -> None:
        self._answer()

    def _answer(self) -> None:
        CountingHandler.requests.append(f"{self.command} {self.path}")
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.end_headers()
        self.wfile.write(b'{"object": "list", "data": [], "has_more": false}')

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def counting_server() -> Iterator[str]:
    """A real HTTP server on loopback that only counts what reaches it."""
    CountingHandler.requests = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), CountingHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()
    server.server_close()


def test_the_sample_repo_validates_as_a_user_would_run_it(tmp_path: Path) -> None:
    state = tmp_path / "state" / "state.json"  # keeps the input cache out of the checkout
    done = subprocess.run(
        [sys.executable, "-m", "reconciler", "validate", "--state", str(state)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (done.returncode, done.stdout, done.stderr) == (0, "1 job, 0 providers: valid\n", "")


def test_a_broken_repo_fails_end_to_end_without_a_traceback(user_repo: UserRepo) -> None:
    user_repo.write_job("broken", endpoint="/v1/chats")
    done = subprocess.run(
        [sys.executable, "-m", "reconciler", "validate", "--repo", str(user_repo.root)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1
    assert done.stderr.startswith("error: specs/broken.yaml:6: spec.endpoint: '/v1/chats'")
    assert "Traceback" not in done.stderr
    assert user_repo.written() == []


def test_validate_sends_nothing_and_reads_no_variable(
    user_repo: UserRepo, run_cli: RunCli, counting_server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("NEVER_SET_KEY", raising=False)
    user_repo.write_provider(
        "gateway", base_url=counting_server, headers={"Authorization": "Bearer ${NEVER_SET_KEY}"}
    )
    user_repo.write_job("via-gateway", provider="gateway")
    result = run_cli("validate", *user_repo.args())
    assert (result.exit_code, result.stdout) == (0, "2 jobs, 1 provider: valid\n"), result.stderr
    assert CountingHandler.requests == []
