"""The daemon's pass costs what changed, not what exists (issue 24).

A new spec is one upload, one create and the newest list page, whatever else the account holds;
the pass records only that job (the other jobs' records are the very same, in the state file and
in PostgreSQL's rows); a webhook reads its one batch (tests/test_events_webhooks.py).  What a
change would cancel waits until the files are quiet, so a rename cancels nothing and a new spec
is not held up by it; a whole pass still catches what happened behind the daemon's back.
Work is counted at the sandbox and in the state, never timed.
"""

from __future__ import annotations

import io
import json
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from types import FrameType
from typing import Any

import httpx
import pytest

from reconciler.api.batch import Batch
from reconciler.common.ownership import KEY_ATTEMPT, KEY_GENERATION, KEY_JOB, KEY_OWNER, KEY_RUN
from reconciler.daemon.board import Metrics
from reconciler.daemon.hooks import Hooks, report_pass
from reconciler.daemon.passes import ClientPool, Leader, Owed, PassResult, load
from reconciler.engine.events import EventLog
from reconciler.engine.observe import LiveView
from reconciler.engine.workspace import open_backend
from reconciler.plans.admission import admit
from reconciler.plans.changes import DesiredJob, LiveBatch
from reconciler.plans.decide import make_plan
from reconciler.plans.record import record
from reconciler.sandbox import Sandbox
from reconciler.specs import identity
from reconciler.state.file import read_state
from reconciler.state.model import JobState, State
from tests.events_helpers import WEBHOOK_SECRET, Daemon
from tests.fixtures.postgres import StateDb
from tests.fixtures.repo import OWNER, UserRepo
from tests.reconcile_helpers import batches, foreign_batches, hooked_repo, mutating, sdk, settled, stays

HOOKED_ENV = {"OPENAI_WEBHOOK_SECRET": WEBHOOK_SECRET}
INTERVAL = "300"  # with webhooks, running batches are polled only every ten intervals


def _job_lines(state_file: Path) -> dict[str, str]:
    """Each job's line of the state file, as written."""
    return {
        line.split('"')[1]: line.rstrip(",")
        for line in state_file.read_text().splitlines()
        if line.startswith('    "')
    }


@pytest.mark.parametrize("backend", ["file", "postgresql"])
def test_an_added_spec_costs_one_upload_one_create_and_the_newest_list_page_and_records_only_it(
    backend: str,
    make_repo: Callable[..., UserRepo],
    sandbox_factory: Callable[..., Sandbox],
    events_daemon: Callable[..., Daemon],
    request: pytest.FixtureRequest,
) -> None:
    sandbox = sandbox_factory(validation_seconds=600.0)  # every batch stays running
    repo = hooked_repo(make_repo, sandbox, 30)
    foreign_batches(
        sandbox, 150
    )  # batches of nobody's: 150 of them newer than ours, on the list's first pages
    env = dict(HOOKED_ENV)
    if backend == "postgresql":
        state_db: StateDb = request.getfixturevalue("state_db")
        env["RECONCILER_STATE_URL"] = state_db.url
    daemon = events_daemon(repo, sandbox, interval=INTERVAL, env=env)
    assert "first pass done: 30 jobs" in daemon.log()
    settled(sandbox.request_counts, quiet=0.5)
    if backend == "file":
        daemon.eventually(lambda: not repo.state.with_name("state.json.journal").exists())
        before = _job_lines(repo.state)
    else:
        first_serial = int(str(state_db.query("SELECT serial FROM reconciler_state_heads")[0][0]))
    sandbox.reset_counts()

    repo.write_job("added", provider="hooked", requests=2)
    daemon.eventually(lambda: "added: + create" in daemon.log())

    assert settled(sandbox.request_counts, quiet=0.5) == {
        "POST /v1/files": 1,
        "POST /v1/batches": 1,
        "GET /v1/batches": 1,  # the newest page: nothing of anyone's is new but the batch it made
    }
    if backend == "file":
        daemon.eventually(lambda: "added" in _job_lines(repo.state))
        after = _job_lines(repo.state)
        assert {name: line for name, line in after.items() if name != "added"} == before
    else:
        rows = state_db.query("SELECT name FROM reconciler_state_jobs WHERE serial > %s", first_serial)
        assert rows == [("added",)]
        changes = state_db.query(
            "SELECT changes FROM reconciler_state_versions WHERE serial > %s ORDER BY serial", first_serial
        )
        assert changes and all(list(c["jobs"]) == ["added"] for (c,) in changes)  # type: ignore[index]


