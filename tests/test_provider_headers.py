"""Issue 25, item 10: headers the HTTP client owns are refused in specs, before any request.

A Provider (or Notification) header such as `Content-Length: 5` used to reach httpx: a number
crashed `plan` with an h11 traceback, anything else was retried for seconds on every command.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.fixtures.repo import MakeRepo, RunCli, UserRepo
from tests.hostile_server import HostileServer, hostile_server
from tests.test_validate_specs import assert_rejected, provider_text


@pytest.fixture(scope="module")
def hostile() -> Iterator[HostileServer]:
    with hostile_server() as server:
        yield server


@pytest.fixture(autouse=True)
def _owner(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RECONCILER_OWNER", "tests/headers")


def repo_with_header(make_repo: MakeRepo, base_url: str, header: str) -> UserRepo:
    repo = make_repo()
    repo.write_spec("specs/portkey.yaml", provider_text(base_url=base_url, headers=f"    {header}\n"))
    repo.write_job("nightly-eval", provider="portkey")
    return repo


@pytest.mark.parametrize(
    "header",
    [
        "Content-Length: '5'",
        "content-length: abc",
        "Transfer-Encoding: chunked",
        "Host: api.example.com",
        "Connection: close",
        "Content-Type: application/json",
        "Upgrade: h2c",
        "Accept-Encoding: br",
    ],
)
def test_validate_refuses_a_header_the_http_client_sets_itself(
    make_repo: MakeRepo, run_cli: RunCli, header: str
) -> None:
    name = header.split(":", 1)[0]
    repo = repo_with_header(make_repo, "http://127.0.0.1:9/v1", header)
    result = run_cli("validate", *repo.args())
    assert_rejected(result, repo, f"specs/portkey.yaml:8: spec.headers.{name}:", "set by the HTTP client")


@pytest.mark.parametrize("value", ["'5'", "abc"])
@pytest.mark.parametrize("command", ["plan", "apply", "reconcile"])
def test_a_reserved_header_fails_every_command_in_one_line_before_any_request(
    make_repo: MakeRepo, run_cli: RunCli, hostile: HostileServer, value: str, command: str
) -> None:
    repo = repo_with_header(make_repo, hostile.base_url("scripted"), f"Content-Length: {value}")
    before = hostile.requests["scripted"]
    args = ["--auto-approve"] if command == "apply" else []
    result = run_cli(command, *args, *repo.args())
    assert result.exit_code == 1 and "Traceback" not in result.stderr, result.stderr
    where = "error: specs/portkey.yaml:8: spec.headers.Content-Length: "
    assert any(line.startswith(where) for line in result.stderr.splitlines()), result.stderr
    assert hostile.requests["scripted"] == before  # nothing was sent, not even a list
    assert not repo.state.exists()


def test_an_ordinary_header_still_validates(make_repo: MakeRepo, run_cli: RunCli) -> None:
    repo = repo_with_header(make_repo, "http://127.0.0.1:9/v1", "x-portkey-provider: openai")
    result = run_cli("validate", *repo.args())
    assert result.exit_code == 0, result.stderr


def test_a_notification_header_the_client_owns_is_refused_too(make_repo: MakeRepo, run_cli: RunCli) -> None:
    repo = make_repo()
    repo.write_job("nightly-eval")
    repo.write_spec(
        "specs/notify.yaml",
        """
        apiVersion: reconciler/v1
        kind: Notification
        metadata:
          name: team
        spec:
          url: https://hooks.example.com/x
          headers:
            Content-Length: "12"
        """,
    )
    result = run_cli("validate", *repo.args())
    assert_rejected(
        result, repo, "specs/notify.yaml:8: spec.headers.Content-Length:", "set by the HTTP client"
    )
