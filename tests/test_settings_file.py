"""reconciler.yaml: one model for the whole file; a mistake in it is one line with file, line and a
"did you mean", from `validate` as from every other command, and nothing is sent."""

from __future__ import annotations

import subprocess
import sys

import pytest

from reconciler.sandbox import Sandbox
from tests.fixtures.repo import MakeRepo, RunCli, UserRepo
from tests.fixtures.sandbox import cli_env
from tests.reconcile_helpers import mutating, use_sandbox
from tests.test_validate_specs import error_lines

# Counts the times the process opens reconciler.yaml, then runs the CLI with the given arguments.
COUNT_OPENS = """
import sys
opened = []
sys.addaudithook(
    lambda event, args: opened.append(1)
    if event == "open" and str(args[0]).endswith("reconciler.yaml") else None
)
from reconciler.cli.main import main
try:
    main(sys.argv[1:])
except SystemExit as done:
    print(f"exit {done.code}, opened reconciler.yaml {len(opened)} times", file=sys.stderr)
"""


@pytest.fixture
def repo(make_repo: MakeRepo, sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch) -> UserRepo:
    use_sandbox(monkeypatch, sandbox)
    made = make_repo()
    made.write_job("nightly-eval", requests=2)
    return made


@pytest.mark.parametrize(
    ("text", "where", "fragment"),
    [
        ("owner: x\nbudgte:\n  max_usd_per_plan: 10\n", "reconciler.yaml:2: budgte:", "did you mean 'budget'?"),
        ("budget:\n  max_usd_per_pln: 10\n", "reconciler.yaml:2: budget.max_usd_per_pln:", "did you mean 'max_usd_per_plan'?"),
        ("owner: 12\n", "reconciler.yaml:1: owner:", "must be a string"),
        ("budget:\n  max_usd_per_plan: -1\n", "reconciler.yaml:2: budget.max_usd_per_plan:", "greater than 0"),
        ("budget: 10\n", "reconciler.yaml:1: budget:", "must be a mapping"),
        ("owner: a\nowner: b\n", "reconciler.yaml:2:", "duplicate key 'owner'"),
        ("- owner: a\n", "reconciler.yaml:1:", "must be a mapping of settings"),
    ],
    ids=["misspelt-budget", "misspelt-budget-key", "owner-not-a-string", "negative", "not-a-mapping", "twice", "a-list"],
)  # fmt: skip
def test_a_mistake_in_reconciler_yaml_fails_validate_with_its_line(
    repo: UserRepo, run_cli: RunCli, text: str, where: str, fragment: str
) -> None:
    repo.path("reconciler.yaml").write_text(text)

    result = run_cli("validate", *repo.args())

    assert result.exit_code == 1 and "Traceback" not in result.stderr
    (line,) = error_lines(result)
    assert line.startswith(f"error: {where}") and fragment in line, result.stderr
    assert repo.written() == ["reconciler.yaml"]  # nothing written


def test_a_misspelt_budget_key_stops_plan_and_apply_with_one_line_and_sends_nothing(
    repo: UserRepo, sandbox: Sandbox, run_cli: RunCli
) -> None:
    repo.path("reconciler.yaml").write_text("owner: x\nbudgte:\n  max_usd_per_plan: 0.000001\n")
    sandbox.reset_counts()

    for command in (("plan",), ("apply", "--auto-approve"), ("reconcile",)):
        result = run_cli(*command, *repo.args())
        assert result.exit_code == 1, result.stdout
        assert result.stderr.splitlines() == [
            "error: reconciler.yaml:2: budgte: unknown key; did you mean 'budget'?"
        ]
    assert mutating(sandbox.request_counts()) == {}


def test_pydantic_wording_never_reaches_the_user(repo: UserRepo, run_cli: RunCli) -> None:
    repo.path("reconciler.yaml").write_text("budget:\n  max_usd_per_pln: 10\n")

    result = run_cli("plan", *repo.args())

    assert result.exit_code == 1
    assert "Extra inputs are not permitted" not in result.stderr and "pydantic" not in result.stderr
    assert "budget.max_usd_per_pln: unknown key; did you mean 'max_usd_per_plan'?" in result.stderr


@pytest.mark.slow
def test_reconciler_yaml_is_read_once_per_command(repo: UserRepo, sandbox: Sandbox) -> None:
    repo.path("reconciler.yaml").write_text("owner: tests/settings\nbudget:\n  max_usd_per_plan: 100\n")
    env = cli_env() | {"RECONCILER_SANDBOX_URL": sandbox.base_url}
    env.pop("RECONCILER_OWNER", None)  # the owner comes from reconciler.yaml

    done = subprocess.run(
        [sys.executable, "-c", COUNT_OPENS, "plan", *repo.args()],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert "exit 0, opened reconciler.yaml 1 times" in done.stderr, done.stderr
