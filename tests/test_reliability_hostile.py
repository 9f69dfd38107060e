"""ProviderApi, and the CLI, against a real server that answers badly (tests/hostile_server.py).

Whatever comes back, the client raises an ApiError with one readable line, gives up after a
bounded number of requests, and never loops or crashes.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from reconciler.api.client import ProviderApi
from reconciler.api.transport import MAX_PAGES, Backoff, Transport
from reconciler.api.uploads import UploadSource
from reconciler.api.writer import BatchWriter
from reconciler.common.errors import ApiConnectionError, ApiError, ApiStatusError, OutcomeUnknownError
from tests.fixtures.repo import MakeRepo, RunCli
from tests.hostile_server import HostileServer, hostile_server

FULL = os.environ.get("RECONCILER_FULL") == "1"
ATTEMPTS = 3


ClientFor = Callable[[str], tuple[ProviderApi, list[float]]]


@pytest.fixture(scope="module")
def hostile() -> Iterator[HostileServer]:
    with hostile_server() as server:
        yield server


@pytest.fixture
def client_for(hostile: HostileServer) -> Iterator[ClientFor]:
    """A client of one behaviour; its backoff sleeps are recorded, not slept."""
    opened: list[httpx.Client] = []

    def make(behaviour: str) -> tuple[ProviderApi, list[float]]:
        http = httpx.Client(base_url=hostile.base_url(behaviour), timeout=httpx.Timeout(0.5))
        opened.append(http)
        slept: list[float] = []
        backoff = Backoff(attempts=ATTEMPTS, initial=0.01, cap=0.02)
        return ProviderApi.over(Transport(http, backoff=backoff, sleep=slept.append)), slept

    yield make
    for http in opened:
        http.close()


def one_line(error: BaseException) -> str:
    text = str(error)
    assert text and "\n" not in text and "Traceback" not in text
    return text


@pytest.mark.parametrize(
    ("behaviour", "kind", "words", "requests"),
    [
        ("missing-fields", ApiConnectionError, "malformed batch object from the server (id)", 1),
        ("html-ok", ApiConnectionError, "response is not JSON", 1),
        ("truncated-json", ApiConnectionError, "response is not JSON", 1),
        ("wrong-type", ApiConnectionError, "response is not a JSON object", 1),
        ("bad-counts", ApiConnectionError, "malformed batch object from the server (", 1),
        ("html-error", ApiStatusError, "HTTP 502: text/html body", ATTEMPTS),
        (
            "hang-up",
            ApiConnectionError,
            "/v1/batches/batch_1: the server hung up or answered malformed HTTP",
            ATTEMPTS,
        ),
        ("stall", ApiConnectionError, "/v1/batches/batch_1: no answer within the read timeout", ATTEMPTS),
    ],
)
def test_a_broken_answer_to_a_read_is_one_clear_error_after_bounded_tries(
    hostile: HostileServer,
    client_for: ClientFor,
    behaviour: str,
    kind: type[Exception],
    words: str,
    requests: int,
) -> None:
    client, _ = client_for(behaviour)
    before = hostile.requests[behaviour]
    with pytest.raises(kind) as raised:
        client.reader.retrieve_batch("batch_1")
    assert words in one_line(raised.value)
    assert hostile.requests[behaviour] - before == requests


def test_an_unknown_status_is_kept_as_it_came_and_counts_as_still_running(client_for: ClientFor) -> None:
    client, _ = client_for("unknown-status")
    batch = client.reader.retrieve_batch("batch_hostile")
    (listed,) = list(client.reader.iter_batches())
    assert batch.status == listed.status == "quantum_superposition"
    assert not batch.terminal


def test_a_batch_sent_as_text_plain_is_still_read(client_for: ClientFor) -> None:
    client, _ = client_for("text-json")
    assert client.reader.retrieve_batch("batch_hostile").id == "batch_hostile"


@pytest.mark.parametrize(
    ("behaviour", "words"),
    [
        ("missing-fields", "/v1/batches: response has no `data` list"),
        ("wrong-type", "malformed batch object from the server"),
        ("html-error", "/v1/batches: HTTP 502"),
    ],
)
def test_a_broken_list_is_an_error_not_an_empty_list(
    client_for: ClientFor, behaviour: str, words: str
) -> None:
    client, _ = client_for(behaviour)
    with pytest.raises(ApiError) as raised:
        list(client.reader.iter_batches())
    assert words in one_line(raised.value)


@pytest.mark.parametrize(("behaviour", "pages"), [("ignores-after", 2), ("cycle", 3)])
def test_a_list_whose_next_page_repeats_an_earlier_one_is_an_error_not_a_quiet_end(
    hostile: HostileServer, client_for: ClientFor, behaviour: str, pages: int
) -> None:
    """A quiet end here would hide whatever lies further down, and we would create it again."""
    client, _ = client_for(behaviour)
    before = hostile.requests[behaviour]
    with pytest.raises(ApiConnectionError) as raised:
        list(client.reader.iter_batches())
    assert "repeats an earlier one" in one_line(raised.value)
    assert hostile.requests[behaviour] - before == pages


def test_a_list_whose_has_more_never_ends_stops_at_the_page_bound(
    hostile: HostileServer, client_for: ClientFor
) -> None:
    client, _ = client_for("endless")
    bound = MAX_PAGES if FULL else 40  # the full default takes ~40 s here; CI checks the mechanism
    before = hostile.requests["endless"]
    with pytest.raises(ApiConnectionError) as raised:
        for _ in client.reader.iter_batches(max_pages=bound):
            pass
    assert f"did not end after {bound} pages" in one_line(raised.value)
    assert hostile.requests["endless"] - before == bound


def test_retry_after_of_a_day_is_not_slept_in_the_request_but_handed_up(
    hostile: HostileServer, client_for: ClientFor
) -> None:
    """As the official SDK does (issue 25, item 11): a wait past two minutes is not retried."""
    client, slept = client_for("retry-forever")
    before = hostile.requests["retry-forever"]
    with pytest.raises(ApiStatusError) as raised:
        list(client.reader.iter_batches())
    text = one_line(raised.value)
    assert raised.value.status == 429 and "slow down" in text and "asks to wait 24h" in text
    assert raised.value.retry_after == 86400
    assert hostile.requests["retry-forever"] - before == 1
    assert slept == []


@pytest.mark.parametrize("behaviour", ["html-error", "hang-up", "missing-fields", "truncated-json"])
def test_a_create_whose_answer_is_broken_is_outcome_unknown_never_a_plain_failure(
    hostile: HostileServer, client_for: ClientFor, behaviour: str
) -> None:
    """The server may have acted: the intent must stay pending and be resolved from the list."""
    client, _ = client_for(behaviour)
    before = hostile.requests[behaviour]
    with pytest.raises(OutcomeUnknownError) as raised:
        BatchWriter(client.transport).create_batch(
            input_file_id="file-1", endpoint="/v1/chat/completions", completion_window="24h", metadata={}
        )
    assert "outcome unknown" in one_line(raised.value)
    assert hostile.requests[behaviour] - before == 1  # never sent twice


def test_an_upload_answered_without_a_file_id_is_an_error(client_for: ClientFor, tmp_path: Path) -> None:
    client, _ = client_for("missing-fields")
    path = tmp_path / "a.jsonl"
    path.write_text('{"custom_id": "1"}\n')
    with pytest.raises(ApiConnectionError) as raised:
        BatchWriter(client.transport).upload_file(UploadSource(path, "a.jsonl"))
    assert "no file id" in one_line(raised.value)


@pytest.mark.parametrize(
    "behaviour", ["html-error", "truncated-json", "missing-fields", "cycle", "hang-up", "bad-counts"]
)
def test_plan_against_a_hostile_provider_fails_with_one_line_and_no_traceback(
    hostile: HostileServer,
    make_repo: MakeRepo,
    run_cli: RunCli,
    monkeypatch: pytest.MonkeyPatch,
    behaviour: str,
) -> None:
    monkeypatch.setenv("RECONCILER_OWNER", "tests/hostile")
    repo = make_repo()
    repo.write_provider("broken", base_url=hostile.base_url(behaviour))
    repo.write_job("nightly-eval", provider="broken")
    result = run_cli("plan", *repo.args())
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in result.stderr
    assert not repo.state.exists()
