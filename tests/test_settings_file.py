"""reconciler.yaml: one model for the whole file; a mistake in it is one line with file, line and a
"did you mean", from `validate` as from every other command, and nothing is sent."""

from __future__ import annotations

import subprocess
import sys

import pytest

from reconciler.sandbox import Sandbox
from tests.fixtures.daemon import StartDaemon, reconciler_env, watch_command
from tests.fixtures.repo import MakeRepo, RunCli, UserRepo
from tests.fixtures.sandbox import cli_env
from tests.reconcile_helpers import batches, mutating, use_sandbox
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
        ("budget:\n  max_usd_per_plan: .inf\n", "reconciler.yaml:2: budget.max_usd_per_plan:", "a finite number"),
        ("budget:\n  max_usd_per_plan: .nan\n", "reconciler.yaml:2: budget.max_usd_per_plan:", "a finite number"),
        ("budget: 10\n", "reconciler.yaml:1: budget:", "must be a mapping"),
        ("owner: a\nowner: b\n", "reconciler.yaml:2:", "duplicate key 'owner'"),
        ("- owner: a\n", "reconciler.yaml:1:", "must be a mapping of settings"),
    ],
    ids=["misspelt-budget", "misspelt-budget-key", "owner-not-a-string", "negative", "infinite", "nan", "not-a-mapping", "twice", "a-list"],
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


# The daemon ------------------------------------------------------------------------------


def test_a_daemon_started_with_a_mistake_in_reconciler_yaml_exits_1_naming_its_line(
    make_repo: MakeRepo, sandbox: Sandbox
) -> None:
    repo = make_repo()
    repo.write_job("nightly-eval", requests=2)
    repo.path("reconciler.yaml").write_text("budgte:\n  max_usd_per_plan: 1\n")
    done = subprocess.run(
        watch_command(repo, "--interval", "0.5"),
        env=reconciler_env(sandbox),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1
    assert done.stderr.splitlines() == [
        "error: reconciler.yaml:1: budgte: unknown key; did you mean 'budget'?"
    ]
    assert sandbox.request_counts() == {} and repo.written() == ["reconciler.yaml"]  # nothing more


def test_the_daemon_reads_reconciler_yaml_again_when_it_alone_changes(
    make_repo: MakeRepo, sandbox: Sandbox, start_daemon: StartDaemon
) -> None:
    repo = make_repo()
    settings = repo.path("reconciler.yaml")
    settings.write_text("budget:\n  max_usd_per_plan: 0.0002\n")
    repo.write_job("big", requests=40)  # up to ~$0.0008: over the repo's budget
    daemon = start_daemon(repo, sandbox, "--log-format", "json")
    daemon.eventually(lambda: [e for e in daemon.events() if e["event"] == "over_budget"])

    settings.write_text("budgte:\n  max_usd_per_plan: 1\n")  # a mistake: said, the last good kept
    invalid = daemon.eventually(lambda: [e for e in daemon.events() if e["event"] == "spec_invalid"])
    assert invalid[0]["message"] == "reconciler.yaml:1: budgte: unknown key; did you mean 'budget'?"
    assert batches(sandbox, "big") == []

    settings.write_text("budget:\n  max_usd_per_plan: 1\n")  # fixed, and raised: big fits now
    daemon.eventually(lambda: batches(sandbox, "big"))
    assert [e["event"] for e in daemon.events()].count("specs_valid") == 1
    assert len(batches(sandbox, "big")) == 1
