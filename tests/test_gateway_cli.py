"""The reconciler's commands, run as a user runs them, converging through the real Portkey gateway.

The user's repo holds a Provider whose base_url is the gateway and whose Authorization header
is `${UPSTREAM_API_KEY}`; the sandbox behind the gateway demands that key and throws 429s and
5xx at a share of requests.  Each command is `python -m reconciler` in a subprocess.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from reconciler.sandbox import Sandbox
from tests.fixtures.gateway import Gateway
from tests.fixtures.repo import MakeRepo, UserRepo
from tests.fixtures.sandbox import cli_env

SECRET = "sk-upstream-7c1e9b0d"  # the sandbox's key; must show up nowhere the reconciler writes
OWNER = "tests/gateway-cli"
EMBEDDINGS = "/v1/embeddings"
MAX_RUNS = 6


def _reconciler(repo: UserRepo, *args: str, key: str | None = SECRET) -> subprocess.CompletedProcess[str]:
    env = {**cli_env(), "RECONCILER_OWNER": OWNER, "NO_COLOR": "1"}
    env.pop("UPSTREAM_API_KEY", None)
    if key is not None:
        env["UPSTREAM_API_KEY"] = key
    return subprocess.run(
        [sys.executable, "-m", "reconciler", *args],
        cwd=repo.root,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _repo_through_gateway(make_repo: MakeRepo, gateway: Gateway, sandbox: Sandbox) -> UserRepo:
    repo = make_repo()
    repo.write_provider(
        "portkey",
        base_url=gateway.base_url,
        headers={
            "x-portkey-provider": "openai",
            "x-portkey-custom-host": sandbox.base_url,
            "Authorization": "Bearer ${UPSTREAM_API_KEY}",
        },
    )
    repo.write_job("nightly-eval", provider="portkey", requests=4, results="../results/nightly-eval.jsonl")
    repo.write_job("embed-docs", provider="portkey", endpoint=EMBEDDINGS, model="text-embedding-3-small")
    return repo


def _live_jobs(sandbox: Sandbox) -> list[str]:
    """The job name on every batch the sandbox holds, read directly (not through the gateway)."""
    sandbox.configure(fault_rate=0.0)
    headers = {"Authorization": f"Bearer {SECRET}"}
    with httpx.Client(base_url=sandbox.base_url, headers=headers, timeout=30) as direct:
        listed = direct.get("/batches", params={"limit": 100}).json()["data"]
    return sorted(batch["metadata"]["reconciler_job"] for batch in listed)


def _job_statuses(status_run: subprocess.CompletedProcess[str]) -> dict[str, str]:
    jobs = json.loads(status_run.stdout)["jobs"]
    return {name: job["status"] for name, job in jobs.items()}


def _files_holding(root: Path, text: str) -> list[str]:
    return [
        path.relative_to(root).as_posix()
        for path in root.rglob("*")
        if path.is_file() and text.encode() in path.read_bytes()
    ]


@pytest.mark.slow
def test_validate_plan_apply_reconcile_status_converge_through_the_gateway(
    make_repo: MakeRepo, portkey_gateway: Gateway, sandbox: Sandbox
) -> None:
    sandbox.configure(api_key=SECRET)
    repo = _repo_through_gateway(make_repo, portkey_gateway, sandbox)

    runs = {
        "validate": _reconciler(repo, "validate"),
        "plan": _reconciler(repo, "plan", "--detailed-exitcode"),
        "apply": _reconciler(repo, "apply", "--auto-approve"),
        "reconcile": _reconciler(repo, "reconcile", "--wait", "--timeout", "60"),
        "status": _reconciler(repo, "status", "--json"),
        "replan": _reconciler(repo, "plan", "--detailed-exitcode"),
    }

    codes = {name: run.returncode for name, run in runs.items()}
    assert codes == {"validate": 0, "plan": 2, "apply": 0, "reconcile": 0, "status": 0, "replan": 0}, {
        name: run.stderr for name, run in runs.items()
    }
    assert _job_statuses(runs["status"]) == {"nightly-eval": "completed", "embed-docs": "completed"}
    assert _live_jobs(sandbox) == ["embed-docs", "nightly-eval"]
    results = (repo.root / "results" / "nightly-eval.jsonl").read_text().splitlines()
    assert sorted(json.loads(line)["custom_id"] for line in results) == [f"req-{i:05d}" for i in range(1, 5)]
    assert _files_holding(repo.root, SECRET) == []
    assert not any(SECRET in run.stdout + run.stderr for run in runs.values())


@pytest.mark.slow
def test_output_expires_after_reaches_the_sandbox_through_the_gateway(
    make_repo: MakeRepo, portkey_gateway: Gateway, sandbox: Sandbox
) -> None:
    sandbox.configure(api_key=SECRET)
    repo = make_repo()
    repo.write_provider(
        "portkey",
        base_url=portkey_gateway.base_url,
        headers={
            "x-portkey-provider": "openai",
            "x-portkey-custom-host": sandbox.base_url,
            "Authorization": "Bearer ${UPSTREAM_API_KEY}",
        },
    )
    repo.write_job("nightly-eval", provider="portkey", requests=3, output_expires_after="3h")

    done = _reconciler(repo, "reconcile", "--wait", "--timeout", "60")

    assert done.returncode == 0, done.stdout + done.stderr
    headers = {"Authorization": f"Bearer {SECRET}"}
    with httpx.Client(base_url=sandbox.base_url, headers=headers, timeout=30) as direct:
        (batch,) = direct.get("/batches").json()["data"]
        stored = direct.get(f"/files/{batch['output_file_id']}").json()
    assert stored["expires_at"] == stored["created_at"] + 3 * 3600


def _reconcile_until_converged(repo: UserRepo) -> list[subprocess.CompletedProcess[str]]:
    """A run may end in "outcome unknown" after a 5xx on a create; the next run resolves it."""
    runs = []
    for _ in range(MAX_RUNS):
        runs.append(_reconciler(repo, "reconcile", "--wait", "--timeout", "60"))
        if runs[-1].returncode == 0:
            break
    return runs


@pytest.mark.slow
def test_reconcile_survives_429_and_5xx_from_the_upstream_through_the_gateway(
    make_repo: MakeRepo, portkey_gateway: Gateway, sandbox: Sandbox
) -> None:
    # Seed 32 makes the sandbox's first two answers a 429 and a 503, then 30% of the rest faults.
    sandbox.configure(api_key=SECRET, fault_rate=0.3, seed=32)
    repo = _repo_through_gateway(make_repo, portkey_gateway, sandbox)

    runs = _reconcile_until_converged(repo)
    status = _reconciler(repo, "status", "--json")

    assert runs[-1].returncode == 0, [run.stderr for run in runs]
    assert all("Traceback" not in run.stderr for run in runs)
    assert _job_statuses(status) == {"nightly-eval": "completed", "embed-docs": "completed"}
    assert _live_jobs(sandbox) == ["embed-docs", "nightly-eval"]
    assert _files_holding(repo.root, SECRET) == []


@pytest.mark.slow
def test_creates_whose_answer_was_lost_in_the_gateway_path_are_sent_once_each(
    make_repo: MakeRepo, portkey_gateway: Gateway, sandbox: Sandbox
) -> None:
    sandbox.configure(api_key=SECRET, lost_response_rate=1.0, seed=5)  # every create answers 500
    repo = _repo_through_gateway(make_repo, portkey_gateway, sandbox)

    runs = _reconcile_until_converged(repo)
    status = _reconciler(repo, "status", "--json")

    assert runs[-1].returncode == 0, [run.stderr for run in runs]
    assert sandbox.request_counts()["POST /v1/batches"] == 2  # one per job, never re-sent
    assert _live_jobs(sandbox) == ["embed-docs", "nightly-eval"]
    assert _job_statuses(status) == {"nightly-eval": "completed", "embed-docs": "completed"}


@pytest.mark.slow
def test_an_unset_key_variable_fails_plan_before_any_request_is_sent(
    make_repo: MakeRepo, portkey_gateway: Gateway, sandbox: Sandbox
) -> None:
    repo = _repo_through_gateway(make_repo, portkey_gateway, sandbox)

    run = _reconciler(repo, "plan", key=None)

    assert run.returncode == 1
    assert run.stderr.strip().splitlines() == [
        "error: provider 'portkey': header Authorization needs ${UPSTREAM_API_KEY}, which is not set"
    ]
    assert sandbox.request_counts() == {}
    assert ".reconciler/state.json" not in repo.written()


@pytest.mark.slow
@pytest.mark.parametrize("command", [("plan",), ("apply", "--auto-approve")])
def test_a_wrong_key_is_one_line_naming_the_401_and_never_the_key(
    make_repo: MakeRepo, portkey_gateway: Gateway, sandbox: Sandbox, command: tuple[str, ...]
) -> None:
    sandbox.configure(api_key=SECRET)
    repo = _repo_through_gateway(make_repo, portkey_gateway, sandbox)
    wrong = "sk-not-the-right-one-55aa"

    run = _reconciler(repo, *command, key=wrong)

    assert run.returncode == 1
    assert "Traceback" not in run.stderr
    error_lines = [line for line in run.stderr.splitlines() if line.startswith("error:")]
    assert len(error_lines) == 1 and "401" in error_lines[0], run.stderr
    assert "Incorrect API key provided" in error_lines[0]
    assert wrong not in run.stdout + run.stderr
    assert _files_holding(repo.root, wrong) == []
    assert _live_jobs(sandbox) == []
