"""Issue 15, items 3-5 and 16: the transport against a real hostile server.

Every request ends by a deadline (retries included), no body is taken past its cap, a
redirect is an error that names where it pointed, and error bodies of every shape a
provider uses are read for their message.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from reconciler.api.client import ProviderApi
from reconciler.api.transport import Backoff, Transport
from reconciler.common.errors import ApiConnectionError, ApiStatusError
from reconciler.engine.converge import default_timeout
from reconciler.sandbox import Sandbox
from tests.fixtures.repo import MakeRepo, RunCli
from tests.fixtures.sandbox import cli_env
from tests.hostile_server import HostileServer, hostile_server

ATTEMPTS = 3
MIB = 1 << 20

# A client of one of the hostile server's behaviours, with transport settings as keywords.
ClientFor = Callable[..., tuple[ProviderApi, list[float]]]


@pytest.fixture(scope="module")
def hostile() -> Iterator[HostileServer]:
    with hostile_server() as server:
        yield server


@pytest.fixture
def client_for(hostile: HostileServer) -> Iterator[ClientFor]:
    opened: list[httpx.Client] = []

    def make(behaviour: str, **transport: object) -> tuple[ProviderApi, list[float]]:
        http = httpx.Client(base_url=hostile.base_url(behaviour), timeout=httpx.Timeout(5.0))
        opened.append(http)
        slept: list[float] = []
        backoff = Backoff(attempts=ATTEMPTS, initial=0.01, cap=0.02)
        options: dict[str, object] = {"backoff": backoff, "sleep": slept.append, "provider": "hostile"}
        return ProviderApi.over(Transport(http, **(options | transport))), slept  # type: ignore[arg-type]

    yield make
    for http in opened:
        http.close()


def one_line(error: BaseException) -> str:
    text = str(error)
    assert text and "\n" not in text
    return text


# 3. ----------------------------------------------------------------- deadlines


def test_a_server_dripping_a_byte_at_a_time_is_cut_off_at_the_request_deadline(
    hostile: HostileServer, client_for: ClientFor
) -> None:
    """Each byte arrives well within the read timeout, so only an overall deadline ends it."""
    hostile.drip_every(0.1)
    client, _ = client_for("drip", deadline=1.0)
    before_requests, before_bytes = hostile.requests["drip"], hostile.sent["drip"]
    started = time.monotonic()
    with pytest.raises(ApiConnectionError) as raised:
        client.reader.retrieve_batch("batch_1")
    assert time.monotonic() - started < 4.0  # the deadline, plus at most one drip
    assert "provider hostile: GET /drip/v1/batches/batch_1" in one_line(raised.value)
    assert "deadline" in str(raised.value)
    assert hostile.requests["drip"] - before_requests == 1  # no retry after the deadline
    assert hostile.sent["drip"] - before_bytes < 100  # far from the 100,000 promised


def test_reconcile_timeout_bounds_the_whole_command_against_a_dripping_server(
    hostile: HostileServer, make_repo: MakeRepo, tmp_path: Path
) -> None:
    hostile.drip_every(0.2)
    repo = make_repo()
    repo.write_provider("slow", base_url=hostile.base_url("drip"))
    repo.write_job("nightly-eval", provider="slow")
    command = [sys.executable, "-m", "reconciler", "reconcile", "--wait", "--timeout", "3", *repo.args()]
    env = cli_env() | {"RECONCILER_OWNER": "tests/hardening"}
    started = time.monotonic()
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
    elapsed = time.monotonic() - started
    assert done.returncode == 1, done.stderr
    assert elapsed < 3 + 10  # the issue saw over 70 s for --timeout 10; interpreter start included
    (line,) = done.stderr.strip().splitlines()
    # The command's own limit ended it: said so, with how to raise it, never blamed on the server.
    assert line.startswith("error: provider slow: GET /drip/v1/batches: the command's --timeout ran out")
    assert "raise --timeout (it was 3s; by default the longest completion_window plus 1h)" in line


CLASS_NAME = re.compile(r"\b[A-Z][a-z]+(?:[A-Z][a-z]+)+\b")  # ReadTimeout, ConnectError, …


def test_a_timeout_against_a_silent_server_is_said_in_words_without_an_http_class_name(
    hostile: HostileServer, make_repo: MakeRepo, run_cli: RunCli, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The server sends its headers, then nothing: the command's --timeout ends the read."""
    monkeypatch.setenv("RECONCILER_OWNER", "tests/hardening")
    repo = make_repo()
    repo.write_provider("silent", base_url=hostile.base_url("stall"))
    repo.write_job("nightly-eval", provider="silent")
    result = run_cli("reconcile", "--timeout", "1", *repo.args())
    assert result.exit_code == 1
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(
        "error: provider silent: GET /stall/v1/batches: the command's --timeout ran out before an answer came;"
    ), line
    assert not CLASS_NAME.search(line), line