def test_a_renamed_spec_is_neither_cancelled_nor_created_again(
    make_repo: Callable[..., UserRepo],
    sandbox_factory: Callable[..., Sandbox],
    events_daemon: Callable[..., Daemon],
) -> None:
    sandbox = sandbox_factory(validation_seconds=600.0)
    repo = make_repo()
    spec = repo.write_job("nightly-eval")
    daemon = events_daemon(repo, sandbox, interval=INTERVAL)
    sandbox.reset_counts()

    text = spec.read_text()
    spec.unlink()  # a tool that deletes, then writes the new name a moment later
    time.sleep(0.4)  # longer than a burst's quiet: the removal alone reaches the daemon
    (spec.parent / "renamed.yaml").write_text(text)
    daemon.eventually(lambda: daemon.metric("reconciler_passes_total", result="ok") >= 3)

    stays(lambda: "POST /v1/batches/{id}/cancel" not in sandbox.request_counts(), seconds=2.0)
    assert "POST /v1/batches" not in sandbox.request_counts()
    assert [b.status for b in batches(sandbox, "nightly-eval")] == ["validating"]


def test_a_new_spec_goes_out_while_a_removal_waits_for_the_files_to_settle(
    make_repo: Callable[..., UserRepo],
    sandbox_factory: Callable[..., Sandbox],
    events_daemon: Callable[..., Daemon],
) -> None:
    sandbox = sandbox_factory(validation_seconds=600.0)
    repo = make_repo()
    removed = repo.write_job("removed")
    busy = repo.write_job("busy")
    daemon = events_daemon(repo, sandbox, interval=INTERVAL)

    removed.unlink()
    repo.write_job("added")
    text = busy.read_text()
    while not batches(sandbox, "added"):  # a checkout still writing: the files never settle
        busy.write_text(text)
        time.sleep(0.2)
    assert "POST /v1/batches/{id}/cancel" not in sandbox.request_counts()
    assert [b.status for b in batches(sandbox, "removed")] == ["validating"]

    daemon.eventually(lambda: batches(sandbox, "removed")[0].status in ("cancelling", "cancelled"))
    assert sandbox.request_counts()["POST /v1/batches/{id}/cancel"] == 1


def test_a_batch_cancelled_behind_the_daemons_back_is_seen_and_resumed(
    make_repo: Callable[..., UserRepo],
    sandbox_factory: Callable[..., Sandbox],
    events_daemon: Callable[..., Daemon],
) -> None:
    sandbox = sandbox_factory(validation_seconds=600.0)
    repo = make_repo()
    repo.write_job("nightly-eval", requests=4)
    daemon = events_daemon(repo, sandbox, interval="0.5")
    (batch,) = batches(sandbox, "nightly-eval")

    sdk(sandbox).batches.cancel(batch.id)  # someone else, with the provider's own tools
    resumed = daemon.eventually(lambda: [b for b in batches(sandbox, "nightly-eval") if b.id != batch.id])
    assert len(resumed) == 1
    daemon.eventually(lambda: "nightly-eval: + resume" in daemon.log())
    assert daemon.stop(signal.SIGTERM) == 0
    state = json.loads(repo.state.read_text())  # folded into the file as it stopped
    assert not repo.state.with_name("state.json.journal").exists()
    assert [b["batch_id"] for b in state["jobs"]["nightly-eval"]["batches"]][-1] == resumed[0].id


