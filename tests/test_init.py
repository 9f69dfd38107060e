"""`reconciler init`: a new repo that validates and plans against the sandbox, each file only if absent."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import yaml

from reconciler.cli.commands.init import package_from_direct_url
from reconciler.cli.commands.schema import render
from reconciler.specs.identity import resolve_owner
from reconciler.specs.yamlsource import SafeLoader12
from tests.fixtures.repo import HasBaseUrl, RunCli

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE_WORKFLOW = ROOT / "examples" / "github-actions" / "reconciler.yml"
WRITTEN = [
    "reconciler.yaml",
    "specs/example.yaml",
    "data/example.jsonl",
    "schema/reconciler-v1.schema.json",
    ".github/workflows/reconciler.yml",
    ".reconciler/.gitignore",
]


def _git_repo(folder: Path, remote: str | None = None) -> Path:
    subprocess.run(["git", "init", "-q", str(folder)], check=True, timeout=30)
    if remote:
        subprocess.run(["git", "-C", str(folder), "remote", "add", "origin", remote], check=True, timeout=30)
    return folder


def _files(root: Path) -> dict[str, tuple[bytes, int]]:
    return {
        p.relative_to(root).as_posix(): (p.read_bytes(), p.stat().st_mtime_ns)
        for p in root.rglob("*")
        if p.is_file() and ".git" not in p.relative_to(root).parts[:1]
    }


@pytest.fixture
def to_sandbox(sandbox: HasBaseUrl, monkeypatch: pytest.MonkeyPatch) -> None:
    """Jobs without a provider go to this test's sandbox; the owner comes from reconciler.yaml."""
    monkeypatch.setenv("RECONCILER_SANDBOX_URL", sandbox.base_url)


@pytest.mark.usefixtures("to_sandbox")
def test_init_in_a_fresh_git_repo_validates_and_plans_the_example_against_the_sandbox(
    tmp_path: Path, run_cli: RunCli
) -> None:
    root = _git_repo(tmp_path / "evals")

    init = run_cli("init", "--repo", str(root))

    assert init.exit_code == 0, init.stderr
    assert [line.split()[:2] for line in init.stdout.splitlines()[: len(WRITTEN)]] == [
        ["wrote", path] for path in WRITTEN
    ]
    assert "set RECONCILER_PACKAGE in .github/workflows/reconciler.yml" in init.stdout
    validate = run_cli("validate", "--repo", str(root))
    assert (validate.exit_code, validate.stdout) == (0, "1 job, 0 providers: valid\n"), validate.stderr
    plan = run_cli("plan", "--repo", str(root), "--detailed-exitcode")
    assert plan.exit_code == 2, plan.stderr
    assert re.search(r"^\+ create\s+example\s+3 requests", plan.stdout, re.MULTILINE), plan.stdout
    assert "Plan: 1 to create; 0 unchanged." in plan.stdout


def test_the_example_points_its_editor_at_a_schema_init_wrote_beside_it(
    tmp_path: Path, run_cli: RunCli
) -> None:
    root = _git_repo(tmp_path / "evals")

    assert run_cli("init", "--repo", str(root)).exit_code == 0

    first = (root / "specs" / "example.yaml").read_text(encoding="utf-8").splitlines()[0]
    match = re.fullmatch(r"# yaml-language-server: \$schema=(\S+)", first)
    assert match and not Path(match.group(1)).is_absolute()
    schema = (root / "specs" / match.group(1)).resolve()
    assert schema == root / "schema" / "reconciler-v1.schema.json"
    assert schema.read_text(encoding="utf-8") == render()
    # nothing written names a folder of this machine: every file is meant to be committed
    assert not [path for path, (text, _) in _files(root).items() if str(tmp_path).encode() in text]


def test_a_second_init_changes_nothing_and_says_each_file_was_kept(tmp_path: Path, run_cli: RunCli) -> None:
    root = _git_repo(tmp_path / "evals")
    assert run_cli("init", "--repo", str(root)).exit_code == 0
    before = _files(root)

    again = run_cli("init", "--repo", str(root))

    assert again.exit_code == 0, again.stderr
    assert _files(root) == before
    assert [line.split()[:2] for line in again.stdout.splitlines()[: len(WRITTEN)]] == [
        ["kept", path] for path in WRITTEN
    ]


def test_init_outside_a_git_repository_exits_1_with_one_line_and_writes_nothing(
    tmp_path: Path, run_cli: RunCli
) -> None:
    folder = tmp_path / "not-a-repo"
    folder.mkdir()

    result = run_cli("init", "--repo", str(folder))

    assert result.exit_code == 1
    assert result.stderr == f"error: {folder} is not inside a git repository: run `git init` there first\n"
    assert result.stdout == "" and list(folder.iterdir()) == []


