"""The daemon's health port, answer by answer, over real sockets: one route table (a path it
lacks is a 404, a method a path does not take a 405 naming the ones it does), one writer (every
answer, whatever its status, carries the security headers), and the dashboard: the repo by
its name, each job's SYNC (the words `status` uses) and cost, and every text from a spec, the
state or a server shown as text — in an element or in an attribute.
"""

from __future__ import annotations

import json
import re
import socket
import subprocess
import time
import tomllib
from collections.abc import Callable
from fnmatch import fnmatch
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from reconciler.common.usage import usd
from reconciler.daemon import dashboard, web
from reconciler.daemon.board import Board, LastPass, Metrics
from reconciler.daemon.web import Caps, Liveness, Site, serve_health
from reconciler.plans.changes import DesiredJob
from reconciler.plans.jobstatus import Sync
from reconciler.specs.identity import RepoName, owner_tag, repo_name
from reconciler.state.model import BatchRecord, JobState, ResultsRecord, RunRecord, State
from tests.events_helpers import OWNER, Daemon
from tests.fixtures.repo import UserRepo
from tests.fixtures.sandbox import SandboxFactory

SECURITY = {
    "cache-control": "no-store",
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "x-frame-options": "DENY",
}
NOFILE = 128  # as `ulimit -n 128`: 16 connections, 8 event streams


def _request(method: str, target: str, *headers: str, version: str = "HTTP/1.1") -> bytes:
    return "\r\n".join([f"{method} {target} {version}", "Host: reconciler", *headers, "", ""]).encode()


def _ask(port: int, raw: bytes) -> tuple[int, dict[str, str], socket.socket]:
    """The answer's status and headers (names in lower case); the connection, still open."""
    connection = socket.create_connection(("127.0.0.1", port), timeout=20)
    connection.sendall(raw)
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = connection.recv(65536)
        assert chunk, f"closed without an answer to {raw[:60]!r}"
        head += chunk
    status_line, *lines = head.split(b"\r\n\r\n")[0].decode("latin-1").split("\r\n")
    fields = (line.partition(":") for line in lines)
    return int(status_line.split()[1]), {k.strip().lower(): v.strip() for k, _, v in fields}, connection


def _answer(port: int, raw: bytes) -> tuple[int, dict[str, str]]:
    status, headers, connection = _ask(port, raw)
    connection.close()
    return status, headers


def _unprotected(headers: dict[str, str]) -> list[str]:
    """The security headers an answer lacks (or has with another value)."""
    missing = [name for name, value in SECURITY.items() if headers.get(name) != value]
    policy = headers.get("content-security-policy", "")
    if "frame-ancestors 'none'" not in policy or not policy.startswith("default-src 'none'"):
        missing.append("content-security-policy")
    return missing + ([] if headers.get("content-type") else ["content-type"])


ASKED: dict[str, tuple[bytes, int]] = {
    "GET /livez": (_request("GET", "/livez"), 200),
    "GET /healthz": (_request("GET", "/healthz"), 200),
    "GET /readyz": (_request("GET", "/readyz"), 200),
    "GET /metrics": (_request("GET", "/metrics"), 200),
    "GET /": (_request("GET", "/"), 200),
    "GET /jobs/first-job": (_request("GET", "/jobs/first-job"), 200),
    "GET /jobs/first-job/": (_request("GET", "/jobs/first-job/"), 200),
    "GET /events": (_request("GET", "/events"), 200),
    "GET /jobs/first-job/events": (_request("GET", "/jobs/first-job/events?since=0"), 200),
    "HEAD /": (_request("HEAD", "/"), 200),
    "HEAD /healthz": (_request("HEAD", "/healthz"), 200),
    "HEAD /events": (_request("HEAD", "/events"), 200),
    "GET /events?since=abc": (_request("GET", "/events?since=abc"), 400),
    "GET /jobs/no-such-job": (_request("GET", "/jobs/no-such-job"), 404),
    "GET /nope": (_request("GET", "/nope"), 404),
    "GET /jobs": (_request("GET", "/jobs"), 404),
    "GET /jobs/a/b/c": (_request("GET", "/jobs/a/b/c"), 404),
    "GET /healthz?verbose=1": (_request("GET", "/healthz?verbose=1"), 200),
    "GET /healthz/more": (_request("GET", "/healthz/more"), 404),
    "POST /healthz": (_request("POST", "/healthz", "Content-Length: 0"), 405),
    "PUT /": (_request("PUT", "/", "Content-Length: 0"), 405),
    "DELETE /jobs/first-job": (_request("DELETE", "/jobs/first-job"), 405),
    "OPTIONS /metrics": (_request("OPTIONS", "/metrics"), 405),
    "PATCH /events": (_request("PATCH", "/events"), 405),
    "GET /webhooks/openai": (_request("GET", "/webhooks/openai"), 405),
    "POST /webhooks/openai, no secret": (
        _request("POST", "/webhooks/openai", "Content-Length: 2", "Content-Type: application/json") + b"{}",
        404,
    ),
    "POST /webhooks/openai, no length": (_request("POST", "/webhooks/openai"), 413),
    "POST /webhooks/openai, 1 GB": (_request("POST", "/webhooks/openai", "Content-Length: 1000000000"), 413),
    "FOO /": (_request("FOO", "/"), 501),
    "a request line of one word": (b"NONSENSE\r\n\r\n", 400),
    "GET / HTTP/2.0": (_request("GET", "/", version="HTTP/2.0"), 505),
    "101 header lines": (_request("GET", "/", *(f"X-Many-{n}: 1" for n in range(101))), 431),
}