def _live(job: str, status: str) -> LiveBatch:
    metadata = {KEY_JOB: job, KEY_GENERATION: "g1", KEY_OWNER: "tag", KEY_RUN: "r", KEY_ATTEMPT: job}
    counts = {"total": 2, "completed": 2 if status == "completed" else 0, "failed": 0}
    batch = Batch(id=f"batch_{job}", status=status, metadata=metadata, request_counts=counts, created_at=1)
    return LiveBatch.of("sandbox", batch)


def test_a_pass_that_finds_settled_jobs_as_recorded_hands_back_the_very_same_records() -> None:
    desired = {
        n: DesiredJob(name=n, generation="g1", provider="sandbox", run_label="r") for n in ("done", "busy")
    }
    live = [_live("done", "completed"), _live("busy", "in_progress"), _live("gone", "cancelled")]
    first = record(desired, State(lineage="l"), live, now="t1", runs=dict.fromkeys(desired, "r"))
    again = record(desired, first, live, now="t2", runs=dict.fromkeys(desired, "r"))

    assert again.jobs["done"] is first.jobs["done"]  # settled, and as recorded: the same object
    assert again.jobs["busy"] is not first.jobs["busy"] and again.jobs["busy"].observed_at == "t2"
    assert first.jobs["done"].status == "completed" and first.jobs["busy"].status == "in_progress"


def test_the_live_view_hands_admission_only_unfinished_and_failed_batches() -> None:
    """A pass over a few jobs counts the queues from the batches that can hold or refuse room,
    not from every batch the daemon holds: finished ones are left out as they finish."""
    finished = [_live(f"done-{i}", "completed") for i in range(50)]
    view = LiveView.listed([*finished, _live("busy", "in_progress"), _live("refused", "failed")], {})
    view.take([_live("queued", "validating"), _live("over", "expired")])

    assert {b.id for b in view.for_queues()} == {"batch_busy", "batch_refused", "batch_queued"}
    assert {b.id for b in view.active()} == {"batch_busy", "batch_queued"}
    view.take([_live("busy", "completed")])
    view.drop("batch_queued")
    assert {b.id for b in view.for_queues()} == {"batch_refused"} and view.active() == []
    assert len(view.all()) == 53


def test_a_lost_create_answer_is_a_doubt_the_whole_list_settles_without_sending_again(
    make_repo: Callable[..., UserRepo],
    sandbox_factory: Callable[..., Sandbox],
    events_daemon: Callable[..., Daemon],
) -> None:
    sandbox = sandbox_factory(validation_seconds=600.0)
    repo = hooked_repo(make_repo, sandbox, 3)
    foreign_batches(sandbox, 150)  # with ours, two list pages: a whole list is told from the newest page
    daemon = events_daemon(repo, sandbox, interval=INTERVAL, env=dict(HOOKED_ENV))
    settled(sandbox.request_counts, quiet=0.5)
    sandbox.configure(lost_response_rate=1.0)  # the create is made, and answered 500
    sandbox.reset_counts()

    repo.write_job("added", provider="hooked", requests=2)

    def recorded() -> bool:
        job = read_state(repo.state).jobs.get("added")
        return job is not None and bool(job.batches) and not job.pending

    daemon.eventually(recorded)  # nothing else would look again before the resync, minutes away
    counts = settled(sandbox.request_counts, quiet=0.5)
    assert counts["POST /v1/batches"] == 1 and len(batches(sandbox, "added")) == 1
    assert counts["GET /v1/batches"] >= 1 + 2  # the newest page, then the whole list's two
    (made,) = batches(sandbox, "added")
    assert [b.batch_id for b in read_state(repo.state).jobs["added"].batches] == [made.id]


def test_a_label_edit_plans_nothing_and_the_dashboard_shows_it(
    make_repo: Callable[..., UserRepo],
    sandbox_factory: Callable[..., Sandbox],
    events_daemon: Callable[..., Daemon],
) -> None:
    sandbox = sandbox_factory(validation_seconds=600.0)
    repo = make_repo()
    spec = repo.write_job("nightly-eval", labels={"team": "before"})
    daemon = events_daemon(repo, sandbox, interval=INTERVAL)
    settled(sandbox.request_counts, quiet=0.5)
    sandbox.reset_counts()

    page = f"{daemon.url}/jobs/nightly-eval"
    assert "team=before" in httpx.get(page, timeout=10).text  # before the edit: the daemon may be quick
    spec.write_text(spec.read_text().replace("before", "after"))  # the job's batch is the same
    daemon.eventually(lambda: "team=after" in httpx.get(page, timeout=10).text)
    assert mutating(settled(sandbox.request_counts, quiet=0.5)) == {}


