"""Cost over real HTTP: the plan's estimate, the bill read from the sandbox's output lines, budgets."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

import pytest

from reconciler.common.usage import usd
from reconciler.sandbox import Sandbox
from reconciler.specs.prices import DEFAULT_PRICES
from tests.bench.data import chat_request
from tests.fixtures.repo import MakeRepo, RunCli, UserRepo, planned
from tests.reconcile_helpers import batches, mutating, sdk, state_of, use_sandbox, wait_until

ROOT = Path(__file__).resolve().parent.parent
MINI = DEFAULT_PRICES["gpt-4o-mini"]
# The estimate against the sandbox's counts (README "Cost"); against o200k it is -7% … +41%.
DOCUMENTED_ERROR = 0.05


@pytest.fixture
def repo(make_repo: MakeRepo, sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch) -> UserRepo:
    use_sandbox(monkeypatch, sandbox)
    return make_repo()


def plan_json(run_cli: RunCli, repo: UserRepo) -> dict[str, Any]:
    result = run_cli("plan", "--json", *repo.args())
    assert result.exit_code == 0, result.stderr
    plan: dict[str, Any] = json.loads(result.stdout)
    return plan


def reconcile_until_done(run_cli: RunCli, repo: UserRepo, *flags: str) -> None:
    result = run_cli("reconcile", "--wait", "--timeout", "60", *flags, *repo.args())
    assert result.exit_code == 0, result.stdout + result.stderr


def test_the_plan_prices_each_change_and_the_total_at_batch_prices(repo: UserRepo, run_cli: RunCli) -> None:
    repo.write_job("a", requests=3)  # max_tokens 64 each
    repo.write_job("b", requests=5)
    document = plan_json(run_cli, repo)
    by_job = {c["job"]: c["cost"] for c in document["changes"]}
    for job, requests in (("a", 3), ("b", 5)):
        cost = by_job[job]
        assert cost["max_output_tokens"] == requests * 64
        assert cost["input_usd"] == pytest.approx(cost["input_tokens"] * MINI.input / 1e6)
        assert cost["max_output_usd"] == pytest.approx(requests * 64 * MINI.output / 1e6)
    total = document["cost"]
    assert total["max_output_tokens"] == 8 * 64
    assert total["max_usd"] == pytest.approx(by_job["a"]["max_usd"] + by_job["b"]["max_usd"])
    text = run_cli("plan", *repo.args()).stdout
    assert "(input) + up to $0.00" in text and text.count("(output)") == 3  # two changes and the total
    markdown = run_cli("plan", "--format", "markdown", *repo.args()).stdout
    assert "| est. cost |" in markdown and "Cost: ~$" in markdown


def test_a_provider_price_wins_over_the_table_and_an_unknown_model_says_no_price(
    repo: UserRepo, sandbox: Sandbox, run_cli: RunCli
) -> None:
    repo.write_spec(
        "specs/priced.yaml",
        f"""
        apiVersion: reconciler/v1
        kind: Provider
        metadata: {{name: priced}}
        spec:
          base_url: {sandbox.base_url}
          pricing:
            gpt-4o-mini: {{input: 1000, output: 2000}}
        """,
    )
    repo.write_job("mine", requests=2, provider="priced")
    repo.write_job("odd", requests=2, model="gpt-unlisted-model")
    changes = {c["job"]: c["cost"] for c in plan_json(run_cli, repo)["changes"]}
    assert changes["mine"]["max_output_usd"] == pytest.approx(2 * 64 * 2000 / 1e6)
    assert changes["odd"]["input_usd"] is None and changes["odd"]["max_usd"] is None


def test_the_estimate_is_within_its_documented_error_of_what_the_sandbox_counted(
    repo: UserRepo, run_cli: RunCli
) -> None:
    repo.path("data").mkdir(exist_ok=True)
    shutil.copy(ROOT / "data" / "nightly-eval.jsonl", repo.path("data/quickstart.jsonl"))
    repo.write_job("quickstart", input="data/quickstart.jsonl")
    repo.write_job("fixture", requests=100)
    repo.write_input("data/long.jsonl", lines=[chat_request(i) for i in range(40)])
    repo.write_job("long", input="data/long.jsonl")
    estimates = {c["job"]: c["cost"] for c in plan_json(run_cli, repo)["changes"]}
    reconcile_until_done(run_cli, repo)
    jobs = state_of(repo.root)["jobs"]
    for name, estimate in estimates.items():
        (used,) = jobs[name]["usage"].values()
        assert abs(estimate["input_tokens"] - used["input"]) <= DOCUMENTED_ERROR * used["input"], name
        assert 0 < used["output"] <= estimate["max_output_tokens"], name


def test_actual_usage_is_summed_exactly_from_every_output_line_across_parts_and_retries(
    repo: UserRepo, sandbox: Sandbox, run_cli: RunCli
) -> None:
    sandbox.configure(expiry_seconds=1.0, requests_per_second=40, validation_seconds=0.05)
    repo.write_job("nightly-eval", requests=120, split={"max_requests": 50}, retry={"max_attempts": 4})
    reconcile_until_done(run_cli, repo)
    reconcile_until_done(run_cli, repo)  # a pass more: the last batches' usage is read once they end
    live = batches(sandbox, "nightly-eval")
    assert len({b.metadata["reconciler_part"] for b in live}) == 3
    assert any(b.metadata["reconciler_retry"] != "1" for b in live), "some part was meant to be retried"
    expected = {"input": 0, "output": 0, "requests": 0}
    for batch in live:
        if batch.output_file_id:
            for line in sdk(sandbox).files.content(batch.output_file_id).text.splitlines():
                usage = json.loads(line)["response"]["body"]["usage"]
                expected["input"] += usage["prompt_tokens"]
                expected["output"] += usage["completion_tokens"]
                expected["requests"] += 1
    job = state_of(repo.root)["jobs"]["nightly-eval"]
    summed = {k: sum(u[k] for u in job["usage"].values()) for k in expected}
    assert summed == expected and expected["requests"] == 120
    assert set(job["usage"]) == {b.id for b in live if b.output_file_id}
    status = run_cli("status", *repo.args()).stdout
    cost = (expected["input"] * MINI.input + expected["output"] * MINI.output) / 1e6
    assert f"{expected['input']:,} input tokens" in status and f"requests: {usd(cost)}" in status


def test_a_run_costing_a_few_thousandths_of_a_cent_reads_the_same_wherever_it_is_shown(
    repo: UserRepo, run_cli: RunCli
) -> None:
    repo.write_job("nightly-eval", requests=3)
    reconcile_until_done(run_cli, repo)
    reconcile_until_done(run_cli, repo)  # a pass more: the usage is read once the batch has ended
    (current,) = state_of(repo.root)["jobs"]["nightly-eval"]["history"]
    cost = current["cost_usd"]
    assert 0 < cost < 0.0001  # small enough for `%g` to write it in e-notation
    table = run_cli("status", *repo.args()).stdout
    detail = run_cli("status", "nightly-eval", *repo.args()).stdout
    output = run_cli("output", *repo.args()).stdout
    (row,) = [line for line in table.splitlines() if line.startswith("nightly-eval")]
    (run,) = [line for line in detail.splitlines() if line.strip().startswith("default (current)")]
    assert row.split()[-1] == usd(cost) and run.split()[-1] == usd(cost)
    assert f"  cost     {usd(cost)}" in output.splitlines()
    amounts = re.findall(r"\$\S*", table + detail + output)
    assert len(amounts) == 4 and all(re.fullmatch(r"\$[0-9,]+\.[0-9]+", a) for a in amounts), amounts


def test_a_job_over_its_budget_is_refused_with_nothing_sent_unless_allowed(
    repo: UserRepo, sandbox: Sandbox, run_cli: RunCli
) -> None:
    repo.write_job("nightly-eval", requests=3, budget={"max_usd": 0.00001})
    over = planned(run_cli, repo)["nightly-eval"]["over_budget_data"]
    assert (over["budget"], over["limit_usd"], over["spent_usd"], over["unknown"]) == (
        "job",
        0.00001,
        0,
        None,
    )
    assert over["upper_usd"] > 0.00001
    sandbox.reset_counts()
    refused = run_cli("apply", "--auto-approve", *repo.args())
    assert refused.exit_code == 1
    assert "error: nightly-eval: over budget, not sent: " in refused.stderr
    assert "--allow-over-budget" in refused.stderr
    assert "Traceback" not in refused.stderr
    assert mutating(sandbox.request_counts()) == {}
    assert batches(sandbox) == []
    allowed = run_cli("apply", "--auto-approve", "--allow-over-budget", *repo.args())
    assert allowed.exit_code == 0, allowed.stderr
    assert mutating(sandbox.request_counts()) == {"POST /v1/files": 1, "POST /v1/batches": 1}


def test_a_plan_over_the_repo_budget_is_refused_by_reconcile(
    repo: UserRepo, sandbox: Sandbox, run_cli: RunCli
) -> None:
    repo.path("reconciler.yaml").write_text("owner: x\nbudget:\n  max_usd_per_plan: 0.0001\n")
    repo.write_job("a", requests=20)
    repo.write_job("b", requests=20)
    changes = planned(run_cli, repo)
    for job in ("a", "b"):  # each alone passes the repo budget
        over = changes[job]["over_budget_data"]
        assert (over["budget"], over["limit_usd"], over["planned_usd"]) == ("plan", 0.0001, 0)
        assert over["upper_usd"] > 0.0001
    sandbox.reset_counts()
    refused = run_cli("reconcile", *repo.args())
    assert refused.exit_code == 1
    for job in ("a", "b"):
        assert f"error: {job}: over budget, not sent: " in refused.stderr
    assert mutating(sandbox.request_counts()) == {}
    reconcile_until_done(run_cli, repo, "--allow-over-budget")
    assert len(batches(sandbox)) == 2


def test_a_budget_that_cannot_be_checked_is_refused_naming_the_missing_price(
    repo: UserRepo, sandbox: Sandbox, run_cli: RunCli
) -> None:
    repo.write_job("odd", requests=2, model="gpt-unlisted-model", budget={"max_usd": 5})
    over = planned(run_cli, repo)["odd"]["over_budget_data"]
    assert (over["budget"], over["upper_usd"]) == ("job", None)
    assert over["unknown"] == {"model": "gpt-unlisted-model", "unbounded": 0, "left_out": None}
    refused = run_cli("apply", "--auto-approve", *repo.args())
    assert refused.exit_code == 1 and "error: odd: over budget, not sent: " in refused.stderr
    assert mutating(sandbox.request_counts()) == {}


def test_a_mistyped_budget_is_one_line_naming_file_line_and_field(repo: UserRepo, run_cli: RunCli) -> None:
    repo.path("reconciler.yaml").write_text("owner: x\nbudget:\n  max_usd_per_plna: 10\n")
    repo.write_job("a")
    expected = "reconciler.yaml:3: budget.max_usd_per_plna: unknown key; did you mean 'max_usd_per_plan'?"
    for command in ("plan", "validate"):
        result = run_cli(command, *repo.args())
        assert result.exit_code == 1
        assert result.stderr.splitlines() == [f"error: {expected}"]


def test_a_run_past_its_budget_while_running_is_cancelled_when_the_spec_says_so(
    repo: UserRepo, sandbox: Sandbox, run_cli: RunCli
) -> None:
    # 101 requests split at 100: part 1 (one request) ends at once, part 0 runs for seconds
    sandbox.configure(requests_per_second=5, validation_seconds=0.05)
    repo.write_job(
        "nightly-eval",
        requests=101,
        split={"max_requests": 100},
        budget={"max_usd": 0.000001, "on_exceed": "cancel"},
    )
    assert run_cli("reconcile", "--allow-over-budget", *repo.args()).exit_code == 0
    small = next(b for b in batches(sandbox, "nightly-eval") if b.metadata["reconciler_part"] == "1")
    wait_until(lambda: sdk(sandbox).batches.retrieve(small.id).status == "completed")
    run_cli("reconcile", *repo.args())  # reads part 1's usage: now past the budget
    change = planned(run_cli, repo)["nightly-eval"]
    assert (change["action"], change["reason_code"]) == ("cancel", "budget_passed")
    passed = change["reason_data"]
    assert (passed["budget_usd"], passed["cancels"]) == (0.000001, True) and passed["spent_usd"] > 0.000001
    second = run_cli("reconcile", *repo.args())
    assert second.exit_code == 0, second.stderr
    big = next(b for b in batches(sandbox, "nightly-eval") if b.metadata["reconciler_part"] == "0")
    assert sdk(sandbox).batches.retrieve(big.id).status in ("cancelling", "cancelled")


def test_a_wrong_price_is_one_line_per_problem_naming_file_line_and_field(
    repo: UserRepo, run_cli: RunCli
) -> None:
    repo.write_spec(
        "specs/p.yaml",
        """
        apiVersion: reconciler/v1
        kind: Provider
        metadata: {name: p}
        spec:
          base_url: http://127.0.0.1:9/v1
          pricing:
            gpt-4o: {input: -1, output: 1, cahed_input: 2}
        """,
    )
    result = run_cli("validate", *repo.args())
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        "error: specs/p.yaml:7: spec.pricing.gpt-4o.input: must be greater than or equal to 0",
        "error: specs/p.yaml:7: spec.pricing.gpt-4o.cahed_input: unknown key",
    ]
