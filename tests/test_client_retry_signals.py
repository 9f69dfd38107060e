"""Issue 25, item 11: the server's own retry signals, as the official SDK reads them.

openai-python's `_base_client.py` (`_should_retry`, `_calculate_retry_timeout`,
`MAX_RETRY_AFTER_DELAY = 2 * 60`): `x-should-retry: true|false` decides; a Retry-After (or
`retry-after-ms`, or an HTTP date) up to two minutes is waited out, a longer one is not retried
in the request.  The daemon turns such a wait into its next pass instead of sleeping in one.
"""

from __future__ import annotations

import email.utils
import time
from collections.abc import Callable, Iterator

import httpx
import pytest

from reconciler.api.client import ProviderApi
from reconciler.api.transport import Backoff, Transport
from reconciler.common.errors import ApiStatusError
from tests.fixtures.daemon import StartDaemon, reconciler_env
from tests.fixtures.repo import MakeRepo, RunCli, UserRepo
from tests.hostile_server import HostileServer, hostile_server
from tests.reconcile_helpers import stays

ATTEMPTS = 3
ClientFor = Callable[[], tuple[ProviderApi, list[float]]]


@pytest.fixture
def hostile() -> Iterator[HostileServer]:
    with hostile_server() as server:
        yield server


@pytest.fixture
def client_for(hostile: HostileServer) -> Iterator[ClientFor]:
    """A client of the scripted behaviour with the default waits; its sleeps are recorded."""
    opened: list[httpx.Client] = []

    def make() -> tuple[ProviderApi, list[float]]:
        http = httpx.Client(base_url=hostile.base_url("scripted"), timeout=httpx.Timeout(5.0))
        opened.append(http)
        slept: list[float] = []
        backoff = Backoff(attempts=ATTEMPTS, initial=0.01, cap=0.02)
        return ProviderApi.over(Transport(http, backoff=backoff, sleep=slept.append)), slept

    yield make
    for http in opened:
        http.close()


def busy(hostile: HostileServer, status: int, **headers: str) -> None:
    hostile.script("/batches/busy", {"error": {"message": "slow down"}}, status=status, headers=headers)


def fetch(client: ProviderApi) -> ApiStatusError:
    with pytest.raises(ApiStatusError) as raised:
        client.reader.retrieve_batch("busy")
    return raised.value


def test_x_should_retry_false_stops_a_status_that_is_otherwise_retried(
    hostile: HostileServer, client_for: ClientFor
) -> None:
    busy(hostile, 503, **{"x-should-retry": "false"})
    client, slept = client_for()
    assert fetch(client).status == 503
    assert hostile.calls["GET /batches/busy"] == 1 and slept == []


def test_x_should_retry_true_retries_a_status_that_is_otherwise_final(
    hostile: HostileServer, client_for: ClientFor
) -> None:
    busy(hostile, 400, **{"x-should-retry": "true"})
    client, _ = client_for()
    assert fetch(client).status == 400
    assert hostile.calls["GET /batches/busy"] == ATTEMPTS


def test_x_should_retry_true_never_sends_a_create_twice(
    hostile: HostileServer, client_for: ClientFor
) -> None:
    hostile.script(
        "POST /batches", {"error": {"message": "oops"}}, status=500, headers={"x-should-retry": "true"}
    )
    client, _ = client_for()
    with pytest.raises(ApiStatusError):
        client.reader.transport.call("POST", "/batches", json={}, idempotent=False)
    assert hostile.calls["POST /batches"] == 1  # exactly-once is ours: the live list settles it


def test_a_retry_after_within_two_minutes_is_waited_out_in_full(
    hostile: HostileServer, client_for: ClientFor
) -> None:
    busy(hostile, 429, **{"retry-after": "90"})
    client, slept = client_for()
    fetch(client)
    assert slept == [90.0] * (ATTEMPTS - 1)  # 60 s was the bound before


@pytest.mark.parametrize(
    "headers",
    [{"retry-after": "121"}, {"retry-after-ms": "150000"}, {"retry-after": "3600", "x-should-retry": "true"}],
)
def test_a_wait_past_two_minutes_is_not_retried_and_is_handed_up_with_the_error(
    hostile: HostileServer, client_for: ClientFor, headers: dict[str, str]
) -> None:
    busy(hostile, 429, **headers)
    client, slept = client_for()
    error = fetch(client)
    assert hostile.calls["GET /batches/busy"] == 1 and slept == []
    assert error.retry_after is not None and error.retry_after > 120
    assert "the server asks to wait" in str(error) and "before trying again" in str(error)


