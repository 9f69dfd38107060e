"""Issue 15, items 1, 2, 10 and 11: what a server says, before it is stored or shown.

A batch's `errors` echoing a key, whole, tail-masked or upper-cased, reaches no file and no
output; a status or message carrying a line break or a terminal escape is shown escaped;
one odd batch of someone else's does not stop every plan, while an odd one of ours does.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from reconciler.api.transport import Transport
from reconciler.common import ownership
from reconciler.engine.workspace import prepare
from tests.fixtures.repo import MakeRepo, RunCli, UserRepo
from tests.hostile_server import BATCH, HostileServer, hostile_server
from tests.test_reliability_secrets import HEADERS, KEY, PORTKEY, files_with_secrets, leaks

OWNER = "tests/hardening"
CHAT = "/v1/chat/completions"
LINE = json.dumps(
    {"custom_id": "r1", "method": "POST", "url": CHAT, "body": {"model": "gpt-4o-mini", "messages": []}}
).encode()
ECHOES = (f"Bearer {KEY}", f"{KEY[:-4]}****", KEY.upper(), f"…{KEY[5:-3]}…")


@pytest.fixture(scope="module")
def hostile() -> Iterator[HostileServer]:
    with hostile_server() as server:
        yield server


@pytest.fixture
def repo(make_repo: MakeRepo, hostile: HostileServer, monkeypatch: pytest.MonkeyPatch) -> UserRepo:
    monkeypatch.setenv("RECONCILER_OWNER", OWNER)
    monkeypatch.setenv("RECON_TEST_KEY", KEY)
    monkeypatch.setenv("RECON_TEST_PORTKEY", PORTKEY)
    repo = make_repo()
    repo.write_provider("odd", base_url=hostile.base_url("scripted"), headers=HEADERS)
    repo.write_job("nightly-eval", provider="odd")
    hostile.script("/files", {"object": "list", "data": [], "has_more": False})
    return repo


def our_batch(repo: Any, **fields: Any) -> dict[str, Any]:
    ws = prepare(repo.paths, OWNER)
    metadata = {
        ownership.KEY_OWNER: ws.owner_tag,
        ownership.KEY_JOB: "nightly-eval",
        ownership.KEY_GENERATION: ws.desired["nightly-eval"].generation,
        ownership.KEY_ATTEMPT: "a1",
    }
    return BATCH | {"id": "batch_ours", "created_at": 1_700_000_000, "metadata": metadata} | fields


def listing(*batches: dict[str, Any]) -> dict[str, Any]:
    return {"object": "list", "data": list(batches), "has_more": False}


def test_a_batch_whose_errors_echo_the_key_leaves_it_in_no_file_and_no_output(
    repo: UserRepo, hostile: HostileServer, run_cli: RunCli, tmp_path: Path
) -> None:
    errors = {"object": "list", "data": [{"code": "auth", "message": m, "line": 1} for m in ECHOES]}
    hostile.script("/batches", listing(our_batch(repo, status="failed", errors=errors)))
    results = [run_cli(*command, *repo.args()) for command in (("reconcile",), ("reconcile",), ("status",))]
    results.append(run_cli("status", "--json", *repo.args()))
    assert [r.exit_code for r in results] == [0, 0, 0, 0], [r.stderr for r in results]
    state = json.loads(repo.state.read_text())
    assert state["jobs"]["nightly-eval"]["batches"][0]["errors"]["data"][0]["message"] == "Bearer ***"
    assert (repo.state.parent / "state.json.backup").exists()
    for result in results:
        shown = result.stdout + result.stderr
        assert leaks(shown) == leaks(shown.lower()) == []
    assert "Bearer ***" in results[2].stdout  # the error is still shown, without the key
    assert files_with_secrets(tmp_path) == {}


@pytest.mark.parametrize("echo", ECHOES, ids=["whole", "tail-masked", "upper-cased", "middle-piece"])
def test_a_401_echoing_a_piece_of_the_key_in_any_case_is_scrubbed(
    repo: UserRepo, hostile: HostileServer, run_cli: RunCli, echo: str
) -> None:
    hostile.script("/batches", {"error": {"message": f"Incorrect API key provided: {echo}"}}, status=401)
    result = run_cli("plan", *repo.args())
    assert result.exit_code == 1 and "HTTP 401: Incorrect API key provided: " in result.stderr
    assert leaks(result.stderr) == leaks(result.stderr.lower()) == [], result.stderr


def test_a_status_with_a_line_break_cannot_forge_a_line_and_escapes_reach_no_terminal(
    repo: UserRepo, hostile: HostileServer, run_cli: RunCli
) -> None:
    forged = "in_progress\n+ create   nightly-eval"
    osc = "\x1b]0;pwned\x07\x1b[2J done \u202egnp.exe"
    errors = {"data": [{"code": "x\ny", "message": osc}]}
    hostile.script("/batches", listing(our_batch(repo, status=forged, errors=errors)))
    results = [run_cli(*command, *repo.args()) for command in (("reconcile",), ("status",), ("plan",))]
    assert [r.exit_code for r in results] == [0, 0, 0], [r.stderr for r in results]
    for result in results:
        text = result.stdout + result.stderr
        assert not any(line.lstrip().startswith("+ create") for line in text.splitlines()), text
        assert "\x1b" not in text and "\x07" not in text and "\u202e" not in text
    assert "in_progress\\n+ create" in results[1].stdout
    assert "\\x1b]0;pwned\\x07" in results[1].stdout


ODD_FOREIGN: list[dict[str, Any]] = [
    BATCH | {"id": "batch_n", "metadata": {"n": 5}},
    BATCH | {"id": "batch_null", "metadata": {"note": None}},
    BATCH | {"id": "batch_frac", "created_at": 1_700_000_000.5},
    BATCH | {"id": "batch_total", "request_counts": {"total": None, "completed": 0, "failed": 0}},
]


def test_foreign_batches_with_loose_fields_are_read_not_refused(
    repo: UserRepo, hostile: HostileServer, run_cli: RunCli
) -> None:
    hostile.script("/batches", listing(*ODD_FOREIGN))
    result = run_cli("plan", *repo.args())
    assert result.exit_code == 0, result.stderr
    assert "warning" not in result.stderr  # loose, not malformed: nothing to warn about
    assert "+ create" in result.stdout


def test_a_malformed_foreign_batch_is_passed_over_unread_and_one_without_an_id_with_a_warning(
    repo: UserRepo, hostile: HostileServer, run_cli: RunCli
) -> None:
    broken = BATCH | {"id": "batch_words", "request_counts": {"total": "many"}, "metadata": {"team": "x"}}
    nameless = {k: v for k, v in BATCH.items() if k != "id"} | {"metadata": {"team": "y"}}
    hostile.script("/batches", listing(*ODD_FOREIGN, broken, nameless))
    result = run_cli("plan", *repo.args())
    assert result.exit_code == 0, result.stderr
    (warning,) = result.stderr.strip().splitlines()  # anyone else's batch is not parsed: only its id
    assert warning.startswith("warning: provider odd: GET /scripted/v1/batches: skipped, not ours: ")
    assert "batch_words" not in warning
    assert "+ create" in result.stdout


def test_a_malformed_batch_of_ours_is_still_an_error_naming_its_id(
    repo: UserRepo, hostile: HostileServer, run_cli: RunCli
) -> None:
    hostile.script("/batches", listing(*ODD_FOREIGN, our_batch(repo, request_counts={"total": "many"})))
    result = run_cli("plan", *repo.args())
    assert result.exit_code == 1
    (line,) = result.stderr.strip().splitlines()
    assert line == "error: malformed batch object from the server (request_counts.total) batch_ours"


RAW_BODIES = {
    # no escape at all (ensure_ascii=False): each must still be found in the raw bytes
    "bidi override": ("done \u202egnp.exe", "done \\u202egnp.exe"),
    "C1 control": ("a\x85b", "a\\x85b"),
    "key upper-cased": (f"echo {KEY.upper()}", "echo ***"),
    "key with a KELVIN SIGN": ("echo s\u212a" + KEY[2:], "echo ***"),  # lowers to the key itself
    "escaped line break": ("in_progress\n+ create", "in_progress\\n+ create"),
}


@pytest.mark.parametrize("sent, shown", RAW_BODIES.values(), ids=list(RAW_BODIES))
def test_a_body_is_walked_string_by_string_only_when_its_raw_bytes_hold_something_to_clean(
    hostile: HostileServer, sandbox: Any, sent: str, shown: str
) -> None:
    with httpx.Client(base_url=sandbox.base_url) as http:
        clean = Transport(http, secrets=[KEY, PORTKEY])
        for index in range(3):
            upload_id = clean.call(
                "POST", "/files", data={"purpose": "batch"}, files={"file": ("a.jsonl", LINE)}
            )
            body = {"input_file_id": upload_id["id"], "endpoint": CHAT, "completion_window": "24h"}
            clean.call("POST", "/batches", json=body | {"metadata": {"note": f"plain text {index}"}})
        listed = clean.call("GET", "/batches", params={"limit": 100})
        assert [b["metadata"]["note"] for b in listed["data"]] == [f"plain text {i}" for i in (2, 1, 0)]
        assert clean.scrubber.walked == 0  # six bodies, none walked

    odd = BATCH | {"id": "batch_odd", "status": sent}
    hostile.script("/batches", json.dumps(listing(odd), ensure_ascii=False).encode())
    with httpx.Client(base_url=hostile.base_url("scripted")) as http:
        transport = Transport(http, secrets=[KEY, PORTKEY])
        found = transport.call("GET", "/batches")
    assert found["data"][0]["status"] == shown
    assert transport.scrubber.walked == 1
