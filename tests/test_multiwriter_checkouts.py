"""Two checkouts of one repo on one machine: one writer at a time, whatever the state file.

`cp -r repo repo2` (same remote, so the same owner) and `apply` in both at once: each checkout
has its own state file, so the state lock alone let both plan and both create.  The owner's
lock (in the per-user runtime folder) serialises them.  Trials alternate between a loser that
may not wait (it must name the holder) and one that waits its turn (it must adopt, not create).

CI runs 6 trials; RECONCILER_FULL=1 runs 20.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from reconciler.sandbox import Sandbox
from tests.fixtures.repo import MakeRepo
from tests.fixtures.sandbox import cli_env
from tests.reconcile_helpers import batches

FULL = os.environ.get("RECONCILER_FULL") == "1"
TRIALS = 20 if FULL else 6
JOBS = 4


def clone(source: Path, target: Path, remote: str) -> None:
    shutil.copytree(source, target)
    subprocess.run(["git", "init", "-q", str(target)], check=True)
    subprocess.run(["git", "-C", str(target), "remote", "add", "origin", remote], check=True)


def start(root: Path, sandbox: Sandbox, lock_timeout: str) -> subprocess.Popen[str]:
    env = cli_env() | {"RECONCILER_SANDBOX_URL": sandbox.base_url, "RECONCILER_LOCK_TIMEOUT": lock_timeout}
    command = [sys.executable, "-m", "reconciler", "apply", "--auto-approve", "--repo", str(root)]
    return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def units(sandbox: Sandbox) -> Counter[tuple[str, str, str]]:
    return Counter(
        (b.metadata["reconciler_job"], b.metadata["reconciler_generation"], b.metadata["reconciler_part"])
        for b in batches(sandbox)
    )


@pytest.mark.slow
def test_two_checkouts_of_one_repo_applying_at_once_never_duplicate(
    make_repo: MakeRepo, sandbox: Sandbox, tmp_path: Path
) -> None:
    sandbox.configure(latency_seconds=0.05)  # an apply takes long enough for the other to collide
    seed = make_repo("seed")
    one, two = tmp_path / "checkout-https", tmp_path / "checkout-ssh"
    # One repository reached over two transports: one owner id (normalise_remote).
    clone(seed.root, one, "https://github.com:443/acme/evals")
    clone(seed.root, two, "git@github.com:acme/evals.git")
    refusals = 0
    for trial in range(TRIALS):
        for root in (one, two):  # the same new generation in both checkouts, as a pull gives
            for index in range(JOBS):
                data = root / "data" / f"job-{index}.jsonl"
                seed.write_input(data, requests=2 + trial)
                spec = f"apiVersion: reconciler/v1\nkind: BatchJob\nmetadata: {{name: job-{index}}}\n"
                spec += f"spec: {{endpoint: /v1/chat/completions, input: ../data/job-{index}.jsonl}}\n"
                (root / "specs" / f"job-{index}.yaml").write_text(spec)
        may_wait = "60" if trial % 2 else "0"
        running = [start(one, sandbox, may_wait), start(two, sandbox, may_wait)]
        results = [(p.pid, *p.communicate(timeout=120), p.returncode) for p in running]
        for pid, _, err, code in results:
            assert "Traceback" not in err, err
            if code != 0:
                refusals += 1
                other = next(r[0] for r in results if r[0] != pid)
                (line,) = err.strip().splitlines()
                assert line.startswith(f"error: state is locked by pid {other} on "), line
                assert "reconciler apply" in line and "since" in line
        created = sum(
            int(out.split("Applied: ")[1].split(" created")[0]) for _, out, _, code in results if code == 0
        )
        assert created == JOBS, results
        assert max(units(sandbox).values()) == 1, f"trial {trial}: duplicates {units(sandbox)}"
    assert len(units(sandbox)) == JOBS * TRIALS
    assert refusals >= 1  # at least one collision was refused rather than serialised by luck
