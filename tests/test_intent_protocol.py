"""The create protocol's write order over real HTTP: what the state says at each step, and that
a pass killed or unanswered at that step still ends in one batch per unit.

A small real HTTP server (`Gate`) stands between the reconciler and the sandbox and passes
every request on, except the first to one route: it stops that one before it reaches the
sandbox or after the sandbox acted, and either waits there (the test reads the state file and
SIGKILLs the reconciler, a real subprocess) or closes the connection without an answer.  Each
job is split in two parts, so one part is caught at the step while the other goes through.
"""

from __future__ import annotations

import signal
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from reconciler.sandbox import Sandbox
from reconciler.state.file import read_state
from tests.fixtures.daemon import reconciler_command, reconciler_env
from tests.fixtures.repo import MakeRepo, RunCli, UserRepo
from tests.reconcile_helpers import batches, mutating, sdk, wait_until

OWNER = "tests/intent-protocol"
JOB = "split"
STOP_TIMEOUT = 60.0


class Gate:
    """Passes requests on to `upstream`; the first `method path` in `route` is stopped: before the
    sandbox sees it (`reaches=False`) or after the sandbox answered it.  With `wait`, `stopped`
    is set and it waits for `go`; then (or at once) its connection is closed without an answer.
    `passed` counts the other requests to `route`, answered."""

    def __init__(self, upstream: str, route: str, *, reaches: bool, wait: bool) -> None:
        self.upstream, self.route, self.reaches, self.wait = upstream, route, reaches, wait
        self.stopped, self.go = threading.Event(), threading.Event()
        self.caught: dict[str, Any] = {}  # the request stopped: its body
        self.passed = 0
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def close(self) -> None:
        self.go.set()
        self._server.shutdown()
        self._server.server_close()

    def _claims(self, method: str, path: str, body: bytes) -> bool:
        with self._lock:
            if self.caught or f"{method} {path.split('?')[0]}" != self.route:
                return False
            self.caught = {"body": body}
            return True

    def _hold(self) -> None:
        if self.wait:
            self.stopped.set()
            self.go.wait(STOP_TIMEOUT)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        gate = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self._pass(b"")

            def do_DELETE(self) -> None:
                self._pass(b"")

            def do_POST(self) -> None:
                self._pass(self.rfile.read(int(self.headers.get("Content-Length") or 0)))

            def _pass(self, body: bytes) -> None:
                caught = gate._claims(self.command, self.path, body)
                if caught and not gate.reaches:
                    gate._hold()
                    self.close_connection = True
                    return
                answer = self._forward(body)
                if caught:
                    gate._hold()
                    self.close_connection = True
                    return
                if f"{self.command} {self.path.split('?')[0]}" == gate.route:
                    with gate._lock:
                        gate.passed += 1
                try:
                    self.send_response(answer.status_code)
                    for key in ("Content-Type", "Retry-After", "retry-after-ms"):
                        if key in answer.headers:
                            self.send_header(key, answer.headers[key])
                    self.send_header("Content-Length", str(len(answer.content)))
                    self.end_headers()
                    self.wfile.write(answer.content)
                except OSError:  # the client is gone (killed)
                    pass

            def _forward(self, body: bytes) -> httpx.Response:
                skipped = ("host", "content-length", "connection")
                headers = {k: v for k, v in self.headers.items() if k.lower() not in skipped}
                url = gate.upstream + self.path[len("/v1") :]
                return httpx.request(self.command, url, content=body, headers=headers, timeout=60)

            def log_message(self, format: str, *args: object) -> None:
                pass

        return Handler


@pytest.fixture
def repo(make_repo: MakeRepo, sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch) -> UserRepo:
    monkeypatch.setenv("RECONCILER_OWNER", OWNER)
    monkeypatch.setenv("RECONCILER_CREATE_QUARANTINE", "600")
    sandbox.configure(validation_seconds=600)  # batches stay live and running throughout
    repo = make_repo()
    repo.write_job(JOB, requests=4, split={"max_requests": 2})  # parts 0 and 1
    return repo


@pytest.fixture
def gates() -> Iterator[list[Gate]]:
    made: list[Gate] = []
    yield made
    for gate in made:
        gate.close()