def test_every_answer_of_the_health_port_carries_the_security_headers(
    make_repo: Callable[..., UserRepo],
    sandbox_factory: SandboxFactory,
    events_daemon: Callable[..., Daemon],
) -> None:
    sandbox, repo = sandbox_factory(), make_repo()
    repo.write_job("first-job")
    daemon = events_daemon(repo, sandbox, nofile=NOFILE)
    port = daemon.port or 0

    answers = {label: _answer(port, raw) for label, (raw, _) in ASKED.items()}
    assert {label: status for label, (status, _) in answers.items()} == {
        label: status for label, (_, status) in ASKED.items()
    }
    assert {label: _unprotected(headers) for label, (_, headers) in answers.items()} == {
        label: [] for label in ASKED
    }
    assert answers["POST /healthz"][1]["allow"] == "GET, HEAD"
    assert answers["GET /webhooks/openai"][1]["allow"] == "POST"
    assert answers["GET /events"][1]["content-type"] == "text/event-stream"
    assert "script-src 'nonce-" in answers["GET /"][1]["content-security-policy"]

    # Event streams beyond their cap (8 here): a 503, with the headers.
    held: list[socket.socket] = []
    try:
        for _ in range(12):
            status, headers, connection = _ask(port, _request("GET", "/events"))
            held.append(connection)
            if status == 503:
                break
        assert (status, _unprotected(headers), headers.get("retry-after")) == (503, [], "5")
        assert 8 - 2 <= len(held) - 1 <= 8  # the cap, less the two streams above if not yet let go
    finally:
        for connection in held:
            connection.close()

    sandbox.stop()  # the provider goes away: readiness turns 503, with the headers
    daemon.eventually(lambda: httpx.get(f"{daemon.url}/healthz", timeout=10).status_code == 503)
    for probe in ("/healthz", "/readyz"):
        status, headers = _answer(port, _request("GET", probe))
        assert (probe, status, _unprotected(headers)) == (probe, 503, [])
    assert "Traceback" not in daemon.log()


def test_a_full_health_port_answers_503_with_the_security_headers() -> None:
    """The 503 of a server whose every connection is being answered is written without a
    thread; it carries the same headers."""
    board, metrics = Board(), Metrics()
    site = Site(board, metrics, Liveness(60.0, metrics).report, None, max_streams=1)
    with serve_health("127.0.0.1", 0, site, Caps(connections=1, streams=1)) as (_, port):
        status, _, stream = _ask(port, _request("GET", "/events"))  # being answered, and stays
        try:
            busy, headers = _answer(port, _request("GET", "/healthz"))
        finally:
            stream.close()
            board.close()
    assert (status, busy, _unprotected(headers), headers.get("retry-after")) == (200, 503, [], "1")


class _Page(HTMLParser):
    """The elements, attributes and text of a page, as a browser's parser sees them."""

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.elements: list[tuple[str, dict[str, str | None]]] = []
        self.texts: list[str] = []
        self.feed(html)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.elements.append((tag, dict(attrs)))

    def handle_data(self, data: str) -> None:
        self.texts.append(data)

    @property
    def text(self) -> str:
        return "".join(self.texts)

    def tags(self, *names: str) -> list[str]:
        return [tag for tag, _ in self.elements if tag in names]

    def handlers(self) -> list[str]:
        return [name for _, attrs in self.elements for name in attrs if name.startswith("on")]

    def attribute(self, name: str) -> list[str | None]:
        return [attrs[name] for _, attrs in self.elements if name in attrs]