def test_a_request_cut_off_by_its_own_deadline_says_so_not_the_commands_timeout(
    hostile: HostileServer, client_for: ClientFor
) -> None:
    hostile.drip_every(0.1)
    client, _ = client_for("drip", deadline=1.0)
    client.reader.transport.command_ends_at = time.monotonic() + 3600
    with pytest.raises(ApiConnectionError) as raised:
        client.reader.retrieve_batch("batch_1")
    assert "the request's deadline passed" in str(raised.value) and "--timeout" not in str(raised.value)


def test_wait_stopped_by_its_timeout_names_the_flag_and_what_still_runs(
    make_repo: MakeRepo, sandbox: Sandbox, run_cli: RunCli, monkeypatch: pytest.MonkeyPatch
) -> None:
    sandbox.configure(validation_seconds=600)
    monkeypatch.setenv("RECONCILER_SANDBOX_URL", sandbox.base_url)
    monkeypatch.setenv("RECONCILER_OWNER", "tests/hardening")
    repo = make_repo()
    repo.write_job("nightly-eval")
    result = run_cli("reconcile", "--wait", "--timeout", "2", *repo.args())
    assert result.exit_code == 1
    (line,) = result.stderr.strip().splitlines()
    # Between passes, or in the middle of one's request: either way the flag is named.
    stopped, _, advice = line.partition("; still running: nightly-eval; ")
    assert stopped == "error: --timeout ran out while waiting" or stopped.startswith(
        "error: provider sandbox: GET /v1/batches: the command's --timeout ran out "
    ), line
    assert advice == (
        "nothing is lost, the next reconcile picks up from here; to wait longer, raise --timeout "
        "(it was 2s; by default the longest completion_window plus 1h)"
    )
    assert sandbox.request_counts()["POST /v1/batches"] == 1


def test_wait_waits_by_default_for_the_completion_window_plus_an_hour(run_cli: RunCli) -> None:
    shown = " ".join(run_cli("reconcile", "--help").stdout.split())
    assert "[default: the longest completion_window of the jobs plus 1h: 25h]" in shown
    assert default_timeout({}) == 25 * 3600


# 4. ----------------------------------------------------------------- size caps


@pytest.mark.parametrize("behaviour", ["flood", "flood-declared"])
def test_a_list_page_past_the_size_cap_is_refused_without_reading_it_all(
    hostile: HostileServer, client_for: ClientFor, behaviour: str
) -> None:
    client, _ = client_for(behaviour, max_json_bytes=MIB)
    before = hostile.sent[behaviour]
    with pytest.raises(ApiConnectionError) as raised:
        list(client.reader.iter_batches())
    assert "response refused: larger than the 1.0 MiB limit" in one_line(raised.value)
    assert hostile.requests[behaviour] >= 1
    time.sleep(0.2)  # let the server notice the hang-up before its count is read
    assert hostile.sent[behaviour] - before < 16 * MIB  # the cap plus what socket buffers hold


