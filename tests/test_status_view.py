"""`reconciler status`: refresh, sync, progress, invalid specs, one row per job, the detail view."""

from __future__ import annotations

import itertools
import json
import re
import socket

import pytest

from reconciler.cli.render_status import LIVE_SECONDS
from reconciler.plans.jobstatus import job_progress
from reconciler.sandbox import Sandbox
from reconciler.state.model import BatchRecord, JobState
from tests.fixtures.repo import MakeRepo, RunCli, UserRepo
from tests.reconcile_helpers import batches, sdk, state_of, use_sandbox, wait_until


@pytest.fixture
def repo(make_repo: MakeRepo, sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch) -> UserRepo:
    use_sandbox(monkeypatch, sandbox)
    return make_repo()


def row(status_stdout: str, job: str) -> str:
    return next(line for line in status_stdout.splitlines() if line.startswith(job + " "))


def test_status_right_after_apply_shows_the_live_figures_and_writes_nothing(
    repo: UserRepo, sandbox: Sandbox, run_cli: RunCli
) -> None:
    repo.write_job("nightly-eval", requests=3)
    assert run_cli("apply", "--auto-approve", *repo.args()).exit_code == 0
    assert state_of(repo.root)["jobs"]["nightly-eval"]["status"] == "validating"
    wait_until(lambda: batches(sandbox, "nightly-eval")[0].status == "completed")
    recorded = repo.state.read_bytes()
    sandbox.reset_counts()

    live = run_cli("status", *repo.args())
    assert live.exit_code == 0 and live.stderr == ""
    assert "completed" in row(live.stdout, "nightly-eval") and "3/0/3" in row(live.stdout, "nightly-eval")
    assert repo.state.read_bytes() == recorded
    assert set(sandbox.request_counts()) == {"GET /v1/batches"}
    waited = run_cli("status", "--refresh", *repo.args())  # as before: live, however long it takes
    assert "completed" in row(waited.stdout, "nightly-eval") and repo.state.read_bytes() == recorded

    saved = run_cli("status", "--save", *repo.args())
    assert saved.exit_code == 0 and state_of(repo.root)["jobs"]["nightly-eval"]["status"] == "completed"
    assert run_cli("status", "--refresh", "--save", *repo.args()).exit_code == 0


def test_status_before_anything_is_applied_asks_no_one_and_says_what_to_do(
    repo: UserRepo, sandbox: Sandbox, run_cli: RunCli
) -> None:
    repo.write_job("nightly-eval", requests=3)
    sandbox.reset_counts()
    result = run_cli("status", *repo.args())
    assert result.exit_code == 0 and result.stderr == ""
    assert "No jobs in the state yet: run `reconciler plan`, then `reconciler apply`." in result.stdout
    assert sandbox.request_counts() == {}


def test_a_job_not_created_yet_looks_the_same_live_and_offline(
    repo: UserRepo, sandbox: Sandbox, run_cli: RunCli
) -> None:
    repo.write_job("nightly-eval", requests=3)
    assert run_cli("apply", "--auto-approve", *repo.args()).exit_code == 0
    repo.write_job("ab-test", requests=2)
    sandbox.reset_counts()
    live = row(run_cli("status", *repo.args()).stdout, "ab-test")
    assert sandbox.request_counts() == {"GET /v1/batches": 1}
    offline = row(run_cli("status", "--offline", *repo.args()).stdout, "ab-test")
    assert re.split(r"\s{2,}", live) == re.split(r"\s{2,}", offline)  # cells; widths follow other rows
    assert re.match(r"ab-test\s+none\s+out of sync: not created\s+-\s+-\s+-\s+0\s+-\s", live), live


def test_status_offline_shows_the_recorded_figures_and_asks_nothing(
    repo: UserRepo, sandbox: Sandbox, run_cli: RunCli
) -> None:
    repo.write_job("nightly-eval", requests=3)
    assert run_cli("apply", "--auto-approve", *repo.args()).exit_code == 0
    wait_until(lambda: batches(sandbox, "nightly-eval")[0].status == "completed")
    sandbox.reset_counts()
    offline = run_cli("status", "--offline", *repo.args())
    assert offline.exit_code == 0 and offline.stderr == ""
    assert "validating" in row(offline.stdout, "nightly-eval") and "0/0/0" in row(
        offline.stdout, "nightly-eval"
    )
    assert sandbox.request_counts() == {}
    both = run_cli("status", "--offline", "--refresh", *repo.args())
    assert both.exit_code == 1 and both.stderr.count("\n") == 1 and "--offline" in both.stderr


