"""The Provider examples, the GitHub Actions workflow, the pre-commit hook and the commands in
The README's sections (Use with Portkey, Use in CI, ...): each one works as a user would copy it.
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.fixtures.repo import MakeRepo, RunCli, UserRepo
from tests.fixtures.sandbox import cli_env

ROOT = Path(__file__).resolve().parents[1]
PROVIDER_EXAMPLES = sorted((ROOT / "examples" / "providers").glob("*.yaml"))
WORKFLOW = ROOT / "examples" / "github-actions" / "reconciler.yml"
DOCS = (ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md")))
CREDENTIAL_HEADERS = {"authorization", "x-portkey-api-key", "x-portkey-virtual-key"}
VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def _provider(path: Path) -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(path.read_text(encoding="utf-8"))
    return document


def _repo_using(make_repo: MakeRepo, example: Path) -> UserRepo:
    repo = make_repo()
    shutil.copy(example, repo.specs / example.name)
    repo.write_job("nightly-eval", provider=_provider(example)["metadata"]["name"])
    return repo


def test_there_is_an_example_for_each_kind_of_provider() -> None:
    assert [path.name for path in PROVIDER_EXAMPLES] == [
        "openai-compatible.yaml",
        "openai.yaml",
        "portkey-hosted-virtual-key.yaml",
        "portkey-hosted.yaml",
        "portkey-self-hosted-custom-host.yaml",
        "portkey-self-hosted.yaml",
    ]


@pytest.mark.parametrize("example", PROVIDER_EXAMPLES, ids=lambda path: path.stem)
def test_example_provider_validates_with_a_job_that_uses_it(
    example: Path, make_repo: MakeRepo, run_cli: RunCli
) -> None:
    repo = _repo_using(make_repo, example)

    result = run_cli("validate", *repo.args())

    assert (result.exit_code, result.stdout.strip()) == (0, "1 job, 1 provider: valid"), result.stderr


@pytest.mark.parametrize("example", PROVIDER_EXAMPLES, ids=lambda path: path.stem)
def test_example_provider_takes_every_credential_from_an_environment_variable(example: Path) -> None:
    headers: dict[str, str] = _provider(example)["spec"]["headers"]

    credentials = {name: value for name, value in headers.items() if name.lower() in CREDENTIAL_HEADERS}

    assert credentials, "every example authenticates somehow"
    assert all(VARIABLE.search(value) for value in credentials.values()), credentials


@pytest.mark.slow
@pytest.mark.parametrize("example", PROVIDER_EXAMPLES, ids=lambda path: path.stem)
def test_plan_with_an_example_provider_names_each_unset_variable_before_sending_anything(
    example: Path, make_repo: MakeRepo
) -> None:
    repo = _repo_using(make_repo, example)
    headers = _provider(example)["spec"]["headers"].values()
    variables = [name for value in headers for name in VARIABLE.findall(value)]
    # Only what python needs: none of the examples' variables can leak in from the shell.
    env = {k: v for k, v in cli_env().items() if k in ("PATH", "PYTHONPATH", "HOME")}
    env["RECONCILER_OWNER"] = "tests/examples"

    run = subprocess.run(
        [sys.executable, "-m", "reconciler", "plan"],
        cwd=repo.root,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert run.returncode == 1
    assert variables and all(f"needs ${{{name}}}, which is not set" in run.stderr for name in variables)
    assert "Traceback" not in run.stderr


def test_pre_commit_hook_runs_validate_once_when_specs_or_data_change() -> None:
    (hook,) = yaml.safe_load((ROOT / ".pre-commit-hooks.yaml").read_text(encoding="utf-8"))

    assert (hook["id"], hook["entry"], hook["language"]) == (
        "reconciler-validate",
        "reconciler validate",
        "python",
    )
    assert hook["pass_filenames"] is False
    changed = ["specs/jobs/eval.yaml", "data/nightly.jsonl", "README.md", "src/specs/x.yaml"]
    assert [path for path in changed if re.search(hook["files"], path)] == changed[:2]


def _workflow_runs(job: str) -> str:
    workflow = yaml.safe_load(WORKFLOW.read_text(encoding="utf-8"))
    return "\n".join(step.get("run", "") for step in workflow["jobs"][job]["steps"])


def test_workflow_plans_on_pull_requests_and_applies_on_main() -> None:
    workflow = yaml.safe_load(WORKFLOW.read_text(encoding="utf-8"))
    triggers = workflow[True]  # YAML 1.1 reads the key `on` as true

    assert {"pull_request", "push"} <= set(triggers)
    assert triggers["push"]["branches"] == ["main"]
    assert "reconciler validate" in _workflow_runs("plan")
    assert 'reconciler plan --detailed-exitcode --format markdown >> "$GITHUB_STEP_SUMMARY"' in (
        _workflow_runs("plan")
    )
    assert "reconciler apply --auto-approve" in _workflow_runs("apply")
    assert "git add --force .reconciler/state.json" in _workflow_runs("apply")
    assert "secrets." not in _workflow_runs("plan") + _workflow_runs("apply")  # only via env


def _code_in(markdown: str) -> list[str]:
    """Fenced blocks and inline `code` spans: where a doc shows something to type."""
    fenced = re.findall(r"^```[^\n]*\n(.*?)^```", markdown, flags=re.M | re.S)
    prose = re.sub(r"^```.*?^```", "", markdown, flags=re.M | re.S)
    return fenced + re.findall(r"`([^`\n]+)`", prose)


def _command_lines() -> list[list[str]]:
    """Every `reconciler …` command in the workflow's steps and the docs' code, as arguments."""
    workflow = yaml.safe_load(WORKFLOW.read_text(encoding="utf-8"))
    snippets = [step.get("run", "") for job in workflow["jobs"].values() for step in job["steps"]]
    snippets += [code for doc in DOCS for code in _code_in(doc.read_text(encoding="utf-8"))]
    found: set[tuple[str, ...]] = set()
    for snippet in snippets:
        snippet = re.sub(r"(^|\s)#.*", "", snippet, flags=re.M)  # comments are prose
        # every place the command starts (overlapping), except `reconciler` as a user or group (`-u reconciler`)
        for match in re.finditer(r"(?:^|(?<=[\s;(]))(?<!-[a-z] )(?=reconciler ([^\n;|>&#`)]*))", snippet):
            if words := tuple(shlex.split(match.group(1))):  # a bare `reconciler > file` has none
                found.add(words)
    return [list(words) for words in sorted(found)]


@pytest.mark.parametrize("words", _command_lines(), ids=" ".join)
def test_command_in_the_workflow_and_docs_is_one_the_cli_accepts(words: list[str], run_cli: RunCli) -> None:
    # --help makes click check every option and argument, then stop before doing anything.
    result = run_cli(*words, "--help")

    assert result.exit_code == 0, result.stderr
    assert result.stdout.startswith(f"Usage: reconciler {words[0]}")
