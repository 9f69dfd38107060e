"""Two processes on one PostgreSQL state, under 30% faults and lost creates.

Two checkouts on "two machines" (separate folders, nothing local shared), one database: both
run `reconcile` at once, trial after trial, while the inputs change.  Every trial: no unit ever
has two batches, the serials in the database go up by one with no gap or repeat, and after
convergence the state records exactly the live batches of ours (no update lost).

CI runs 3 trials; RECONCILER_FULL=1 runs 20.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from reconciler.sandbox import Sandbox
from tests.fixtures.postgres import StateDb
from tests.fixtures.repo import MakeRepo, UserRepo
from tests.fixtures.sandbox import cli_env
from tests.reconcile_helpers import batches

FULL = os.environ.get("RECONCILER_FULL") == "1"
TRIALS = 20 if FULL else 3
JOBS = 6
OWNER = "tests/shared-state"
FAULTS = {"fault_rate": 0.3, "lost_response_rate": 0.3, "retry_after_seconds": 0.01}


def run(root: Path, sandbox: Sandbox, state_db: StateDb, *args: str) -> subprocess.Popen[str]:
    env = cli_env() | {
        "RECONCILER_SANDBOX_URL": sandbox.base_url,
        "RECONCILER_OWNER": OWNER,
        "RECONCILER_STATE_URL": state_db.url,
        "RECONCILER_LOCK_TIMEOUT": "60",
    }
    command = [sys.executable, "-m", "reconciler", *args, "--repo", str(root)]
    return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def units(sandbox: Sandbox) -> Counter[tuple[str, str, str]]:
    """Counted with the faults off for the look (the SDK would meet them too), then back on."""
    faults = {knob: getattr(sandbox.config, knob) for knob in ("fault_rate", "lost_response_rate")}
    sandbox.configure(fault_rate=0.0, lost_response_rate=0.0)
    try:
        return _units(sandbox)
    finally:
        sandbox.configure(**faults)


def _units(sandbox: Sandbox) -> Counter[tuple[str, str, str]]:
    return Counter(
        (b.metadata["reconciler_job"], b.metadata["reconciler_generation"], b.metadata["reconciler_part"])
        for b in batches(sandbox)
    )


def write_jobs(seed: UserRepo, roots: list[Path], trial: int) -> None:
    for root in roots:
        for index in range(JOBS):
            seed.write_input(root / "data" / f"job-{index}.jsonl", requests=2 + (trial if index % 2 else 0))
            split = ", split: {max_requests: 2}" if index == 0 else ""
            (root / "specs" / f"job-{index}.yaml").write_text(
                f"apiVersion: reconciler/v1\nkind: BatchJob\nmetadata: {{name: job-{index}}}\n"
                f"spec: {{endpoint: /v1/chat/completions, input: ../data/job-{index}.jsonl{split}}}\n"
            )


@pytest.mark.slow
def test_two_writers_on_one_database_under_faults_never_duplicate_or_lose_an_update(
    make_repo: MakeRepo, sandbox: Sandbox, state_db: StateDb, tmp_path: Path
) -> None:
    seed = make_repo("seed")
    roots = [tmp_path / "machine-a", tmp_path / "machine-b"]
    for root in roots:
        shutil.copytree(seed.root, root)
    failed_passes = 0
    for trial in range(TRIALS):
        write_jobs(seed, roots, trial)
        sandbox.configure(seed=trial, **FAULTS)
        for _ in range(8):  # both at once, until a pass of each converges
            running = [run(root, sandbox, state_db, "reconcile") for root in roots]
            results = [(p.communicate(timeout=180), p.returncode) for p in running]
            for (_, err), code in results:
                assert "Traceback" not in err, err
                failed_passes += code != 0
            assert max(units(sandbox).values()) == 1, f"trial {trial}: duplicates"
            if all(code == 0 and "0 created" in out for (out, _), code in results):
                break
        else:
            raise AssertionError(f"trial {trial}: not converged in 8 rounds under faults")
    sandbox.configure(fault_rate=0.0, lost_response_rate=0.0)
    serials = [
        int(str(r[0])) for r in state_db.query("SELECT serial FROM reconciler_state_versions ORDER BY serial")
    ]
    assert serials == list(range(1, len(serials) + 1)), "serials go up by one, none repeated or skipped"
    head = state_db.query("SELECT serial FROM reconciler_state_heads")
    assert head == [(serials[-1],)]
    done = run(roots[0], sandbox, state_db, "reconcile")
    assert done.wait(timeout=120) == 0
    final = run(roots[1], sandbox, state_db, "status", "--json")
    state = json.loads(final.communicate(timeout=60)[0])
    recorded = {b["batch_id"] for job in state["jobs"].values() for b in job["batches"]}
    current = {f"job-{i}" for i in range(JOBS)}
    live_current = {
        b.id
        for b in batches(sandbox)
        if b.metadata["reconciler_job"] in current
        and b.metadata["reconciler_generation"] == state["jobs"][b.metadata["reconciler_job"]]["generation"]
    }
    assert recorded == live_current, "every live batch of the current generations is in the state"
    assert failed_passes >= 1, "the faults were meant to fail some passes"