def test_plan_against_a_flooding_server_stays_small_in_memory(
    hostile: HostileServer, make_repo: MakeRepo
) -> None:
    """The issue's 500 MB page took `plan` to 1.58 GB; now it stops at the 32 MiB cap."""
    repo = make_repo()
    repo.write_provider("flood", base_url=hostile.base_url("flood"))
    repo.write_job("nightly-eval", provider="flood")
    script = (
        "import sys, resource\n"
        "from reconciler.cli.main import main\n"
        "try:\n    main(sys.argv[1:])\n"
        "except SystemExit as done:\n"
        "    peak = [l for l in open('/proc/self/status') if l.startswith('VmHWM')][0]\n"
        "    print(peak.split()[1], file=sys.stdout)\n"
        "    raise\n"
    )
    env = cli_env() | {"RECONCILER_OWNER": "tests/hardening"}
    done = subprocess.run(
        [sys.executable, "-c", script, "plan", *repo.args()],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1
    assert "larger than the 32.0 MiB limit" in done.stderr
    peak_kib = int(done.stdout.split()[-1])
    assert peak_kib < 200 * 1024, f"peak RSS {peak_kib} KiB"


def test_an_error_body_is_read_only_up_to_its_cap(hostile: HostileServer, client_for: ClientFor) -> None:
    hostile.script("/batches/huge-error", b"<html>" + b"x" * (4 * MIB), status=400)
    client, _ = client_for("scripted")
    with pytest.raises(ApiStatusError) as raised:
        client.reader.retrieve_batch("huge-error")
    assert raised.value.status == 400
    assert len(one_line(raised.value)) < 1000


# 5. ----------------------------------------------------------------- redirects


@pytest.mark.parametrize("status", [301, 302, 307, 308])
def test_a_redirect_is_an_error_naming_its_status_and_the_origin_it_pointed_to(
    hostile: HostileServer, client_for: ClientFor, status: int
) -> None:
    listing = {"object": "list", "data": [], "has_more": False}  # a 302 with a JSON body was accepted
    hostile.script(
        "/batches", listing, status=status, headers={"location": "https://evil.example:8443/steal?key=1"}
    )
    client, _ = client_for("scripted")
    before = hostile.requests["scripted"]
    with pytest.raises(ApiStatusError) as raised:
        list(client.reader.iter_batches())
    text = one_line(raised.value)
    assert f"HTTP {status}: redirected to https://evil.example:8443" in text
    assert "steal" not in text and "key=1" not in text
    assert raised.value.status == status
    assert hostile.requests["scripted"] - before == 1  # neither followed nor retried


# 16. ---------------------------------------------------------- provider errors


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ({"status": "failure", "message": "Invalid provider config"}, "HTTP 400: Invalid provider config"),
        ({"html-message": "<p>Bad <b>virtual key</b></p>"}, "HTTP 400: Bad virtual key"),
        ({"error": "model not allowed"}, "HTTP 400: model not allowed"),
        ({"error": {"message": "no such batch", "code": "not_found"}}, "HTTP 400: no such batch"),
    ],
)
def test_an_error_body_in_any_provider_shape_gives_its_message(
    hostile: HostileServer, client_for: ClientFor, body: dict[str, Any], words: str
) -> None:
    hostile.script("/batches/odd-error", body, status=400)
    client, _ = client_for("scripted")
    with pytest.raises(ApiStatusError) as raised:
        client.reader.retrieve_batch("odd-error")
    assert one_line(raised.value) == f"provider hostile: GET /scripted/v1/batches/odd-error: {words}"


@pytest.mark.parametrize("status", [520, 521, 522, 523, 524])
def test_a_proxy_status_in_the_520s_is_retried_like_a_502(
    hostile: HostileServer, client_for: ClientFor, status: int
) -> None:
    hostile.script("/batches/proxied", {"error": {"message": "origin unreachable"}}, status=status)
    client, _ = client_for("scripted")
    before = hostile.requests["scripted"]
    with pytest.raises(ApiStatusError):
        client.reader.retrieve_batch("proxied")
    assert hostile.requests["scripted"] - before == ATTEMPTS


def test_retry_after_ms_is_preferred_to_retry_after(hostile: HostileServer, client_for: ClientFor) -> None:
    headers = {"retry-after-ms": "1500", "retry-after": "2"}
    hostile.script("/batches/busy", {"error": {"message": "slow down"}}, status=429, headers=headers)
    client, slept = client_for("scripted")
    with pytest.raises(ApiStatusError):
        client.reader.retrieve_batch("busy")
    assert slept == [1.5] * (ATTEMPTS - 1)


def test_a_refused_connection_names_the_base_url(
    make_repo: MakeRepo, run_cli: RunCli, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RECONCILER_OWNER", "tests/hardening")
    repo = make_repo()
    repo.write_provider("gone", base_url="http://127.0.0.1:9/v1")
    repo.write_job("nightly-eval", provider="gone")
    result = run_cli("plan", *repo.args())
    assert result.exit_code == 1
    (line,) = result.stderr.strip().splitlines()
    assert (
        line
        == "error: provider gone: GET /v1/batches: cannot connect to http://127.0.0.1:9/v1/ (connection refused)"
    )
