"""The shipped price table: every figure names its source and date; `plan` says the date of the
figures it priced with, warns when they are more than 90 days old by the reconciler's clock, and
says why a model the table leaves out has no price."""

from __future__ import annotations

import json
import re
from datetime import date
from typing import Any

import pytest

from reconciler.sandbox import Sandbox
from reconciler.specs.price_table import SOURCES, TABLE, UNPRICED
from tests.fixtures.repo import MakeRepo, RunCli, UserRepo
from tests.reconcile_helpers import use_sandbox

MINI_TAKEN = "2025-08-07"  # gpt-4o-mini's figures, as the table records them


@pytest.fixture
def repo(make_repo: MakeRepo, sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch) -> UserRepo:
    use_sandbox(monkeypatch, sandbox)
    return make_repo()


def _plan(run_cli: RunCli, repo: UserRepo, *flags: str) -> Any:
    result = run_cli("plan", *flags, *repo.args())
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout) if "--json" in flags else result.stdout


def test_every_price_names_a_source_with_a_url_and_a_date_and_no_model_is_both_priced_and_not() -> None:
    for model, entry in TABLE.items():
        source = SOURCES[entry.source]
        assert source.url.startswith("https://"), model
        assert date.fromisoformat(source.taken) <= date(2026, 12, 6), model
        assert entry.input >= 0 and entry.output >= 0, model
    assert not set(TABLE) & set(UNPRICED)
    for model in ("gpt-5.1", "gpt-5-pro", "gpt-5.4", "gpt-5.5"):  # families newer than 2025-08-07
        assert SOURCES[TABLE[model].source].taken > MINI_TAKEN, model


def test_plan_names_the_date_of_the_shipped_prices_it_used(
    repo: UserRepo, run_cli: RunCli, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RECONCILER_NOW", "2025-09-01T12:00:00Z")  # 25 days after they were taken
    repo.write_job("nightly-eval", requests=3)

    text = _plan(run_cli, repo)
    document = _plan(run_cli, repo, "--json")

    assert f"Prices of gpt-4o-mini: the shipped price table, taken {MINI_TAKEN}" in text
    assert "days ago" not in text
    assert document["price_table"] == [
        {"taken": MINI_TAKEN, "age_days": 25, "stale": False, "models": ["gpt-4o-mini"]}
    ]


@pytest.mark.parametrize(("now", "warned"), [("2025-11-05T23:59:00Z", False), ("2025-11-06T00:00:00Z", True)])
def test_plan_warns_once_the_shipped_prices_are_more_than_90_days_old(
    repo: UserRepo, run_cli: RunCli, monkeypatch: pytest.MonkeyPatch, now: str, warned: bool
) -> None:
    monkeypatch.setenv("RECONCILER_NOW", now)
    repo.write_job("nightly-eval", requests=3)

    text = _plan(run_cli, repo)

    warning = f"! the shipped prices of gpt-4o-mini were taken {MINI_TAKEN}, 91 days ago (over 90)"
    assert (warning in text) is warned, text
    assert _plan(run_cli, repo, "--json")["price_table"][0]["stale"] is warned
    markdown = _plan(run_cli, repo, "--format", "markdown")
    assert ("91 days ago" in markdown) is warned and f"taken {MINI_TAKEN}" in markdown


def test_prices_from_the_provider_carry_no_table_date(
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
            gpt-4o-mini: {{input: 1, output: 2}}
        """,
    )
    repo.write_job("mine", requests=2, provider="priced")

    assert _plan(run_cli, repo, "--json")["price_table"] == []
    assert "shipped price table" not in _plan(run_cli, repo)


def test_a_current_model_is_priced_at_its_sourced_batch_price(
    repo: UserRepo, run_cli: RunCli, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RECONCILER_NOW", "2026-12-10T00:00:00Z")
    repo.write_job("fresh", requests=4, model="gpt-5.1")

    document = _plan(run_cli, repo, "--json")

    (change,) = document["changes"]
    cost = change["cost"]
    assert cost["input_usd"] == pytest.approx(cost["input_tokens"] * 0.625 / 1e6)
    assert cost["max_output_usd"] == pytest.approx(4 * 64 * 5.00 / 1e6)
    assert document["price_table"] == [
        {"taken": "2026-12-06", "age_days": 4, "stale": False, "models": ["gpt-5.1"]}
    ]


@pytest.mark.parametrize(
    ("model", "why"),
    [
        ("sora-2", "billed per second of video"),
        ("gpt-image-1", "an image model"),
        ("gpt-5.2", "no OpenAI page"),
    ],
)
def test_a_model_the_table_leaves_out_has_no_price_and_plan_says_why(
    repo: UserRepo, run_cli: RunCli, model: str, why: str
) -> None:
    repo.write_job("odd", requests=2, model=model, budget={"max_usd": 5})

    text = run_cli("plan", *repo.args()).stdout

    assert "no price" in text
    reason = re.search(
        rf"no price for {re.escape(model)} \(the shipped price table leaves it out: ([^)]*)\)", text
    )
    assert reason and why in reason.group(1), text