def test_retry_after_as_an_http_date_is_read(hostile: HostileServer, client_for: ClientFor) -> None:
    soon = email.utils.formatdate(time.time() + 30, usegmt=True)
    busy(hostile, 503, **{"retry-after": soon})
    client, slept = client_for()
    fetch(client)
    assert len(slept) == ATTEMPTS - 1 and all(20 < s <= 31 for s in slept), slept


def test_retry_after_as_a_date_an_hour_away_is_not_retried(
    hostile: HostileServer, client_for: ClientFor
) -> None:
    later = email.utils.formatdate(time.time() + 3600, usegmt=True)
    busy(hostile, 503, **{"retry-after": later})
    client, slept = client_for()
    assert fetch(client).retry_after is not None
    assert hostile.calls["GET /batches/busy"] == 1 and slept == []


def test_a_command_told_to_wait_an_hour_fails_at_once_in_one_line(
    hostile: HostileServer, make_repo: MakeRepo, run_cli: RunCli, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RECONCILER_OWNER", "tests/retry-signals")
    hostile.script(
        "/batches", {"error": {"message": "slow down"}}, status=429, headers={"retry-after": "3600"}
    )
    repo = make_repo()
    repo.write_provider("busy", base_url=hostile.base_url("scripted"))
    repo.write_job("nightly-eval", provider="busy")
    result = run_cli("plan", *repo.args())
    assert result.exit_code == 1
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("error: provider busy: GET /scripted/v1/batches: HTTP 429: slow down")
    assert "asks to wait 60m" in line
    assert hostile.calls["GET /batches"] == 1


# The daemon -------------------------------------------------------------------------------


def daemon_repo(make_repo: MakeRepo, hostile: HostileServer) -> UserRepo:
    repo = make_repo()
    repo.write_provider("busy", base_url=hostile.base_url("scripted"))
    repo.write_job("nightly-eval", provider="busy")
    return repo


@pytest.mark.slow
def test_the_daemon_ends_a_pass_told_to_wait_and_schedules_the_next_when_the_wait_is_over(
    hostile: HostileServer, make_repo: MakeRepo, start_daemon: StartDaemon
) -> None:
    hostile.script("/batches", {"error": {"message": "slow down"}}, status=429, headers={"retry-after": "30"})
    repo = daemon_repo(make_repo, hostile)
    daemon = start_daemon(
        repo, None, "--log-format", "json", env=reconciler_env(owner="tests/retry-signals"), ready=None
    )
    failed = daemon.eventually(lambda: [e for e in daemon.events() if e["event"] == "pass_failed"])
    assert failed[0]["retry_in"] == 30.0  # the pass ended, and the next comes when the wait is over
    assert hostile.calls["GET /batches"] == 1  # not slept in the request and tried again
    stays(lambda: hostile.calls["GET /batches"] == 1, 2.0)  # four intervals: no pass comes early


@pytest.mark.slow
def test_the_daemon_waits_a_create_told_to_wait_before_the_next_pass(
    hostile: HostileServer, make_repo: MakeRepo, start_daemon: StartDaemon
) -> None:
    hostile.script("/batches", {"object": "list", "data": [], "has_more": False})
    hostile.script("/files", {"object": "list", "data": [], "has_more": False})
    upload = {"id": "file-1", "object": "file", "bytes": 1, "filename": "x.jsonl", "purpose": "batch"}
    hostile.script("POST /files", upload)
    too_many = {"error": {"message": "too many batches"}}
    hostile.script("POST /batches", too_many, status=429, headers={"retry-after": "30"})
    repo = daemon_repo(make_repo, hostile)
    daemon = start_daemon(repo, None, "--log-format", "json", env=reconciler_env(owner="tests/retry-signals"))
    waits = daemon.eventually(lambda: [e for e in daemon.events() if e["event"] == "server_wait"])
    assert "next pass in 30.0s" in str(waits[0]["message"])
    assert hostile.calls["POST /batches"] == 1
    stays(lambda: hostile.calls["POST /batches"] == 1, 2.0)  # pending: polled every 0.5 s otherwise