@pytest.mark.slow
def test_status_with_the_provider_down_shows_the_recorded_figures_and_says_so(
    repo: UserRepo, run_cli: RunCli, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo.write_job("nightly-eval", requests=3)
    assert run_cli("apply", "--auto-approve", *repo.args()).exit_code == 0
    observed = state_of(repo.root)["jobs"]["nightly-eval"]["observed_at"]
    recorded = repo.state.read_bytes()
    monkeypatch.setenv("RECONCILER_SANDBOX_URL", f"http://127.0.0.1:{closed_port()}/v1")

    result = run_cli("status", *repo.args())
    assert result.exit_code == 0, result.stderr
    assert "validating" in row(result.stdout, "nightly-eval")
    (note,) = result.stderr.splitlines()
    assert note.startswith(f"note: figures as recorded at {observed}: no live list (")
    assert "cannot connect" in note and note.endswith(
        "`status --refresh` waits for it, `--offline` does not ask"
    )
    assert repo.state.read_bytes() == recorded
    waited = run_cli("status", "--refresh", *repo.args())  # asked to wait for it: an error
    assert waited.exit_code == 1 and "cannot connect" in waited.stderr


@pytest.mark.slow
def test_status_with_a_provider_slower_than_a_glance_shows_the_recorded_figures(
    repo: UserRepo, sandbox: Sandbox, run_cli: RunCli
) -> None:
    repo.write_job("nightly-eval", requests=3)
    assert run_cli("apply", "--auto-approve", *repo.args()).exit_code == 0
    sandbox.configure(latency_seconds=LIVE_SECONDS * 3)
    sandbox.reset_counts()
    result = run_cli("status", *repo.args())
    assert result.exit_code == 0 and "validating" in row(result.stdout, "nightly-eval")
    assert f"the provider did not answer within {LIVE_SECONDS:.0f}s" in result.stderr
    assert sandbox.request_counts() == {"GET /v1/batches": 1}  # no retry of a request that timed out


def closed_port() -> int:
    """A loopback port nothing listens on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_status_sync_turns_out_of_sync_when_the_input_is_edited(repo: UserRepo, run_cli: RunCli) -> None:
    repo.write_job("nightly-eval", requests=3)
    assert run_cli("reconcile", "--wait", "--timeout", "60", *repo.args()).exit_code == 0
    assert "in sync" in row(run_cli("status", *repo.args()).stdout, "nightly-eval")
    repo.write_input("data/nightly-eval.jsonl", requests=4)
    edited = row(run_cli("status", *repo.args()).stdout, "nightly-eval")
    assert "completed" in edited and "out of sync: spec changed" in edited


def test_status_lists_invalid_specs_and_a_job_not_created_yet(repo: UserRepo, run_cli: RunCli) -> None:
    repo.write_job("nightly-eval", requests=3)
    assert run_cli("reconcile", "--wait", "--timeout", "60", *repo.args()).exit_code == 0
    repo.write_job("ab-test", requests=2)
    repo.write_spec(
        "specs/broken.yaml", "apiVersion: reconciler/v1\nkind: BatchJob\nmetadata: {name: broken}\n"
    )
    result = run_cli("status", *repo.args())
    assert result.exit_code == 0
    assert "out of sync: not created" in row(result.stdout, "ab-test")
    assert "Invalid specs (1)" in result.stdout and "specs/broken.yaml" in result.stdout


def test_status_is_one_row_per_job_with_a_batch_count_and_the_detail_names_each_batch(
    repo: UserRepo, run_cli: RunCli
) -> None:
    repo.write_job(
        "nightly-eval",
        requests=7,
        split={"max_requests": 3},
        results="../results/n.jsonl",
        cleanup={"output_files": True},
    )
    assert run_cli("reconcile", "--wait", "--timeout", "60", *repo.args()).exit_code == 0
    job = state_of(repo.root)["jobs"]["nightly-eval"]
    table = run_cli("status", *repo.args()).stdout
    line = row(table, "nightly-eval")
    assert job["batches"][0]["batch_id"] not in table and "," not in line
    assert re.search(r"7/0/7\s+-\s+-\s+3\s", line)  # DONE/FAILED/TOTAL, RATE, ETA, BATCHES
    detail = run_cli("status", "nightly-eval", *repo.args()).stdout
    for batch in job["batches"]:
        assert batch["batch_id"] in detail and f"{batch['output_file_id']} (deleted)" in detail


def test_status_of_an_unknown_job_is_one_line(repo: UserRepo, run_cli: RunCli) -> None:
    repo.write_job("nightly-eval", requests=3)
    result = run_cli("status", "nope", *repo.args())
    assert result.exit_code == 1 and "no job 'nope'" in result.stderr and "Traceback" not in result.stderr


def _running_job(done: int, total: int, started: int, observed: str) -> JobState:
    counts = {"total": total, "completed": done, "failed": 0}
    batch = BatchRecord(batch_id="b", status="in_progress", request_counts=counts, in_progress_at=started)
    return JobState(
        generation="g",
        provider="sandbox",
        status="in_progress",
        request_counts=counts,
        batches=(batch,),
        observed_at=observed,
    )


def test_progress_rate_and_eta_come_from_recorded_counts_and_times() -> None:
    # 1,000 answered in the 600 s between in_progress_at and observed_at: 100/min, 49,000 to go.
    job = _running_job(1_000, 50_000, started=1_800_000_000 - 600, observed="2027-01-15T08:00:00Z")
    observed = 1_800_000_000.0
    figures = job_progress(job, now=observed)
    assert (figures.done, figures.total) == (1_000, 50_000)
    assert figures.per_minute == pytest.approx(100.0)
    assert figures.eta_seconds == pytest.approx(49_000 * 0.6)
    later = job_progress(job, now=observed + 60)
    assert later.eta_seconds == pytest.approx(49_000 * 0.6 - 60)


def test_progress_of_a_finished_job_has_no_rate_or_eta() -> None:
    job = _running_job(3, 3, started=1_800_000_000, observed="2027-01-15T08:00:00Z")
    finished = job.model_copy(
        update={
            "status": "completed",
            "batches": (job.batches[0].model_copy(update={"status": "completed"}),),
        }
    )
    figures = job_progress(finished, now=1_800_000_100.0)
    assert (figures.done, figures.per_minute, figures.eta_seconds) == (3, None, None)


@pytest.mark.slow
def test_reconcile_wait_off_a_terminal_prints_progress_lines_at_a_tenth_of_the_job(
    repo: UserRepo, sandbox: Sandbox, run_cli: RunCli
) -> None:
    sandbox.configure(requests_per_second=60)
    repo.write_job("nightly-eval", requests=240)
    result = run_cli("reconcile", "--wait", "--timeout", "60", *repo.args())
    assert result.exit_code == 0, result.stderr
    progress = [line for line in result.stdout.splitlines() if "/240 requests" in line]
    assert 2 <= len(progress) <= 11  # a line per tenth of the job, at most, not one per poll
    assert any("/min" in line and "to go" in line for line in progress)
    done = [int(line.split("nightly-eval: ")[1].split("/")[0].replace(",", "")) for line in progress]
    assert done == sorted(done) and all(b - a >= 24 for a, b in itertools.pairwise(done))
    assert json.loads(repo.state.read_text())["jobs"]["nightly-eval"]["status"] == "completed"


def answered(sandbox: Sandbox, job: str = "nightly-eval") -> int:
    counts = batches(sandbox, job)[0].request_counts
    return counts.completed if counts else 0


@pytest.mark.slow
def test_a_job_suspended_mid_run_shows_what_it_answered_and_its_partial_results(
    repo: UserRepo, sandbox: Sandbox, run_cli: RunCli
) -> None:
    sandbox.configure(requests_per_second=100)
    repo.write_job("nightly-eval", requests=300, results="../results/{job}.jsonl")
    assert run_cli("apply", "--auto-approve", *repo.args()).exit_code == 0
    wait_until(lambda: answered(sandbox) >= 170)
    repo.write_spec("specs/nightly-eval.yaml", "")
    repo.write_job("nightly-eval", requests=300, results="../results/{job}.jsonl", suspend=True)
    suspended = run_cli("apply", "--auto-approve", *repo.args())
    assert "- cancel  nightly-eval  suspended; cancelling what runs" in suspended.stdout
    wait_until(lambda: batches(sandbox, "nightly-eval")[0].status == "cancelled")
    done = answered(sandbox)
    assert run_cli("reconcile", *repo.args()).exit_code == 0  # the next pass writes what it answered

    line = row(run_cli("status", *repo.args()).stdout, "nightly-eval")
    assert re.match(rf"nightly-eval\s+suspended \(cancelled\)\s+in sync\s+{done}/0/300\s", line), line
    assert "results/nightly-eval.jsonl" in line and "MISSING" not in line.upper()
    detail = run_cli("status", "nightly-eval", *repo.args()).stdout
    assert detail.startswith("nightly-eval: suspended (cancelled), in sync")
    assert f"requests     {done} done, 0 failed, 300 total" in detail
    assert re.search(rf"default \(current\)\s+cancelled\s+{done}/0/300", detail)
    shown = run_cli("output", *repo.args()).stdout
    assert shown.startswith(f"nightly-eval  suspended (cancelled)  {done}/0/300")
    lines = [json.loads(text) for text in (repo.root / "results/nightly-eval.jsonl").read_text().splitlines()]
    assert len(lines) == 300 and sum(1 for r in lines if r["response"]) == done
    assert {r["error"]["code"] for r in lines if not r["response"]} == {"batch_cancelled"}

    repo.write_spec("specs/nightly-eval.yaml", "")
    repo.write_job("nightly-eval", requests=300, results="../results/{job}.jsonl")
    resumed = run_cli("reconcile", "--wait", "--timeout", "60", *repo.args())
    assert f"+ resume  nightly-eval  {300 - done} requests without a final answer" in resumed.stdout
    assert "completed  in sync  300/0/300" in row(run_cli("status", *repo.args()).stdout, "nightly-eval")
    lines = [json.loads(text) for text in (repo.root / "results/nightly-eval.jsonl").read_text().splitlines()]
    assert all(r["response"] for r in lines)


def test_a_job_suspended_before_it_ran_is_suspended_and_in_sync(repo: UserRepo, run_cli: RunCli) -> None:
    repo.write_job("nightly-eval", suspend=True)
    assert run_cli("apply", "--auto-approve", *repo.args()).exit_code == 0
    line = row(run_cli("status", *repo.args()).stdout, "nightly-eval")
    assert re.match(r"nightly-eval\s+suspended\s+in sync\s", line), line


@pytest.mark.slow
def test_a_run_a_replace_cancelled_shows_how_it_ended_in_the_history(
    repo: UserRepo, sandbox: Sandbox, run_cli: RunCli
) -> None:
    sandbox.configure(requests_per_second=100)
    repo.write_job("nightly-eval", requests=300)
    assert run_cli("apply", "--auto-approve", *repo.args()).exit_code == 0
    first = batches(sandbox, "nightly-eval")[0].id
    wait_until(lambda: answered(sandbox) >= 100)
    repo.write_input("data/nightly-eval.jsonl", requests=250)
    assert "~ replace nightly-eval" in run_cli("apply", "--auto-approve", *repo.args()).stdout
    wait_until(lambda: sdk(sandbox).batches.retrieve(first).status == "cancelled")
    counts = sdk(sandbox).batches.retrieve(first).request_counts
    assert counts is not None
    assert run_cli("reconcile", *repo.args()).exit_code == 0
    for command in (("status", "--offline"), ("status",)):
        detail = run_cli(*command, "nightly-eval", *repo.args()).stdout
        old = next(line for line in detail.splitlines() if line.strip().startswith("default "))
        assert re.match(rf"\s+default\s+cancelled\s+{counts.completed}/0/300\s+\S+\s+\d{{4}}-", old), old