HOSTILE = {
    "name": "<script>window.__pwned=1</script>\"'x",
    "provider": "<iframe src=javascript:window.__pwned=2>",
    "results": 'out/<script>window.__pwned=3</script>".jsonl',
    "batch": "batch_<b onmouseover=window.__pwned=4>",
    "code": "<b onmouseover=window.__pwned=5>code</b>",
    "message": "\"'><img src=x onerror=window.__pwned=6>",
    "run": "<svg onload=window.__pwned=7>",
    "label": "'\"><script>window.__pwned=8</script>",
    "problem": "specs/x.yaml: <img src=x onerror=window.__pwned=9>",
    "failure": "create failed: <script>window.__pwned=10</script>",
    "repo": "<img src=x onerror=window.__pwned=11>",
    "notification": "<svg onload=window.__pwned=12>",
}
ELEMENTS = ("script", "img", "svg", "b", "iframe")


def hostile_snapshot(board: Board) -> None:
    """Every text a page shows from a spec, the state or a server, carrying markup and quotes."""
    batch = BatchRecord(
        batch_id=HOSTILE["batch"],
        status="failed",
        request_counts={"total": 2, "completed": 0, "failed": 2},
        errors={"data": [{"code": HOSTILE["code"], "message": HOSTILE["message"], "line": 2}]},
    )
    job = JobState(
        generation="g1",
        provider=HOSTILE["provider"],
        status="failed",
        request_counts={"total": 2, "completed": 0, "failed": 2},
        batches=(batch,),
        results=ResultsRecord(path=HOSTILE["results"], sha256="0" * 64, requests=2, batches=()),
        run=HOSTILE["run"],
        history=(RunRecord(run=HOSTILE["run"], generation="g1", status="failed"),),
    )
    board.publish(
        state=State(lineage="seeded", owner="0" * 16, jobs={HOSTILE["name"]: job}),
        last_pass=LastPass(1, time.time(), "degraded", (HOSTILE["failure"],)),
        problems=(HOSTILE["problem"],),
        specced={HOSTILE["name"]: DesiredJob(name=HOSTILE["name"], generation="g2", provider="p")},
        labels={HOSTILE["name"]: {"team": HOSTILE["label"]}},
        repo=RepoName(HOSTILE["repo"], "the owner id"),
        notifications=(HOSTILE["notification"],),
        webhooks=(HOSTILE["provider"],),
    )


def _first_event(url: str) -> str:
    """The fragment the first event of a stream carries."""
    data: list[str] = []
    with httpx.stream("GET", url, timeout=20) as stream:
        for line in stream.iter_lines():
            if line.startswith("data: "):
                data.append(line.removeprefix("data: "))
            elif not line and data:
                return "\n".join(data)
    raise AssertionError(f"{url}: the stream ended without an event")


def test_text_from_specs_the_state_and_servers_is_escaped_in_every_page_and_event() -> None:
    board, metrics = Board(), Metrics()
    hostile_snapshot(board)
    site = Site(board, metrics, Liveness(60.0, metrics).report, None, max_streams=4)
    with serve_health("127.0.0.1", 0, site, Caps(connections=8, streams=4)) as (_, port):
        base = f"http://127.0.0.1:{port}"
        job_url = f"{base}/jobs/{quote(HOSTILE['name'], safe='')}"
        overview, job = (_Page(httpx.get(url, timeout=10).text) for url in (base + "/", job_url))
        fragments = [_Page(_first_event(base + "/events")), _Page(_first_event(job_url + "/events"))]
    board.close()

    assert overview.tags(*ELEMENTS) == job.tags(*ELEMENTS) == ["script"]  # the page's own, with its nonce
    assert fragments[0].tags(*ELEMENTS) == fragments[1].tags(*ELEMENTS) == []
    assert [page.handlers() for page in (overview, job, *fragments)] == [[]] * 4
    assert HOSTILE["name"] in overview.attribute("data-job") + fragments[0].attribute("data-job")
    for page in (overview, fragments[0]):
        for key in ("name", "problem", "failure", "repo", "notification", "provider"):
            assert HOSTILE[key] in page.text, key
    for page in (job, fragments[1]):
        for key in ("name", "provider", "results", "batch", "code", "message", "run"):
            assert HOSTILE[key] in page.text, key
        assert f"team={HOSTILE['label']}" in page.text


