"""Issue 15, items 6-9 and 19: the files a careless spec or a failing disk could damage.

Results may not land on another job's input, in .git/, in the state folder or on the
settings file; a full disk or a folder we cannot write is one line with nothing half-written;
an input that changes while it is uploaded is refused and the create waits; an edit that
keeps size and mtime is still seen; the sandbox's data stays with the repo, not the state.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from reconciler.api.client import ProviderApi
from reconciler.api.transport import Transport
from reconciler.api.uploads import UploadSource
from reconciler.api.writer import BatchWriter
from reconciler.common.errors import InputChangedError
from reconciler.sandbox import Sandbox
from tests.fixtures.daemon import StartDaemon
from tests.fixtures.repo import MakeRepo, RunCli
from tests.hostile_server import HostileServer, hostile_server
from tests.reconcile_helpers import batches

OWNER = "tests/hardening"


@pytest.fixture(autouse=True)
def _owner(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RECONCILER_OWNER", OWNER)


# 6. ------------------------------------------------------------- results paths


@pytest.mark.parametrize(
    ("results", "words"),
    [
        ("../data/other.jsonl", "data/other.jsonl is the input of job 'other'"),
        ("../.git/config", "is inside .git/"),
        ("../.reconciler/state.json", "is inside the state folder .reconciler"),
        ("../reconciler.yaml", "is the repo's settings file reconciler.yaml"),
    ],
)
def test_validate_refuses_results_that_would_overwrite_what_the_repo_needs(
    make_repo: MakeRepo, run_cli: RunCli, results: str, words: str
) -> None:
    repo = make_repo()
    (repo.root / ".git").mkdir()
    (repo.root / ".git" / "config").write_text("[core]\n")
    (repo.root / "reconciler.yaml").write_text("owner: x\n")
    repo.write_job("other")
    spec = repo.write_job("nightly-eval", results=results)
    result = run_cli("validate", *repo.args())
    assert result.exit_code == 1
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(f"error: specs/{spec.name}:") and "spec.results:" in line and words in line
    assert repo.written() == [".git/config", "reconciler.yaml"]  # nothing written, nothing overwritten


def test_validate_refuses_one_results_file_for_two_jobs_naming_both(
    make_repo: MakeRepo, run_cli: RunCli
) -> None:
    repo = make_repo()
    repo.write_job("first", results="../out/shared.jsonl")
    repo.write_job("second", results="../out/shared.jsonl")
    result = run_cli("validate", *repo.args())
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert lines == [
        "error: specs/first.yaml:8: spec.results: out/shared.jsonl is also the results of job 'second'; "
        "give each job its own file",
        "error: specs/second.yaml:8: spec.results: out/shared.jsonl is also the results of job 'first'; "
        "give each job its own file",
    ]


def test_validate_lists_problems_in_file_and_line_order(make_repo: MakeRepo, run_cli: RunCli) -> None:
    repo = make_repo()
    repo.write_spec(
        "specs/jobs.yaml",
        """
        apiVersion: reconciler/v1
        kind: BatchJob
        metadata: {name: a}
        spec: {endpoint: /v1/chat/completions, input: ../data/missing-a.jsonl, results: ../data/b.jsonl}
        ---
        apiVersion: reconciler/v1
        kind: BatchJob
        metadata: {name: a}
        spec: {endpoint: /v1/chat/completions, input: ../data/missing-b.jsonl}
        """,
    )
    result = run_cli("validate", *repo.args())
    assert result.exit_code == 1
    lines = [line.split(": ", 2)[1] for line in result.stderr.strip().splitlines()]
    numbers = [int(where.rsplit(":", 1)[1]) for where in lines]
    assert numbers == sorted(numbers) and len(numbers) >= 3


README_RESULTS = "../results/{job}/{run}.jsonl"


def test_the_readmes_results_template_in_every_job_validates_and_each_job_writes_its_own_file(
    make_repo: MakeRepo, sandbox: Sandbox, run_cli: RunCli, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RECONCILER_SANDBOX_URL", sandbox.base_url)
    repo = make_repo()
    repo.write_job("nightly-eval", requests=3, results=README_RESULTS)
    repo.write_job("ab-test", requests=2, results=README_RESULTS)
    repo.write_job("plain")
    validated = run_cli("validate", *repo.args())
    assert validated.exit_code == 0, validated.stderr
    assert run_cli("reconcile", "--wait", "--timeout", "60", *repo.args()).exit_code == 0
    assert sandbox.request_counts()["POST /v1/batches"] == 3
    written = {
        p.relative_to(repo.root).as_posix(): len(p.read_text().splitlines())
        for p in repo.root.glob("results/*/*")
    }
    assert written == {"results/nightly-eval/default.jsonl": 3, "results/ab-test/default.jsonl": 2}


@pytest.mark.slow
def test_the_daemon_runs_every_job_when_they_share_the_readmes_results_template(
    make_repo: MakeRepo, sandbox: Sandbox, start_daemon: StartDaemon
) -> None:
    repo = make_repo()
    repo.write_job("nightly-eval", results=README_RESULTS)
    repo.write_job("ab-test", results=README_RESULTS)
    repo.write_job("plain")
    daemon = start_daemon(repo, sandbox, owner=OWNER)
    daemon.eventually(lambda: len(list(repo.root.glob("results/*/default.jsonl"))) == 2)
    assert sorted(b.metadata["reconciler_job"] for b in batches(sandbox)) == [
        "ab-test",
        "nightly-eval",
        "plain",
    ]
    assert "spec_invalid" not in daemon.log() and "held" not in daemon.log()


@pytest.mark.parametrize(
    ("first", "second", "words"),
    [
        ("../results/{run}.jsonl", "../results/{run}.jsonl", "can be the same file as the results of job"),
        (
            "../out/{job}-{run}.jsonl",
            "../out/{job}-{run}.jsonl",
            "can be the same file as the results of job",
        ),
        ("../out/shared.jsonl", "../out/{run}.jsonl", "is also the results of job"),
        (
            "../data/{run}.jsonl",
            "../out/{job}/{run}.jsonl",
            "is the input of job 'nightly-eval-x' for some run",
        ),
    ],
    ids=["run-only", "job-prefix", "file-and-template", "over-an-input"],
)
def test_validate_refuses_results_templates_two_jobs_can_fill_to_one_file(
    make_repo: MakeRepo, run_cli: RunCli, first: str, second: str, words: str
) -> None:
    repo = make_repo()
    # `nightly-eval-{run}` can be `nightly-eval-x-{run}` for run `x-…`: a clash, however unlikely.
    spec = repo.write_job("nightly-eval", results=first)
    repo.write_job("nightly-eval-x", results=second)
    result = run_cli("validate", *repo.args())
    assert result.exit_code == 1
    (line,) = [x for x in result.stderr.strip().splitlines() if x.startswith(f"error: specs/{spec.name}:")]
    assert "spec.results:" in line and words in line, line
    assert repo.written() == []


# 7. ------------------------------------------------------------- failing disks


def test_a_full_disk_while_writing_the_state_is_one_line_and_leaves_the_state_as_it_was(
    make_repo: MakeRepo, sandbox: Sandbox, run_cli: RunCli
) -> None:
    repo = make_repo()
    repo.write_provider("local", base_url=sandbox.base_url)
    repo.write_job("nightly-eval", provider="local")
    assert run_cli("apply", "--auto-approve", *repo.args()).exit_code == 0
    before = repo.state.read_bytes()
    repo.write_job("second", provider="local")
    # A write appends to the journal beside the state (state/file.py); the first one of a command
    # starts it through a temp file, and every write to that now fails with ENOSPC.
    temp = repo.state.with_name(f".{repo.state.name}.journal.{os.getpid()}.tmp")
    temp.symlink_to("/dev/full")
    sandbox.reset_counts()
    result = run_cli("apply", "--auto-approve", *repo.args())
    assert result.exit_code == 1
    (line,) = result.stderr.strip().splitlines()
    assert (
        line
        == f"error: cannot write {repo.state}.journal: No space left on device; nothing was changed there"
    )
    assert repo.state.read_bytes() == before
    assert not [p for p in repo.state.parent.iterdir() if p.name.endswith(".tmp")]
    assert sandbox.request_counts().get("POST /v1/batches", 0) == 0  # no create without its intent


def test_a_state_folder_that_cannot_be_written_is_one_line_naming_the_lock(
    make_repo: MakeRepo, run_cli: RunCli
) -> None:
    repo = make_repo()
    repo.write_job("nightly-eval")
    state = "/sys/reconciler-hardening/state.json"  # sysfs: not even root may create files here
    result = run_cli("apply", "--auto-approve", *repo.args("--state", state))
    assert result.exit_code == 1
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(f"error: cannot write {state}.lock: ") and "Traceback" not in result.stderr


# 8. ------------------------------------------------------- inputs that change


@pytest.fixture(scope="module")
def hostile() -> Iterator[HostileServer]:
    with hostile_server() as server:
        yield server


def big_input(path: Path, megabytes: int = 24) -> Path:
    line = json.dumps({"custom_id": "x", "body": {"input": "y" * 1000}}) + "\n"
    path.write_text(line * (megabytes * 1000))
    return path


def test_an_input_appended_to_during_its_upload_is_refused_not_a_traceback(
    hostile: HostileServer, tmp_path: Path
) -> None:
    path = big_input(tmp_path / "input.jsonl")
    appended = threading.Event()

    def append_while_uploading(method: str, route: str) -> None:
        if method == "POST" and route.endswith("/files"):
            with path.open("a") as extra:
                extra.write('{"custom_id": "late"}\n')
            appended.set()

    hostile.script("/files", {"id": "file-1", "object": "file"})
    hostile.on_request(append_while_uploading)
    with httpx.Client(base_url=hostile.base_url("scripted"), timeout=30) as http:
        api = ProviderApi.over(Transport(http))
        with pytest.raises(InputChangedError) as raised:
            BatchWriter(api.transport).upload_file(UploadSource(path, "input.jsonl"))
    hostile.on_request(None)
    assert appended.is_set()
    assert str(raised.value).startswith(f"{path} changed while it was being uploaded")


def test_apply_with_an_input_changing_under_it_keeps_the_intent_pending(
    hostile: HostileServer, make_repo: MakeRepo, run_cli: RunCli
) -> None:
    repo = make_repo()
    repo.write_provider("odd", base_url=hostile.base_url("scripted"))
    repo.write_input("data/nightly-eval.jsonl", requests=20_000)  # ~2 MB of valid requests
    repo.write_job("nightly-eval", provider="odd")
    path = repo.data / "nightly-eval.jsonl"
    hostile.script("/batches", {"object": "list", "data": [], "has_more": False})
    hostile.script("/files", {"object": "list", "data": [], "has_more": False})
    hostile.script("POST /files", {"id": "file-1", "object": "file"})

    def append(method: str, route: str) -> None:
        if method == "POST" and route.endswith("/files"):
            with path.open("a") as extra:
                extra.write(path.read_text().splitlines()[0] + "\n")

    hostile.on_request(append)
    before = hostile.requests["scripted"]
    posts_before = hostile.calls["POST /batches"]
    try:
        result = run_cli("apply", "--auto-approve", *repo.args())
    finally:
        hostile.on_request(None)
    assert result.exit_code == 1 and "Traceback" not in result.stderr
    assert "changed while it was being uploaded" in result.stderr
    assert hostile.requests["scripted"] > before and hostile.calls["POST /batches"] == posts_before
    pending = json.loads(repo.state.read_text())["jobs"]["nightly-eval"]["pending"]
    assert len(pending) == 1 and pending[0]["input_file_id"] is None


# 9. --------------------------------------------------------- the digest cache


def test_an_edit_that_keeps_size_and_mtime_is_still_seen(
    make_repo: MakeRepo, sandbox: Sandbox, run_cli: RunCli
) -> None:
    repo = make_repo()
    repo.write_provider("local", base_url=sandbox.base_url)
    repo.write_job("nightly-eval", provider="local")
    assert run_cli("apply", "--auto-approve", *repo.args()).exit_code == 0
    path = repo.data / "nightly-eval.jsonl"
    stat = path.stat()
    text = path.read_text()
    assert "Spanish" in text
    path.write_text(text.replace("Spanish", "Spaniel"))  # same length, new content
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert path.stat().st_size == stat.st_size and path.stat().st_mtime_ns == stat.st_mtime_ns
    result = run_cli("plan", "--detailed-exitcode", *repo.args())
    assert result.exit_code == 2, result.stdout
    assert "~ replace" in result.stdout or "+ create" in result.stdout


def test_refresh_inputs_reads_every_input_again(
    make_repo: MakeRepo, sandbox: Sandbox, run_cli: RunCli
) -> None:
    repo = make_repo()
    repo.write_provider("local", base_url=sandbox.base_url)
    repo.write_job("nightly-eval", provider="local")
    assert run_cli("apply", "--auto-approve", *repo.args()).exit_code == 0
    cache = repo.state.parent / "input-cache.json"
    document = json.loads(cache.read_text())
    for entry in document["inputs"].values():
        entry["sha256"] = "0" * 64  # a cache gone wrong in a way no file identity shows
    cache.write_text(json.dumps(document))
    assert run_cli("plan", "--detailed-exitcode", *repo.args()).exit_code == 2  # trusted the cache
    fresh = run_cli("plan", "--detailed-exitcode", "--refresh-inputs", *repo.args())
    assert fresh.exit_code == 0, fresh.stdout
    assert "0" * 64 not in cache.read_text()


# 19. ------------------------------------------------------- the sandbox's data


def test_another_state_file_sees_the_same_builtin_sandbox(
    make_repo: MakeRepo, run_cli: RunCli, tmp_path: Path
) -> None:
    repo = make_repo()
    repo.write_job("nightly-eval")
    first = run_cli("apply", "--auto-approve", *repo.args())
    assert first.exit_code == 0 and "Applied: 1 created" in first.stdout
    elsewhere = tmp_path / "elsewhere" / "state.json"
    again = run_cli("apply", "--auto-approve", *repo.args("--state", str(elsewhere)))
    assert again.exit_code == 0, again.stderr
    assert "Applied: 0 created, 0 cancelled, 1 adopted" in again.stdout
    assert (repo.root / ".reconciler" / "sandbox").is_dir()
    assert not (elsewhere.parent / "sandbox").exists()