def test_init_pins_the_owner_id_the_git_remote_gives(tmp_path: Path, run_cli: RunCli) -> None:
    root = _git_repo(tmp_path / "evals", remote="git@github.com:Acme/Evals.git")

    assert run_cli("init", "--repo", str(root)).exit_code == 0

    settings = yaml.load((root / "reconciler.yaml").read_text(encoding="utf-8"), Loader=SafeLoader12)
    assert settings == {"owner": "github.com/acme/evals"}
    subprocess.run(["git", "-C", str(root), "remote", "remove", "origin"], check=True, timeout=30)
    assert resolve_owner(root) == "github.com/acme/evals"  # pinned: no longer needs the remote


def test_without_a_remote_the_owner_is_the_folder_name_made_unique(tmp_path: Path, run_cli: RunCli) -> None:
    first, second = _git_repo(tmp_path / "Nightly Evals"), _git_repo(tmp_path / "other" / "Nightly Evals")

    assert run_cli("init", "--repo", str(first)).exit_code == 0
    assert run_cli("init", "--repo", str(second)).exit_code == 0

    owners = [resolve_owner(root) for root in (first, second)]
    assert all(re.fullmatch(r"nightly-evals-[0-9a-f]{6}", owner) for owner in owners), owners
    assert owners[0] != owners[1]  # two repos sharing an account must not share an owner


@pytest.mark.usefixtures("to_sandbox")
def test_init_in_a_repo_with_specs_keeps_them_and_writes_no_example(tmp_path: Path, run_cli: RunCli) -> None:
    root = _git_repo(tmp_path / "evals")
    (root / "specs").mkdir()
    job = "apiVersion: reconciler/v1\nkind: BatchJob\nmetadata: {name: mine}\nspec: {endpoint: /v1/embeddings, input: ../data/mine.jsonl}\n"
    (root / "specs" / "mine.yaml").write_text(job, encoding="utf-8")
    (root / "data").mkdir()
    line = '{"custom_id": "a", "method": "POST", "url": "/v1/embeddings", "body": {"model": "text-embedding-3-small", "input": "hi"}}\n'
    (root / "data" / "mine.jsonl").write_text(line, encoding="utf-8")
    (root / "reconciler.yaml").write_text("owner: acme-evals\n", encoding="utf-8")

    result = run_cli("init", "--repo", str(root))

    assert result.exit_code == 0, result.stderr
    assert "kept  reconciler.yaml (already there)" in result.stdout
    assert "skip  specs/example.yaml (specs/ holds specs already)" in result.stdout
    assert not (root / "specs" / "example.yaml").exists() and not (root / "data" / "example.jsonl").exists()
    assert (root / "reconciler.yaml").read_text(encoding="utf-8") == "owner: acme-evals\n"
    assert run_cli("validate", "--repo", str(root)).stdout == "1 job, 0 providers: valid\n"


@pytest.mark.usefixtures("to_sandbox")
def test_init_in_a_folder_of_a_larger_repo_runs_the_workflow_in_that_folder(
    tmp_path: Path, run_cli: RunCli
) -> None:
    top = _git_repo(tmp_path / "monorepo")
    root = top / "batch" / "jobs"
    root.mkdir(parents=True)

    result = run_cli("init", "--repo", str(root))

    assert result.exit_code == 0, result.stderr
    assert "wrote ../../.github/workflows/reconciler.yml" in result.stdout
    workflow = yaml.load((top / ".github/workflows/reconciler.yml").read_text(), Loader=SafeLoader12)
    assert workflow["defaults"] == {"run": {"working-directory": "batch/jobs"}}
    assert set(workflow["on"]) >= {"pull_request", "push"}
    assert run_cli("plan", "--repo", str(root), "--detailed-exitcode").exit_code == 2


def test_the_workflow_init_writes_is_the_documented_example() -> None:
    template = ROOT / "reconciler" / "cli" / "templates" / "reconciler.yml"
    assert template.read_text(encoding="utf-8") == EXAMPLE_WORKFLOW.read_text(encoding="utf-8")


@pytest.mark.parametrize(
    ("origin", "requirement"),
    [
        (
            {"url": "https://github.com/acme/reconciler", "vcs_info": {"vcs": "git", "commit_id": "abc123"}},
            "batch-reconciler @ git+https://github.com/acme/reconciler@abc123",
        ),
        (
            {
                "url": "https://user:s3cret@git.example.com/r.git",
                "vcs_info": {"vcs": "git", "commit_id": "c0ffee"},
            },
            "batch-reconciler @ git+https://git.example.com/r.git@c0ffee",
        ),
        (
            {
                "url": "ssh://git@github.com/acme/reconciler.git",
                "vcs_info": {"vcs": "git", "commit_id": "abc"},
            },
            "batch-reconciler @ git+ssh://git@github.com/acme/reconciler.git@abc",
        ),
        ({"url": "file:///home/me/reconciler", "dir_info": {"editable": True}}, None),
        ({"url": "file:///home/me/reconciler", "vcs_info": {"vcs": "git", "commit_id": "abc"}}, None),
        ({"url": "https://files.example.com/r.whl", "archive_info": {}}, None),
    ],
)
def test_the_workflow_installs_what_this_reconciler_was_installed_from(
    origin: dict[str, object], requirement: str | None
) -> None:
    assert package_from_direct_url(origin) == requirement