def gate_for(
    gates: list[Gate], sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch, route: str, **how: bool
) -> Gate:
    gate = Gate(sandbox.base_url, route, **how)
    gates.append(gate)
    monkeypatch.setenv("RECONCILER_SANDBOX_URL", gate.base_url)
    return gate


def killed_at_the_gate(repo: UserRepo, gate: Gate) -> dict[str, Any]:
    """Runs `reconcile` as a subprocess, SIGKILLs it while the gate holds the request of one
    part (once the other part's went through), and returns the job's state as the file said
    at that moment."""
    env = reconciler_env(gate, OWNER, RECONCILER_CREATE_QUARANTINE="600")
    process = subprocess.Popen(
        reconciler_command("reconcile", *repo.args()),
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        assert gate.stopped.wait(STOP_TIMEOUT), "the reconciler never reached the gate"
        wait_until(lambda: gate.passed == 1, timeout=STOP_TIMEOUT)
        job: dict[str, Any] = state_of(repo.root)["jobs"][JOB]
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        gate.go.set()
        if process.poll() is None:
            process.kill()
        if process.stderr:
            assert b"Traceback" not in process.stderr.read()
            process.stderr.close()
    return job


def state_of(repo_root: Path) -> dict[str, Any]:
    """The state as any command reads it: the file, and the journal a killed pass left beside it
    (a write appends the changed jobs there; state/file.py)."""
    return read_state(repo_root / ".reconciler" / "state.json").model_dump(mode="json")


def by_part(job: dict[str, Any]) -> dict[int, dict[str, Any]]:
    return {intent["part"]: intent for intent in job["pending"]}


def one_batch_per_part(sandbox: Sandbox) -> dict[int, Any]:
    found = batches(sandbox, JOB)
    parts = [int(b.metadata["reconciler_part"]) for b in found]
    assert sorted(parts) == [0, 1], f"batches of parts {parts}"
    return {int(b.metadata["reconciler_part"]): b for b in found}


def unread_uploads(sandbox: Sandbox) -> list[str]:
    read = {b.input_file_id for b in batches(sandbox)}
    return [f.filename for f in sdk(sandbox).files.list(purpose="batch") if f.id not in read]


def resolves_without_sending(run_cli: RunCli, repo: UserRepo, sandbox: Sandbox) -> dict[str, Any]:
    sandbox.reset_counts()
    result = run_cli("reconcile", *repo.args())
    assert result.exit_code == 0, result.stderr
    assert mutating(sandbox.request_counts()) == {}
    job: dict[str, Any] = state_of(repo.root)["jobs"][JOB]
    assert job["pending"] == []
    return job


@pytest.mark.slow
def test_a_pass_killed_during_an_upload_has_written_its_intents_planned_and_the_next_makes_one_batch_each(
    repo: UserRepo, sandbox: Sandbox, gates: list[Gate], monkeypatch: pytest.MonkeyPatch, run_cli: RunCli
) -> None:
    gate = gate_for(gates, sandbox, monkeypatch, "POST /v1/files", reaches=True, wait=True)
    job = killed_at_the_gate(repo, gate)
    intents = by_part(job)
    assert {p: i["state"] for p, i in intents.items()} == {0: "planned", 1: "planned"}
    assert all(i["input_file_id"] is None and i["sent_at"] is None for i in intents.values())
    assert len(sdk(sandbox).files.list(purpose="batch").data) == 2  # both stored, one answer held

    sandbox.reset_counts()
    result = run_cli("reconcile", *repo.args())
    assert result.exit_code == 0, result.stderr
    assert mutating(sandbox.request_counts()) == {"POST /v1/batches": 2}  # both uploads reused
    made = one_batch_per_part(sandbox)
    assert {p: b.metadata["reconciler_attempt"] for p, b in made.items()} == {
        p: i["attempt"] for p, i in intents.items()
    }
    assert state_of(repo.root)["jobs"][JOB]["pending"] == [] and unread_uploads(sandbox) == []


@pytest.mark.slow
def test_a_pass_killed_before_its_post_reached_the_server_has_written_it_sent_and_it_is_sent_once_after_the_quarantine(
    repo: UserRepo, sandbox: Sandbox, gates: list[Gate], monkeypatch: pytest.MonkeyPatch, run_cli: RunCli
) -> None:
    gate = gate_for(gates, sandbox, monkeypatch, "POST /v1/batches", reaches=False, wait=True)
    intents = by_part(killed_at_the_gate(repo, gate))
    assert {p: i["state"] for p, i in intents.items()} == {0: "sent", 1: "sent"}
    assert all(i["input_file_id"] and i["sent_at"] for i in intents.values())  # both written before any POST
    caught = gate.caught["body"]
    held = next(p for p, i in intents.items() if i["attempt"].encode() in caught)

    sandbox.reset_counts()
    waiting = run_cli("reconcile", *repo.args())
    assert waiting.exit_code == 0, waiting.stderr
    assert mutating(sandbox.request_counts()) == {}  # the other part's batch is live: resolved
    (still,) = state_of(repo.root)["jobs"][JOB]["pending"]
    assert (still["part"], still["state"]) == (held, "sent")  # it may be in flight: held back

    monkeypatch.setenv("RECONCILER_CREATE_QUARANTINE", "0")
    sent = run_cli("reconcile", *repo.args())
    assert sent.exit_code == 0, sent.stderr
    assert mutating(sandbox.request_counts()) == {"POST /v1/batches": 1}  # no new upload either
    made = one_batch_per_part(sandbox)
    assert made[held].metadata["reconciler_attempt"] == intents[held]["attempt"]
    assert made[held].input_file_id == intents[held]["input_file_id"]
    assert state_of(repo.root)["jobs"][JOB]["pending"] == [] and unread_uploads(sandbox) == []


@pytest.mark.slow
def test_a_pass_killed_after_the_server_made_the_batch_has_written_it_sent_and_the_next_resolves_it_unsent(
    repo: UserRepo, sandbox: Sandbox, gates: list[Gate], monkeypatch: pytest.MonkeyPatch, run_cli: RunCli
) -> None:
    gate = gate_for(gates, sandbox, monkeypatch, "POST /v1/batches", reaches=True, wait=True)
    intents = by_part(killed_at_the_gate(repo, gate))
    assert {p: i["state"] for p, i in intents.items()} == {0: "sent", 1: "sent"}

    job = resolves_without_sending(run_cli, repo, sandbox)
    made = one_batch_per_part(sandbox)
    assert {b["batch_id"] for b in job["batches"]} == {b.id for b in made.values()}
    assert {p: b.metadata["reconciler_attempt"] for p, b in made.items()} == {
        p: i["attempt"] for p, i in intents.items()
    }


def test_a_create_answered_with_an_error_after_the_server_made_it_is_recorded_uploaded_then_resolved(
    repo: UserRepo, sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch, run_cli: RunCli
) -> None:
    monkeypatch.setenv("RECONCILER_SANDBOX_URL", sandbox.base_url)
    sandbox.configure(lost_response_rate=1.0)  # each create is made, then answered 500
    first = run_cli("reconcile", *repo.args())
    assert first.exit_code == 1 and "outcome unknown" in first.stderr
    intents = by_part(state_of(repo.root)["jobs"][JOB])
    assert {p: (i["state"], i["sent_at"]) for p, i in intents.items()} == {
        0: ("uploaded", None),
        1: ("uploaded", None),
    }
    assert all(i["input_file_id"] for i in intents.values())  # kept, for a create sent again

    sandbox.configure(lost_response_rate=0.0)
    resolves_without_sending(run_cli, repo, sandbox)
    one_batch_per_part(sandbox)


def test_a_create_that_got_no_answer_is_recorded_quarantined_and_resolved_once_its_batch_is_live(
    repo: UserRepo, sandbox: Sandbox, gates: list[Gate], monkeypatch: pytest.MonkeyPatch, run_cli: RunCli
) -> None:
    gate_for(gates, sandbox, monkeypatch, "POST /v1/batches", reaches=True, wait=False)
    first = run_cli("reconcile", *repo.args())
    assert first.exit_code == 1 and "outcome unknown" in first.stderr
    (quarantined,) = state_of(repo.root)["jobs"][JOB]["pending"]  # the answered part resolved
    assert quarantined["state"] == "quarantined" and quarantined["sent_at"] and quarantined["input_file_id"]

    job = resolves_without_sending(run_cli, repo, sandbox)
    made = one_batch_per_part(sandbox)
    assert made[quarantined["part"]].metadata["reconciler_attempt"] == quarantined["attempt"]
    assert len(job["batches"]) == 2
