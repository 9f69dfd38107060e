"""A change over a budget is refused alone: apply and reconcile send every other change and exit 1
naming it; the repo-wide budget admits changes in plan order while they fit; `plan
--detailed-exitcode` fails (1) for a plan apply would refuse, and so does the example CI check."""

from __future__ import annotations

import itertools
import os
import re
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from reconciler.sandbox import Sandbox
from tests.fixtures.repo import MakeRepo, RunCli, UserRepo, planned
from tests.fixtures.sandbox import cli_env
from tests.reconcile_helpers import OWNER, batches, mutating, use_sandbox

ROOT = Path(__file__).resolve().parent.parent
WORKFLOW = ROOT / "examples" / "github-actions" / "reconciler.yml"
TINY = {"max_usd": 0.000001}  # 3 requests of up to 64 output tokens each cost more than this


@pytest.fixture
def repo(make_repo: MakeRepo, sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch) -> UserRepo:
    use_sandbox(monkeypatch, sandbox)
    return make_repo()


def test_apply_sends_every_job_but_the_one_over_its_budget_and_exits_1_naming_it(
    repo: UserRepo, sandbox: Sandbox, run_cli: RunCli
) -> None:
    repo.write_job("big", requests=3, budget=TINY)
    repo.write_job("small", requests=3)
    sandbox.reset_counts()

    applied = run_cli("apply", "--auto-approve", *repo.args())

    assert applied.exit_code == 1
    assert "error: big: over budget, not sent: " in applied.stderr
    assert "small" not in applied.stderr and "Traceback" not in applied.stderr
    assert "1 created" in applied.stdout and "1 refused over budget" in applied.stdout
    assert mutating(sandbox.request_counts()) == {"POST /v1/files": 1, "POST /v1/batches": 1}
    assert [len(batches(sandbox, job)) for job in ("big", "small")] == [0, 1]

    allowed = run_cli("apply", "--auto-approve", "--allow-over-budget", *repo.args())

    assert allowed.exit_code == 0, allowed.stderr
    assert [len(batches(sandbox, job)) for job in ("big", "small")] == [1, 1]


def test_reconcile_wait_finishes_the_others_and_fails_naming_the_refused_job(
    repo: UserRepo, sandbox: Sandbox, run_cli: RunCli
) -> None:
    repo.write_job("big", requests=3, budget=TINY)
    repo.write_job("small", requests=3)

    waited = run_cli("reconcile", "--wait", "--timeout", "60", *repo.args())

    assert waited.exit_code == 1
    assert waited.stderr.count("over budget, not sent") == 1 and "error: big:" in waited.stderr
    assert waited.stdout.count("! over budget:") == 1  # shown once, not on every pass of the wait
    (small,) = batches(sandbox, "small")
    assert small.status == "completed" and batches(sandbox, "big") == []


def test_the_repo_budget_admits_changes_in_plan_order_while_they_fit(
    repo: UserRepo, sandbox: Sandbox, run_cli: RunCli
) -> None:
    # up to ~$0.00004 each for a and c, ~$0.0008 for b: a fits, b does not, c still fits
    repo.path("reconciler.yaml").write_text("budget:\n  max_usd_per_plan: 0.0002\n")
    repo.write_job("a", requests=2)
    repo.write_job("b", requests=40)
    repo.write_job("c", requests=2)

    changes = planned(run_cli, repo)
    done = run_cli("reconcile", *repo.args())

    assert done.exit_code == 1
    assert [changes[job]["over_budget_data"] is not None for job in ("a", "b", "c")] == [False, True, False]
    over = changes["b"]["over_budget_data"]
    assert (over["budget"], over["limit_usd"]) == ("plan", 0.0002)
    assert over["planned_usd"] == changes["a"]["cost"]["max_usd"]  # a was admitted first
    assert over["planned_usd"] + over["upper_usd"] > 0.0002
    assert "error: b: over budget, not sent: " in done.stderr
    assert [len(batches(sandbox, job)) for job in ("a", "b", "c")] == [1, 0, 1]


def test_plan_detailed_exitcode_is_1_with_the_reason_for_a_plan_apply_would_refuse(
    repo: UserRepo, run_cli: RunCli
) -> None:
    repo.write_job("small", requests=3)
    assert run_cli("plan", "--detailed-exitcode", *repo.args()).exit_code == 2
    repo.write_job("big", requests=3, budget=TINY)

    checked = run_cli("plan", "--detailed-exitcode", *repo.args())

    assert checked.exit_code == 1
    assert checked.stderr.startswith("error: big: over budget, apply would refuse it: ")
    assert "apply will refuse 1 change over budget (big)" in checked.stdout
    assert run_cli("plan", *repo.args()).exit_code == 0  # without the flag: only shown


def _plan_step(tmp_path: Path, repo: UserRepo, sandbox: Sandbox) -> subprocess.CompletedProcess[str]:
    """The example workflow's plan step, run by bash as GitHub runs it, with `reconciler` on PATH."""
    workflow = yaml.safe_load(WORKFLOW.read_text(encoding="utf-8"))
    (script,) = [s["run"] for s in workflow["jobs"]["plan"]["steps"] if s.get("name") == "reconciler plan"]
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    launcher = bin_dir / "reconciler"
    launcher.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m reconciler "$@"\n')
    launcher.chmod(launcher.stat().st_mode | stat.S_IXUSR)
    env = cli_env() | {
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "GITHUB_STEP_SUMMARY": str(tmp_path / "summary.md"),
        "RECONCILER_SANDBOX_URL": sandbox.base_url,
        "RECONCILER_OWNER": OWNER,
        "NO_COLOR": "1",
    }
    return subprocess.run(
        ["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", script],
        cwd=repo.root,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_example_ci_check_fails_for_a_plan_apply_would_refuse(
    repo: UserRepo, sandbox: Sandbox, tmp_path: Path
) -> None:
    repo.write_job("small", requests=3)
    within = _plan_step(tmp_path, repo, sandbox)
    assert within.returncode == 0, within.stderr
    assert "::notice::" in within.stdout  # changes: shown, and the check stays green

    repo.write_job("big", requests=3, budget=TINY)
    over = _plan_step(tmp_path, repo, sandbox)

    assert over.returncode == 1, over.stdout + over.stderr
    assert "error: big: over budget, apply would refuse it" in over.stderr
    assert "over budget" in (tmp_path / "summary.md").read_text()


def test_a_refusal_never_writes_two_different_amounts_alike(repo: UserRepo, run_cli: RunCli) -> None:
    repo.write_job("a", requests=2)
    repo.write_job("b", requests=2)
    upper = planned(run_cli, repo)["a"]["cost"]["max_usd"]
    # a fits; b, as dear as a, does not, and the limit is a hair above what each costs
    repo.path("reconciler.yaml").write_text(f"budget:\n  max_usd_per_plan: {upper * 1.001!r}\n")
    over = planned(run_cli, repo)["b"]["over_budget_data"]
    figures = (over["upper_usd"], over["limit_usd"], over["planned_usd"])
    checked = run_cli("plan", "--detailed-exitcode", *repo.args())
    assert checked.exit_code == 1
    (line,) = [x for x in checked.stderr.splitlines() if x.startswith("error: b: over budget")]
    shown = re.findall(r"\$[0-9.,]+[0-9]", line)
    assert len(shown) == 3 and shown[0] != shown[1]  # up to $U does not fit in … $L: $P already planned
    assert [a == b for a, b in itertools.combinations(figures, 2)] == [
        a == b for a, b in itertools.combinations(shown, 2)
    ]
