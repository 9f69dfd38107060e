"""What a plan does for each live batch, counted through a real run against the sandbox, never
timed (issue 24): each batch of ours is converted to its state record once and its metadata read
once, however many steps of the pass (the planner, the duplicate guard, retries, admission) read
them; a job's attempts are grouped by part once by the planner; only a finished part has its
result files looked for; a batch of someone else's is not parsed: its id is all a plan reads of it."""

from __future__ import annotations

import cProfile
import gc
import pstats
from collections.abc import Callable
from pathlib import Path
from types import FunctionType
from typing import Any

import pytest

from reconciler.api.batch import Batch
from reconciler.api.transport import parse_batch
from reconciler.common.ownership import KEY_GENERATION, KEY_JOB, KEY_OWNER, KEY_RUN
from reconciler.engine.outcomes import WorkDir
from reconciler.plans.changes import DesiredJob, LiveBatch
from reconciler.plans.jobstatus import attempts_by_part
from reconciler.plans.record import record
from reconciler.sandbox import Sandbox
from reconciler.state.model import BatchRecord, State
from tests.fixtures.repo import RunCli, UserRepo
from tests.fixtures.sandbox import SandboxFactory
from tests.reconcile_helpers import foreign_batches

JOBS = 6
FOREIGN = 3


@pytest.fixture
def sandbox(sandbox_factory: SandboxFactory, tmp_path: Path) -> Sandbox:
    """Batches that stay running while the test looks (validating for ten minutes)."""
    return sandbox_factory(tmp_path / "sandbox", validation_seconds=600.0)


def _calls(stats: pstats.Stats, function: Callable[..., Any]) -> int:
    """How many times the profiled run called `function`."""
    code = getattr(function, "__func__", function)
    assert isinstance(code, FunctionType)
    key = (code.__code__.co_filename, code.__code__.co_firstlineno, code.__code__.co_name)
    entry = stats.stats.get(key)  # type: ignore[attr-defined]
    return 0 if entry is None else int(entry[1])


def test_a_plan_converts_each_live_batch_once_and_reads_its_metadata_once(
    sandbox_repo: UserRepo, sandbox: Sandbox, run_cli: RunCli
) -> None:
    for index in range(JOBS):
        sandbox_repo.write_job(f"job-{index}", requests=2)
    assert run_cli("apply", "--auto-approve", *sandbox_repo.args()).exit_code == 0
    foreign_batches(sandbox, FOREIGN)

    profile = cProfile.Profile()
    result = profile.runcall(run_cli, "plan", *sandbox_repo.args())
    assert result.exit_code == 0, result.stdout + result.stderr
    assert "in sync" in result.stdout or "No changes" in result.stdout, result.stdout
    stats = pstats.Stats(profile)

    assert _calls(stats, BatchRecord.from_batch) == JOBS  # was 4 per job: planner twice, retries, admission
    assert _calls(stats, parse_batch) == JOBS  # anyone else's batch: only its id is read (was parsed)
    # Each listed batch: whether it is ours (owner, job), then, only for ours, each ownership key once
    # and whether it predates runs.  Was some 66 a job: every step parsed the metadata again.
    listed = JOBS + FOREIGN
    assert _calls(stats, Batch.meta) <= 2 * listed + 8 * JOBS
    assert _calls(stats, attempts_by_part) <= 2 * JOBS  # the planner once per job, retries once per job
    assert _calls(stats, WorkDir.__init__) == 0  # no part has finished: no result files to look for


def test_a_live_batch_keeps_its_record_not_the_parsed_batch_and_the_state_shares_that_record() -> None:
    metadata = {KEY_JOB: "eval", KEY_GENERATION: "g1", KEY_OWNER: "tag", KEY_RUN: "r"}
    counts = {"total": 2, "completed": 2, "failed": 0}
    batch = Batch(id="batch_1", status="completed", metadata=metadata, request_counts=counts, created_at=1)
    live = LiveBatch.of("sandbox", batch)

    assert not any(isinstance(held, Batch) for held in gc.get_referents(live))  # the model is let go
    assert (live.job, live.generation, live.run, live.unit.job) == ("eval", "g1", "r", "eval")
    desired = {"eval": DesiredJob(name="eval", generation="g1", provider="sandbox", run_label="r")}
    recorded = record(desired, State(lineage="l"), [live], now="t1", runs={"eval": "r"})
    assert recorded.jobs["eval"].batches[0] is live.record  # one record per batch, the pass's and the state's