def test_a_pass_that_only_observes_is_folded_into_the_state_file_too(
    make_repo: Callable[..., UserRepo],
    sandbox_factory: Callable[..., Sandbox],
    events_daemon: Callable[..., Daemon],
) -> None:
    sandbox = sandbox_factory(validation_seconds=600.0)
    repo = make_repo()
    repo.write_job("a")
    spec = repo.write_job("b")
    assert events_daemon(repo, sandbox, interval=INTERVAL).stop(signal.SIGTERM) == 0
    serial = json.loads(repo.state.read_text())["serial"]
    spec.write_text("apiVersion: reconciler/v1\nkind: BatchJob\nmetadata: {name: b\n")  # broken

    daemon = events_daemon(repo, sandbox, interval=INTERVAL)  # b would be cancelled: it only observes
    daemon.eventually(lambda: "only observing" in daemon.log())
    journal = repo.state.with_name("state.json.journal")
    daemon.eventually(lambda: not journal.exists() and json.loads(repo.state.read_text())["serial"] > serial)
    assert "POST /v1/batches/{id}/cancel" not in sandbox.request_counts()


def _jobs_in(statuses: dict[str, str]) -> State:
    jobs = {name: JobState(generation="g1", provider="sandbox", status=s) for name, s in statuses.items()}
    return State(lineage="l").with_jobs(jobs)


def test_a_pass_over_some_jobs_is_reported_and_counted_from_those_jobs_alone() -> None:
    """After a pass over one job, the log, the job gauge and what the next poll looks at come from
    that job: the other jobs of the repo are not walked (each is the very object it was)."""
    before = _jobs_in({f"done-{i}": "completed" for i in range(50)} | {"added": "none"})
    hooks, metrics, out = Hooks(), Metrics(), io.StringIO()
    log = EventLog("json", out)
    hooks.follow(PassResult(before, before))  # a whole pass first: every job looked at once
    report_pass(PassResult(before, before), log, metrics)
    # A record no pass made: were every job walked, it would be logged and counted.
    unseen = before.jobs["done-0"].model_copy(update={"status": "expired"})
    added = before.jobs["added"].model_copy(update={"status": "validating"})
    after = before.with_jobs({**before.jobs, "done-0": unseen, "added": added})
    result = PassResult(before, after, whole=False, jobs=frozenset({"added"}))

    hooks.follow(result)
    report_pass(result, log, metrics)

    transitions = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [(t["job"], t["status"]) for t in transitions if t["event"] == "transition"] == [
        ("added", "validating")
    ]
    gauge = {
        s.labels["status"]: s.value
        for m in metrics.registry.collect()
        if m.name == "reconciler_jobs"
        for s in m.samples
    }
    assert gauge == {"completed": 50, "validating": 1}
    assert list(hooks.watched(after).jobs) == ["added"]


def _calls_while(action: Callable[[], object]) -> int:
    """Python function calls made while `action` runs (the real code, counted by a profile hook)."""
    calls = 0

    def count(frame: object, event: str, arg: object) -> None:
        nonlocal calls
        calls += event == "call"

    sys.setprofile(count)
    try:
        action()
    finally:
        sys.setprofile(None)
    return calls


def _admission_calls(held: int) -> int:
    """Calls admitting one added job's create while `held` other jobs' batches run."""
    job = DesiredJob(name="added", generation="g1", provider="sandbox", run_label="r", requests=2, model="m")
    others = {f"busy-{i}": replace(job, name=f"busy-{i}") for i in range(held)}
    live = [_live(name, "in_progress") for name in others]
    state = _jobs_in(dict.fromkeys(others, "in_progress"))
    plan = make_plan({"added": job}, state.model_copy(update={"jobs": {}}), [], allow_empty=True)
    assert [c.job for c in plan.changes if c.creates] == ["added"]
    return _calls_while(lambda: admit(plan, {**others, "added": job}, live, state, now=1.0))


