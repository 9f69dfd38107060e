"""The daemon and cost: it refuses a plan over budget (only observing), and counts tokens and USD."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

import httpx

from reconciler.sandbox import Sandbox
from tests.fixtures.daemon import Daemon, StartDaemon
from tests.fixtures.repo import UserRepo
from tests.reconcile_helpers import batches


def _metrics(daemon: Daemon) -> str:
    port = next(e["port"] for e in daemon.events() if e["event"] == "health")
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
        return http.get("/metrics").text


def _job(repo: UserRepo, name: str) -> dict[str, Any]:
    return json.loads(repo.state.read_text())["jobs"].get(name) or {}


def test_the_daemon_counts_tokens_and_cost_of_finished_batches_from_their_output_lines(
    make_repo: Callable[..., UserRepo],
    sandbox_factory: Callable[..., Sandbox],
    start_daemon: StartDaemon,
) -> None:
    sandbox, repo = sandbox_factory(), make_repo()
    repo.write_job("nightly-eval", requests=4)
    daemon = start_daemon(repo, sandbox, "--health-port", "0", "--log-format", "json")
    daemon.eventually(lambda: repo.state.exists() and _job(repo, "nightly-eval").get("usage"))
    (used,) = _job(repo, "nightly-eval")["usage"].values()
    expected_cost = (used["input"] * 0.075 + used["output"] * 0.30) / 1e6

    def counted() -> str | None:
        text = _metrics(daemon)
        return text if "reconciler_cost_usd_total" in text and 'kind="output"' in text else None

    metrics = daemon.eventually(counted)
    assert f'reconciler_tokens_total{{job="nightly-eval",kind="input"}} {float(used["input"])}' in metrics
    assert f'reconciler_tokens_total{{job="nightly-eval",kind="output"}} {float(used["output"])}' in metrics
    cost = re.search(r'reconciler_cost_usd_total\{job="nightly-eval"\} (\S+)', metrics)
    assert cost and abs(float(cost.group(1)) - expected_cost) < 1e-12


def test_the_daemon_refuses_the_job_over_budget_alone_and_reports_it_in_health_and_metrics(
    make_repo: Callable[..., UserRepo],
    sandbox_factory: Callable[..., Sandbox],
    start_daemon: StartDaemon,
) -> None:
    sandbox, repo = sandbox_factory(), make_repo()
    repo.write_job("big", requests=3, budget={"max_usd": 0.000001})
    repo.write_job("small", requests=3)
    daemon = start_daemon(repo, sandbox, "--health-port", "0", "--log-format", "json")
    daemon.eventually(lambda: _job(repo, "small").get("status") == "completed")
    repo.write_job("later", requests=2)  # an unrelated new job, after the refusal
    daemon.eventually(lambda: _job(repo, "later").get("status") == "completed")

    assert [len(batches(sandbox, job)) for job in ("big", "small", "later")] == [0, 1, 1]
    refusals = [e for e in daemon.events() if e["event"] == "over_budget"]
    assert [e["job"] for e in refusals] == ["big"] * len(refusals)
    assert 1 <= len(refusals) <= 2  # once, and once more after the specs changed; not every pass
    assert (refusals[0]["budget"], refusals[0]["limit_usd"]) == ("job", 0.000001)
    assert refusals[0]["upper_usd"] > 0.000001 and refusals[0]["message"].startswith(
        "big: over budget, not sent: "
    )
    port = next(e["port"] for e in daemon.events() if e["event"] == "health")
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
        health = http.get("/healthz")
    assert health.status_code == 200
    assert health.json()["status"] == "degraded" and list(health.json()["over_budget"]) == ["big"]
    assert 'reconciler_job_over_budget{job="big"} 1.0' in _metrics(daemon)
    assert "small" not in re.findall(r"reconciler_job_over_budget\{job=\"(\w+)\"", _metrics(daemon))
