"""A version-1 state file and the batches a version-1 reconciler made: read, upgraded, never misread.

Before runs, a batch's metadata had no run and its generation also hashed the job's batch
metadata; the state had no run either.  After upgrading nothing is created or cancelled again."""

from __future__ import annotations

import cProfile
import hashlib
import json
import pstats
from collections.abc import Callable
from typing import Any

import pytest
from psycopg.types.json import Jsonb

from reconciler.common.ownership import generation as hash_generation
from reconciler.sandbox import Sandbox
from tests.fixtures.postgres import StateDb
from tests.fixtures.repo import MakeRepo, RunCli, UserRepo
from tests.reconcile_helpers import OWNER, mutating, sdk, use_sandbox

# Puts a state document where the repo's state is kept: its file, or the database.
WriteState = Callable[[dict[str, Any]], None]


@pytest.fixture
def repo(make_repo: MakeRepo, sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch) -> UserRepo:
    use_sandbox(monkeypatch, sandbox)
    return make_repo()


@pytest.fixture(params=["file", "postgresql"])
def write_state(
    request: pytest.FixtureRequest, repo: UserRepo, run_cli: RunCli, monkeypatch: pytest.MonkeyPatch
) -> WriteState:
    if request.param == "file":

        def to_file(document: dict[str, Any]) -> None:
            repo.state.parent.mkdir(parents=True, exist_ok=True)
            repo.state.write_text(json.dumps(document))

        return to_file
    state_db: StateDb = request.getfixturevalue("state_db")
    monkeypatch.setenv("RECONCILER_STATE_URL", state_db.url)
    assert run_cli("state", "history", *repo.args()).exit_code == 0  # the tables, made by the tool

    def to_database(document: dict[str, Any]) -> None:
        owner, serial, lineage = document["owner"], document["serial"], document["lineage"]
        state_db.query(
            "INSERT INTO reconciler_state_versions (owner, serial, lineage, document) "
            "VALUES (%s, %s, %s, %s) RETURNING serial",
            owner,
            serial,
            lineage,
            Jsonb(document),
        )
        state_db.query(
            "INSERT INTO reconciler_state_heads (owner, serial, lineage) VALUES (%s, %s, %s) RETURNING serial",
            owner,
            serial,
            lineage,
        )

    return to_database


def v1_generation(definition: dict[str, Any], input_sha256: str) -> str:
    """The version-1 formula, written out: endpoint, window, metadata, provider, split."""
    canonical = json.dumps({"definition": definition, "input": input_sha256}, sort_keys=True)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def test_a_version_1_state_and_its_batches_are_adopted_as_they_are_and_written_back_as_version_3(
    repo: UserRepo, sandbox: Sandbox, run_cli: RunCli, write_state: WriteState
) -> None:
    sandbox.configure(validation_seconds=600)
    repo.write_job("nightly-eval", requests=3, metadata={"team": "evals"})
    data = (repo.data / "nightly-eval.jsonl").read_bytes()
    generation = v1_generation(
        {
            "endpoint": "/v1/chat/completions",
            "completion_window": "24h",
            "metadata": {"team": "evals"},
            "provider": "sandbox",
            "split": None,
        },
        hashlib.sha256(data).hexdigest(),
    )
    owner_tag = hashlib.sha256(OWNER.encode()).hexdigest()[:16]
    client = sdk(sandbox)
    upload = client.files.create(file=("v1.jsonl", data), purpose="batch")
    old = client.batches.create(
        input_file_id=upload.id,
        endpoint="/v1/chat/completions",
        completion_window="24h",
        metadata={
            "reconciler_job": "nightly-eval",
            "reconciler_generation": generation,
            "reconciler_owner": owner_tag,
            "reconciler_attempt": "a1b2c3d4e5f6",
            "reconciler_part": "0",
            "reconciler_retry": "1",
            "team": "evals",
        },
    )
    job = {
        "generation": generation,
        "provider": "sandbox",
        "status": "validating",
        "deletion_policy": "cancel",
        "request_counts": {"total": 0, "completed": 0, "failed": 0},
        "batches": [
            {"batch_id": old.id, "status": "validating", "attempt": "a1b2c3d4e5f6", "part": 0, "retry": 1}
        ],
        "pending": [],
        "results": None,
        "observed_at": "2026-11-22T03:00:00Z",
    }
    v1 = {
        "format_version": 1,
        "serial": 7,
        "lineage": "lineage-1",
        "owner": owner_tag,
        "jobs": {"nightly-eval": job},
    }
    write_state(v1)

    read = json.loads(run_cli("status", "--json", *repo.args()).stdout)
    assert read["format_version"] == 6 and read["jobs"]["nightly-eval"]["run"] == "default"
    assert [b["run"] for b in read["jobs"]["nightly-eval"]["batches"]] == ["default"]
    sandbox.reset_counts()
    plan = run_cli("plan", "--detailed-exitcode", *repo.args())
    assert plan.exit_code == 0, plan.stdout + plan.stderr
    assert run_cli("reconcile", *repo.args()).exit_code == 0
    assert mutating(sandbox.request_counts()) == {}
    state = json.loads(run_cli("status", "--json", *repo.args()).stdout)
    assert (state["format_version"], state["lineage"], state["serial"]) == (6, "lineage-1", 8)
    upgraded = state["jobs"]["nightly-eval"]
    assert upgraded["run"] == "default" and [b["batch_id"] for b in upgraded["batches"]] == [old.id]
    assert upgraded["history"][0]["run"] == "default"


def _hashed(stats: pstats.Stats) -> int:
    """How many generations the profiled run worked out."""
    code = hash_generation.__code__
    entry = stats.stats.get((code.co_filename, code.co_firstlineno, code.co_name))  # type: ignore[attr-defined]
    return 0 if entry is None else int(entry[1])


def test_a_plan_of_jobs_made_since_runs_works_out_one_generation_a_job_not_the_legacy_one_too(
    repo: UserRepo, run_cli: RunCli
) -> None:
    """The generation before runs is worked out only for a batch or record that carries neither
    the current one nor a run (issue 24: it was a second hash for every job of every pass)."""
    for index in range(3):
        repo.write_job(f"job-{index}", requests=2, metadata={"team": "evals"})
    assert run_cli("apply", "--auto-approve", *repo.args()).exit_code == 0

    profile = cProfile.Profile()
    plan = profile.runcall(run_cli, "plan", "--detailed-exitcode", *repo.args())

    assert plan.exit_code == 0, plan.stdout + plan.stderr
    assert _hashed(pstats.Stats(profile)) == 3  # was 6: the legacy one beside each