def test_admitting_an_added_job_reads_none_of_the_other_jobs_batches_when_no_queue_is_limited() -> None:
    """A pass creating one job weighs its create against its model's queue: with no limit known
    for the model, the batches held (thousands in a large repo) are not read at all."""
    assert _admission_calls(50) == _admission_calls(500)  # before: 22 calls per batch held


# Where a pass records its jobs: plans/record.py, State.with_jobs, the apply and pass code, and
# the queue book's upkeep in plans/admission.py.  (Admission's reading of the queues and the
# state backend's diff of what to write are counted elsewhere, or not yet at all.)
RECORDING_FILES = ("plans/record.py", "state/model.py", "engine/apply/run.py", "engine/converge.py")
RECORDING_FUNCTIONS = frozenset({"with_queue", "_without_ended", "with_admitted", "some_pass"})


def _recording_lines(action: Callable[[], object]) -> int:
    """Lines of the recording code run on this thread while `action` runs, each turn of a loop
    counted (the real code, counted by a trace hook): a walk of every job or batch shows here."""
    lines = 0

    def recording(frame: FrameType) -> bool:
        code = frame.f_code
        if code.co_filename.endswith(RECORDING_FILES):
            return True
        if code.co_name.startswith("<") and frame.f_back is not None:  # a comprehension: whose?
            code = frame.f_back.f_code
        return code.co_name in RECORDING_FUNCTIONS

    def trace(frame: FrameType, event: str, arg: object) -> Any:
        nonlocal lines
        if event == "line" and recording(frame):
            lines += 1
        return trace

    sys.settrace(trace)
    try:
        action()
    finally:
        sys.settrace(None)
    return lines


def _added_spec_pass_lines(make_repo: Callable[..., UserRepo], sandbox: Sandbox, jobs: int) -> int:
    """The daemon's leader, in this process: a whole pass over `jobs` jobs, then an added spec's
    pass; the lines of recording code that pass runs."""
    repo = make_repo()
    for index in range(jobs):
        repo.write_job(f"job-{index:03d}", requests=1)
    leader, pool = Leader(), ClientPool()
    owner = identity.owner_tag(OWNER)
    with open_backend(repo.state, None, owner, keep_journal=True) as backend:
        loaded = load(repo.paths, OWNER, None)
        clients = pool.clients_for(loaded, None)
        first = leader.whole_pass(loaded, clients, backend, allow_empty=False, parallelism=2)
        assert len(first.after.jobs) == jobs
        repo.write_job("added", requests=1)
        loaded = load(repo.paths, OWNER, loaded)
        clients = pool.clients_for(loaded, first.after)
        passes: list[PassResult] = []
        owed = Owed(jobs={"added"})
        lines = _recording_lines(
            lambda: passes.append(leader.some_pass(loaded, clients, backend, owed, parallelism=2))
        )
        pool.close()
    assert not passes[0].whole and passes[0].outcome.created == 1
    assert passes[0].after.jobs["added"].batches and len(passes[0].after.jobs) == jobs + 1
    return lines


def test_an_added_specs_pass_records_it_without_walking_the_jobs_held(
    make_repo: Callable[..., UserRepo],
    sandbox_factory: Callable[..., Sandbox],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    """The pass over an added spec records that job: recording, the queue book's upkeep and
    State.with_jobs take its jobs alone, not a walk of every job and batch the repo holds."""
    monkeypatch.setenv("RECONCILER_OWNER", OWNER)
    lines = []
    for jobs in (30, 90):
        sandbox = sandbox_factory(tmp_path / f"sandbox-{jobs}", validation_seconds=600.0)  # all run on
        monkeypatch.setenv("RECONCILER_SANDBOX_URL", sandbox.base_url)
        lines.append(_added_spec_pass_lines(make_repo, sandbox, jobs))
    assert lines[1] == lines[0]  # before: 23 more lines per job held