def test_the_dashboard_names_the_repo_and_shows_each_jobs_sync_and_cost(
    make_repo: Callable[..., UserRepo],
    sandbox_factory: SandboxFactory,
    events_daemon: Callable[..., Daemon],
) -> None:
    sandbox, repo = sandbox_factory(), make_repo()
    repo.write_job("priced", requests=4)
    repo.write_job("big", requests=3, budget={"max_usd": 0.000001})  # refused: never created
    daemon = events_daemon(repo, sandbox)

    def priced() -> dict[str, Any] | None:
        job: dict[str, Any] = json.loads(repo.state.read_text())["jobs"].get("priced") or {}
        return job if job.get("usage") and job.get("status") == "completed" else None

    (used,) = daemon.eventually(priced)["usage"].values()
    cost = (used["input"] * 0.075 + used["output"] * 0.30) / 1e6
    html = httpx.get(daemon.url + "/", timeout=10).text
    rows = _rows(html)

    heading = _Page(html).text
    assert f"reconciler · {OWNER}" in heading and owner_tag(OWNER) not in heading
    assert rows["priced"]["Sync"] == Sync.IN_SYNC.value == "in sync"
    assert rows["priced"]["Cost"] == usd(cost) != "—"
    assert rows["big"]["Sync"] == Sync.NOT_CREATED.value and rows["big"]["Status"] == "none"
    assert rows["big"]["Cost"] == "—"
    job = _Page(httpx.get(daemon.url + "/jobs/priced", timeout=10).text).text
    assert f"Cost{usd(cost)}" in job.replace("\n", "") and "Syncin sync" in job.replace("\n", "")

    repo.path("specs/priced.yaml").write_text("not: [valid", encoding="utf-8")
    daemon.eventually(
        lambda: _rows(httpx.get(daemon.url + "/", timeout=10).text)["priced"]["Sync"] != "in sync"
    )
    assert _rows(httpx.get(daemon.url + "/", timeout=10).text)["priced"]["Sync"] == Sync.SPEC_INVALID.value


def _rows(html: str) -> dict[str, dict[str, str]]:
    """The overview's table: job → column → the cell's text."""
    cells = _Cells()
    cells.feed(html)
    header, *body = cells.rows
    return {row[0]: dict(zip(header, row, strict=True)) for row in body}


class _Cells(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.rows: list[list[str]] = []
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "tr":
            self.rows.append([])
        elif tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None:
            self.rows[-1].append(" ".join("".join(self._cell).split()))
            self._cell = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def _git(root: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(root), *args], check=True, capture_output=True)


@pytest.mark.parametrize(
    ("owner", "remote", "expected"),
    [
        ("evals-prod", "git@github.com:acme/evals.git", ("evals-prod", "the owner id")),
        ("github.com/acme/evals", "git@github.com:acme/evals.git", ("acme/evals", "the git remote origin")),
        (
            None,
            "https://token@gitlab.example.com/team/sub/evals/",
            ("team/sub/evals", "the git remote origin"),
        ),
        (None, None, ("my-evals", "the folder")),
    ],
)
def test_the_repo_is_named_by_its_owner_id_then_its_git_remote_then_its_folder(
    tmp_path: Path, owner: str | None, remote: str | None, expected: tuple[str, str]
) -> None:
    root = tmp_path / "my-evals"
    root.mkdir()
    _git(root, "init", "-q")
    if remote:
        _git(root, "remote", "add", "origin", remote)
    named = repo_name(root, owner)
    assert (named.name, named.source) == expected
    assert "token" not in named.name


def test_every_template_is_autoescaped_marks_nothing_safe_and_ships_as_package_data() -> None:
    folder = Path(dashboard.__file__).parent / "templates"
    names = sorted(path.name for path in folder.iterdir())
    assert (
        names
        == sorted(dashboard.TEMPLATES.list_templates())
        == [
            "job.html",
            "overview.html",
            "page.html",
            "parts.html",
        ]
    )
    assert all(dashboard.TEMPLATES.autoescape(name) for name in [*names, "any.txt", None])  # type: ignore[operator]
    unsafe = re.compile(r"\|\s*safe\b|autoescape\s+false|Markup")
    sources = [folder / name for name in names] + [Path(dashboard.__file__), Path(web.__file__)]
    assert [path.name for path in sources if unsafe.search(path.read_text(encoding="utf-8"))] == []
    project = tomllib.loads((Path(__file__).parent.parent / "pyproject.toml").read_text(encoding="utf-8"))
    shipped = project["tool"]["setuptools"]["package-data"]["reconciler.daemon"]
    assert [name for name in names if not any(fnmatch(f"templates/{name}", glob) for glob in shipped)] == []
    assert any(dependency.startswith("jinja2") for dependency in project["project"]["dependencies"])
