"""Path safety: nothing is read from or written to outside the repo, and the sandbox listens
on loopback unless told otherwise.

Inputs and results that lead outside the repo through `..` or a symlink (a file or a folder)
are refused before anything is sent; a file id from the server is never a path, so a hostile
provider cannot make us write outside the work folder.
"""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path
from urllib.parse import quote

import pytest

from reconciler.sandbox import Sandbox, start_sandbox
from tests.fixtures.repo import MakeRepo, RunCli, UserRepo
from tests.fixtures.sandbox import cli_sandbox
from tests.hostile_server import hostile_server


@pytest.fixture
def repo(make_repo: MakeRepo, sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> UserRepo:
    monkeypatch.setenv("RECONCILER_SANDBOX_URL", sandbox.base_url)
    monkeypatch.setenv("RECONCILER_OWNER", "tests/paths")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.jsonl").write_text('{"custom_id": "x"}\n')
    return make_repo()


def refused(run_cli: RunCli, repo: UserRepo, sandbox: Sandbox, words: str) -> None:
    sandbox.reset_counts()
    for command in (["validate"], ["plan"], ["apply", "--auto-approve"]):
        result = run_cli(*command, *repo.args())
        assert result.exit_code == 1, (command, result.stdout)
        assert words in result.stderr and "Traceback" not in result.stderr, result.stderr
        assert all(line.startswith("error: ") for line in result.stderr.strip().splitlines())
    assert sandbox.request_counts() == {}
    assert not repo.state.exists()


def test_an_input_reached_through_dot_dot_is_refused(
    repo: UserRepo, sandbox: Sandbox, run_cli: RunCli
) -> None:
    repo.write_job("leak", input="../outside/secret.jsonl")
    refused(run_cli, repo, sandbox, "outside the repo")


def test_an_input_that_is_a_symlink_to_a_file_outside_is_refused(
    repo: UserRepo, sandbox: Sandbox, run_cli: RunCli, tmp_path: Path
) -> None:
    (repo.data / "innocent.jsonl").symlink_to(tmp_path / "outside" / "secret.jsonl")
    repo.write_job("leak", input="data/innocent.jsonl")
    refused(run_cli, repo, sandbox, "outside the repo")


def test_an_input_inside_a_symlinked_folder_that_leads_outside_is_refused(
    repo: UserRepo, sandbox: Sandbox, run_cli: RunCli, tmp_path: Path
) -> None:
    (repo.root / "shared").symlink_to(tmp_path / "outside", target_is_directory=True)
    repo.write_job("leak", input="shared/secret.jsonl")
    refused(run_cli, repo, sandbox, "outside the repo")


def test_an_absolute_input_path_is_refused(
    repo: UserRepo, sandbox: Sandbox, run_cli: RunCli, tmp_path: Path
) -> None:
    absolute = tmp_path / "outside" / "secret.jsonl"
    repo.write_spec(
        "specs/leak.yaml",
        f"""
        apiVersion: reconciler/v1
        kind: BatchJob
        metadata: {{name: leak}}
        spec: {{endpoint: /v1/chat/completions, input: {absolute}}}
        """,
    )
    refused(run_cli, repo, sandbox, "is absolute")


@pytest.mark.parametrize("how", ["dot-dot", "symlinked-file", "symlinked-folder"])
def test_results_that_would_be_written_outside_the_repo_are_refused(
    repo: UserRepo, sandbox: Sandbox, run_cli: RunCli, tmp_path: Path, how: str
) -> None:
    outside = tmp_path / "outside"
    if how == "symlinked-file":
        (repo.root / "results").mkdir()
        (repo.root / "results" / "out.jsonl").symlink_to(outside / "planted.jsonl")
    if how == "symlinked-folder":
        (repo.root / "results").symlink_to(outside, target_is_directory=True)
    target = "../../outside/out.jsonl" if how == "dot-dot" else "../results/out.jsonl"
    repo.write_job("nightly-eval", results=target)
    refused(run_cli, repo, sandbox, "outside the repo")
    assert sorted(p.name for p in outside.iterdir()) == ["secret.jsonl"]


def test_a_symlink_that_stays_inside_the_repo_is_followed(
    repo: UserRepo, sandbox: Sandbox, run_cli: RunCli
) -> None:
    repo.write_input("data/real.jsonl", requests=2)
    (repo.data / "alias.jsonl").symlink_to(repo.data / "real.jsonl")
    repo.write_job("nightly-eval", input="data/alias.jsonl")
    assert run_cli("apply", "--auto-approve", *repo.args()).exit_code == 0
    assert sandbox.request_counts()["POST /v1/batches"] == 1


def test_a_file_id_from_the_server_is_never_used_as_a_path(
    repo: UserRepo, run_cli: RunCli, tmp_path: Path
) -> None:
    """A hostile provider answers with an output file id that climbs out of the work folder."""
    from reconciler.engine.workspace import prepare

    repo.write_job("nightly-eval", requests=1, results="../results/out.jsonl")
    with hostile_server() as hostile:
        repo.write_provider("evil", base_url=hostile.base_url("scripted"))
        (repo.specs / "nightly-eval.yaml").unlink()
        repo.write_job("nightly-eval", provider="evil", requests=1, results="../results/out.jsonl")
        ws = prepare(repo.paths)
        job = ws.desired["nightly-eval"]
        metadata = {"reconciler_job": job.name, "reconciler_generation": job.generation}
        metadata |= {"reconciler_owner": ws.owner_tag, "reconciler_attempt": "a1"}
        climbing = "../../../../../escaped-" + os.urandom(4).hex()
        batch = {"id": "batch_1", "status": "completed", "output_file_id": climbing, "metadata": metadata}
        hostile.script("/batches", {"object": "list", "data": [batch], "has_more": False})
        hostile.script("/files", {"object": "list", "data": [], "has_more": False})
        line = {"custom_id": "req-00001", "response": {"status_code": 200, "body": {}}, "error": None}
        # Quoted into one segment, the id cannot steer the request out of /v1/files.
        hostile.script(f"/files/{quote(climbing, safe='')}/content", json.dumps(line).encode() + b"\n")
        result = run_cli("reconcile", *repo.args())
    assert result.exit_code == 0, result.stderr
    landed = list(tmp_path.rglob("*escaped-*"))
    assert landed and all(path.parent == ws.work_dir / job.name / job.generation for path in landed)
    assert json.loads((repo.root / "results" / "out.jsonl").read_text())["custom_id"] == "req-00001"


@pytest.mark.slow
def test_the_sandbox_listens_on_loopback_unless_told_otherwise(tmp_path: Path) -> None:
    running = start_sandbox(tmp_path / "in-process")
    try:
        assert running.base_url.startswith("http://127.0.0.1:")
        port = int(running.base_url.split(":")[2].split("/")[0])
        address = _non_loopback_address()
        if address is not None:
            with pytest.raises(OSError), socket.create_connection((address, port), timeout=2):
                pass
    finally:
        running.stop()
    with cli_sandbox(tmp_path / "cli") as (_, base_url):
        assert base_url.startswith("http://127.0.0.1:")


def _non_loopback_address() -> str | None:
    """This machine's address on its main interface, if it has one (no packet is sent)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("10.255.255.255", 1))
            address: str = probe.getsockname()[0]
        except OSError:
            return None
    return None if address.startswith("127.") else address
