"""A job's life over time, over real HTTP against the sandbox: schedules, re-runs, resume,
orphans, targets and --wait's verdict.  Slots are reached with $RECONCILER_NOW (the
reconciler's clock starts there), never by waiting for the wall clock."""

from __future__ import annotations

import json
import re

import jsonschema
import pytest

from reconciler.sandbox import Sandbox
from tests.fixtures.repo import MakeRepo, RunCli, UserRepo, planned
from tests.reconcile_helpers import batches, mutating, sdk, state_of, use_sandbox, wait_until
from tests.test_output_results import OUTPUT_SCHEMA

CREATES = "POST /v1/batches"
FIRST = "2026-12-01T01:00:00Z"
CANCELS = "POST /v1/batches/{id}/cancel"


@pytest.fixture
def repo(make_repo: MakeRepo, sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch) -> UserRepo:
    use_sandbox(monkeypatch, sandbox)
    return make_repo()


def at(monkeypatch: pytest.MonkeyPatch, instant: str) -> None:
    monkeypatch.setenv("RECONCILER_NOW", instant)


def runs(sandbox: Sandbox, job: str = "nightly-eval") -> list[str]:
    return sorted(b.metadata["reconciler_run"] for b in batches(sandbox, job))


def completed(sandbox: Sandbox, batch_id: str) -> int:
    """The batch's answered requests, as the SDK reads them."""
    counts = sdk(sandbox).batches.retrieve(batch_id).request_counts
    assert counts is not None, f"{batch_id} came back without request_counts"
    return counts.completed


@pytest.mark.parametrize(
    ("policy", "creates", "cancels", "live_runs"),
    [
        ("forbid", 0, 0, ["2026-12-01T01:00:00Z"]),
        ("replace", 1, 1, ["2026-12-01T01:00:00Z", "2026-12-01T02:00:00Z"]),
        ("allow", 1, 0, ["2026-12-01T01:00:00Z", "2026-12-01T02:00:00Z"]),
    ],
)
def test_a_slot_that_comes_while_the_previous_run_still_runs_follows_the_concurrency_policy(
    repo: UserRepo,
    sandbox: Sandbox,
    run_cli: RunCli,
    monkeypatch: pytest.MonkeyPatch,
    policy: str,
    creates: int,
    cancels: int,
    live_runs: list[str],
) -> None:
    sandbox.configure(validation_seconds=600)  # the first run is still running at the next slot
    repo.write_job("nightly-eval", schedule="0 * * * *", concurrency_policy=policy)
    at(monkeypatch, "2026-12-01T01:00:10Z")
    change = planned(run_cli, repo)["nightly-eval"]
    assert (change["action"], change["reason_code"]) == ("create", "scheduled_run")
    assert (change["reason_data"]["run"], change["reason_data"]["schedule"]) == (FIRST, "0 * * * *")
    assert run_cli("apply", "--auto-approve", *repo.args()).exit_code == 0
    assert runs(sandbox) == [FIRST]

    at(monkeypatch, "2026-12-01T02:00:05Z")
    sandbox.reset_counts()
    change = planned(run_cli, repo)["nightly-eval"]
    if policy == "forbid":
        assert (change["action"], change["reason_code"]) == ("noop", "slot_waits")
    else:
        assert (change["reason_code"], change["reason_data"]["concurrency_policy"]) == (
            "scheduled_run",
            policy,
        )
    assert change["reason_data"]["still_running"] == [FIRST]
    assert run_cli("apply", "--auto-approve", *repo.args()).exit_code == 0
    counts = mutating(sandbox.request_counts())
    assert (counts.get(CREATES, 0), counts.get(CANCELS, 0)) == (creates, cancels)
    assert runs(sandbox) == live_runs
    sandbox.reset_counts()
    run_cli("apply", "--auto-approve", *repo.args())  # the same slot again: nothing more
    assert CREATES not in mutating(sandbox.request_counts())


def test_a_slot_missed_by_more_than_the_starting_deadline_is_skipped_and_the_plan_says_why(
    repo: UserRepo, sandbox: Sandbox, run_cli: RunCli, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo.write_job("nightly-eval", schedule="0 2 * * *", timezone="Europe/Berlin", starting_deadline="2h")
    at(monkeypatch, "2026-12-01T02:30:00+01:00")
    due = planned(run_cli, repo)["nightly-eval"]
    assert (due["action"], due["reason_code"]) == ("create", "scheduled_run")
    assert due["reason_data"] == {
        "requests": 3,
        "parts": 1,
        "run": "2026-12-01T01:00:00Z",
        "schedule": "0 2 * * *",
        "timezone": "Europe/Berlin",
        "still_running": [],
        "concurrency_policy": "forbid",
        "replacing": None,
    }

    at(monkeypatch, "2026-12-01T05:00:00+01:00")
    sandbox.reset_counts()
    assert run_cli("apply", "--auto-approve", *repo.args()).exit_code == 0
    assert mutating(sandbox.request_counts()) == {}
    assert run_cli("plan", "--detailed-exitcode", *repo.args()).exit_code == 0
    missed = planned(run_cli, repo)["nightly-eval"]
    assert (missed["action"], missed["reason_code"]) == ("noop", "slot_missed")
    assert missed["reason_data"].pop("late_seconds") // 3600 == 3  # the clock moves on from 05:00
    assert missed["reason_data"] == {
        "slot": "2026-12-01T01:00:00Z",
        "starting_deadline": 2 * 3600,
        "next_slot": "2026-12-02T01:00:00Z",
        "timezone": "Europe/Berlin",
    }
    assert missed["next_run"] == "2026-12-02T02:00:00+01:00 (schedule 0 2 * * *)"

    at(monkeypatch, "2026-12-02T02:00:01+01:00")  # the next slot, on time
    assert run_cli("apply", "--auto-approve", *repo.args()).exit_code == 0
    assert runs(sandbox) == ["2026-12-02T01:00:00Z"]


@pytest.mark.slow
def test_changing_spec_run_and_replace_each_start_exactly_one_new_run(
    repo: UserRepo, sandbox: Sandbox, run_cli: RunCli, monkeypatch: pytest.MonkeyPatch
) -> None:
    at(monkeypatch, "2026-12-01T10:00:00Z")
    spec = repo.write_job("nightly-eval", requests=3)
    assert run_cli("reconcile", "--wait", "--timeout", "60", *repo.args()).exit_code == 0
    assert run_cli("plan", "--detailed-exitcode", *repo.args()).exit_code == 0

    spec.write_text(spec.read_text().replace("spec:\n", "spec:\n  run: '2026-12-01 rerun'\n"))
    assert run_cli("plan", "--detailed-exitcode", *repo.args()).exit_code == 2
    change = planned(run_cli, repo)["nightly-eval"]
    assert (change["action"], change["reason_code"]) == ("create", "run_changed")
    data = change["reason_data"]
    assert (data["last_run"], data["run"]) == ("default", change["run"]) and data["run"].startswith("h")
    assert data["diff"]["fields"] == [{"field": "run", "old": None, "new": "2026-12-01 rerun"}]
    sandbox.reset_counts()
    for _ in range(2):
        assert run_cli("reconcile", "--wait", "--timeout", "60", *repo.args()).exit_code == 0
    assert mutating(sandbox.request_counts()) == {"POST /v1/files": 1, CREATES: 1}

    change = planned(run_cli, repo, "--replace", "nightly-eval")["nightly-eval"]
    assert (change["action"], change["reason_code"]) == ("create", "replace_requested")
    assert change["reason_data"]["run"].startswith("h") and "+" in change["reason_data"]["run"]
    sandbox.reset_counts()
    assert run_cli("apply", "--auto-approve", "--replace", "nightly-eval", *repo.args()).exit_code == 0
    assert run_cli("reconcile", "--wait", "--timeout", "60", *repo.args()).exit_code == 0
    assert mutating(sandbox.request_counts()) == {"POST /v1/files": 1, CREATES: 1}
    assert len(set(runs(sandbox))) == 3
    history = state_of(repo.root)["jobs"]["nightly-eval"]["history"]
    assert [h["status"] for h in history] == ["completed"] * 3
    shown = run_cli("status", "nightly-eval", *repo.args())
    assert shown.stdout.count("completed") >= 4 and "(current)" in shown.stdout


@pytest.mark.slow
def test_resuming_a_suspended_job_sends_only_the_requests_without_an_answer(
    repo: UserRepo, sandbox: Sandbox, run_cli: RunCli
) -> None:
    sandbox.configure(requests_per_second=8, validation_seconds=0.05)
    spec = repo.write_job("nightly-eval", requests=40, results="../results/{job}/{run}.jsonl")
    run_cli("apply", "--auto-approve", *repo.args())
    (first,) = batches(sandbox, "nightly-eval")
    wait_until(lambda: completed(sandbox, first.id) >= 5)

    spec.write_text(spec.read_text().replace("spec:\n", "spec:\n  suspend: true\n"))
    assert run_cli("apply", "--auto-approve", *repo.args()).exit_code == 0
    cancelled = wait_until(lambda: (b := sdk(sandbox).batches.retrieve(first.id)).status == "cancelled" and b)
    answered = cancelled.request_counts.completed
    assert 0 < answered < 40

    spec.write_text(spec.read_text().replace("  suspend: true\n", ""))
    change = planned(run_cli, repo)["nightly-eval"]
    assert (change["action"], change["reason_code"]) == ("resume", "resume")
    assert change["reason_data"] == {"requests": 40 - answered}
    sandbox.reset_counts()
    sandbox.configure(requests_per_second=500)
    assert run_cli("reconcile", "--wait", "--timeout", "60", *repo.args()).exit_code == 0
    assert mutating(sandbox.request_counts()) == {"POST /v1/files": 1, CREATES: 1}
    resumed = [b for b in batches(sandbox, "nightly-eval") if b.id != first.id]
    assert [b.request_counts.total for b in resumed] == [40 - answered]
    results = repo.root / "results" / "nightly-eval" / "default.jsonl"
    lines = [json.loads(line) for line in results.read_text().splitlines()]
    assert len(lines) == 40 and all(line["response"]["status_code"] == 200 for line in lines)
    assert state_of(repo.root)["jobs"]["nightly-eval"]["status"] == "completed"


def test_an_orphaned_batch_survives_three_applies_and_a_lost_state(
    repo: UserRepo, sandbox: Sandbox, run_cli: RunCli
) -> None:
    sandbox.configure(validation_seconds=600)
    spec = repo.write_job("nightly-eval", deletion_policy="orphan")
    repo.write_job("keep")
    run_cli("apply", "--auto-approve", *repo.args())
    (orphan,) = batches(sandbox, "nightly-eval")
    assert orphan.metadata["reconciler_deletion_policy"] == "orphan"
    spec.unlink()
    sandbox.reset_counts()
    forget = planned(run_cli, repo)["nightly-eval"]
    assert (forget["action"], forget["reason_code"]) == ("forget", "spec_removed")
    assert forget["reason_data"] == {"stopped": [], "left_running": [orphan.id]}
    assert run_cli("apply", "--auto-approve", *repo.args()).exit_code == 0
    for _ in range(2):
        run_cli("apply", "--auto-approve", *repo.args())
    repo.state.unlink()
    # Without a state the whole live list is read: the orphan is seen, and left alone.
    orphaned = planned(run_cli, repo)["nightly-eval"]
    assert (orphaned["action"], orphaned["reason_code"]) == ("noop", "orphaned")
    assert orphaned["reason_data"] == {"batches": [orphan.id]}
    rebuilt = run_cli("apply", "--auto-approve", *repo.args())
    assert rebuilt.exit_code == 0
    assert CANCELS not in sandbox.request_counts()
    assert sdk(sandbox).batches.retrieve(orphan.id).status == "validating"


def test_a_batch_of_ours_with_no_spec_no_record_and_no_policy_is_left_running_and_reported(
    repo: UserRepo, sandbox: Sandbox, run_cli: RunCli
) -> None:
    sandbox.configure(validation_seconds=600)
    repo.write_job("keep")
    run_cli("apply", "--auto-approve", *repo.args())
    (kept,) = batches(sandbox, "keep")
    metadata = {k: v for k, v in kept.metadata.items() if k != "reconciler_deletion_policy"}
    metadata["reconciler_job"] = "older-tool"
    client = sdk(sandbox)
    older = client.batches.create(
        input_file_id=kept.input_file_id,
        endpoint="/v1/chat/completions",
        completion_window="24h",
        metadata=metadata,
    )
    sandbox.reset_counts()
    plan = run_cli("plan", *repo.args())
    assert "older-tool" in plan.stdout  # shown without -v: the user should see it
    change = planned(run_cli, repo)["older-tool"]
    assert (change["action"], change["reason_code"]) == ("noop", "no_deletion_policy")
    assert change["reason_data"] == {"batches": [older.id]}
    run_cli("apply", "--auto-approve", *repo.args())
    assert mutating(sandbox.request_counts()) == {}


def test_target_plans_applies_and_shows_only_its_job(
    repo: UserRepo, sandbox: Sandbox, run_cli: RunCli
) -> None:
    repo.write_job("alpha")
    repo.write_job("beta")
    sandbox.reset_counts()
    plan = run_cli("plan", "--target", "beta", *repo.args())
    assert "beta" in plan.stdout and "alpha" not in plan.stdout
    assert run_cli("apply", "--auto-approve", "--target", "alpha", *repo.args()).exit_code == 0
    assert mutating(sandbox.request_counts()) == {"POST /v1/files": 1, CREATES: 1}
    assert [b.metadata["reconciler_job"] for b in batches(sandbox)] == ["alpha"]
    assert sorted(state_of(repo.root)["jobs"]) == ["alpha"]
    assert run_cli("reconcile", "--wait", "--target", "alpha", "--timeout", "60", *repo.args()).exit_code == 0
    assert [b.metadata["reconciler_job"] for b in batches(sandbox)] == ["alpha"]
    shown = run_cli("status", "--target", "alpha", *repo.args())
    assert "alpha" in shown.stdout and "completed" in shown.stdout
    unknown = run_cli("apply", "--auto-approve", "--target", "gamma", *repo.args())
    assert unknown.exit_code == 1 and "--target gamma: no job of that name" in unknown.stderr


def test_wait_exits_non_zero_naming_a_job_that_expired(
    repo: UserRepo, sandbox: Sandbox, run_cli: RunCli
) -> None:
    sandbox.configure(expiry_seconds=1.0, requests_per_second=10, validation_seconds=0.05)
    repo.write_job("nightly-eval", requests=40)
    repo.write_job("fine", requests=1)
    result = run_cli("reconcile", "--wait", "--timeout", "60", *repo.args())
    assert result.exit_code == 1
    assert "error: nightly-eval: ended expired (" in result.stderr
    assert "fine" not in result.stderr
    assert "1 failed" in result.stdout


def test_labels_and_batch_metadata_change_no_generation(
    repo: UserRepo, sandbox: Sandbox, run_cli: RunCli
) -> None:
    repo.write_job("nightly-eval", metadata={"description": "first"}, labels={"team": "a"})
    assert run_cli("reconcile", "--wait", "--timeout", "60", *repo.args()).exit_code == 0
    (repo.specs / "nightly-eval.yaml").unlink()
    repo.write_job("nightly-eval", metadata={"description": "second"}, labels={"team": "b"})
    assert run_cli("plan", "--detailed-exitcode", *repo.args()).exit_code == 0


def test_a_replace_lists_what_changed_and_what_the_cancel_throws_away(
    repo: UserRepo, sandbox: Sandbox, run_cli: RunCli
) -> None:
    sandbox.configure(requests_per_second=4)
    repo.write_job("nightly-eval", requests=40, metadata={"description": "first"})
    run_cli("apply", "--auto-approve", *repo.args())
    (first,) = batches(sandbox, "nightly-eval")
    wait_until(lambda: completed(sandbox, first.id) >= 2)
    (repo.specs / "nightly-eval.yaml").unlink()
    repo.write_input("data/nightly-eval.jsonl", requests=41)
    repo.write_job("nightly-eval", metadata={"description": "second"})
    change = planned(run_cli, repo)["nightly-eval"]
    assert (change["action"], change["reason_code"]) == ("replace", "spec_changed")
    diff, replacing = change["reason_data"]["diff"], change["reason_data"]["replacing"]
    assert diff["fields"] == [{"field": "metadata.description", "old": "first", "new": "second"}]
    assert (diff["input"]["requests_before"], diff["input"]["requests_after"]) == (40, 41)
    assert (replacing["batch"], replacing["status"], replacing["total"]) == (first.id, "in_progress", 40)
    assert replacing["completed"] >= 2


def _history(repo: UserRepo) -> list[tuple[str, str | None, bool]]:
    """Each recorded run: its id, its results file, whether its cost is known."""
    history = state_of(repo.root)["jobs"]["nightly-eval"]["history"]
    return [(h["run"], h["results"], h["cost_usd"] is not None) for h in history]


@pytest.mark.slow
def test_an_edit_after_the_slot_ran_waits_for_the_next_slot_and_both_runs_keep_their_records(
    repo: UserRepo, sandbox: Sandbox, run_cli: RunCli, monkeypatch: pytest.MonkeyPatch
) -> None:
    results = "../results/{job}/{run}.jsonl"
    repo.write_job("nightly-eval", schedule="0 1 * * *", results=results)
    at(monkeypatch, "2026-12-01T01:00:10Z")
    assert run_cli("reconcile", "--wait", "--timeout", "60", *repo.args()).exit_code == 0
    first = repo.root / "results" / "nightly-eval" / "2026-12-01T010000Z.jsonl"
    written = first.read_bytes()

    repo.write_input("data/nightly-eval.jsonl", 4)  # edited during the day
    at(monkeypatch, "2026-12-01T10:00:00Z")
    plan = run_cli("plan", "--detailed-exitcode", *repo.args())
    assert plan.exit_code == 0, plan.stdout
    # Nothing to do, and not in sync: the summary says so, as `status` does.
    assert "No changes: 0 jobs in sync; 1 out of sync: spec change waiting for its next slot." in plan.stdout
    change = planned(run_cli, repo)["nightly-eval"]
    assert (change["action"], change["reason_code"]) == ("noop", "edit_waits")
    assert change["reason_data"] == {
        "job": "nightly-eval",
        "last_run": "2026-12-01T01:00:00Z",
        "next_slot": "2026-12-02T01:00:00Z",
        "timezone": "UTC",
    }
    sandbox.reset_counts()
    assert run_cli("reconcile", "--wait", "--timeout", "60", *repo.args()).exit_code == 0
    assert mutating(sandbox.request_counts()) == {}
    assert first.read_bytes() == written
    assert "completed  out of sync: spec changed" in run_cli("status", *repo.args()).stdout

    at(monkeypatch, "2026-12-02T01:00:10Z")  # the next slot runs the new spec
    assert run_cli("reconcile", "--wait", "--timeout", "60", *repo.args()).exit_code == 0
    assert runs(sandbox) == ["2026-12-01T01:00:00Z", "2026-12-02T01:00:00Z"]
    assert first.read_bytes() == written
    assert _history(repo) == [
        ("2026-12-02T01:00:00Z", "results/nightly-eval/2026-12-02T010000Z.jsonl", True),
        ("2026-12-01T01:00:00Z", "results/nightly-eval/2026-12-01T010000Z.jsonl", True),
    ]


def test_an_edit_while_the_slots_run_still_runs_replaces_it_under_a_run_id_of_its_own(
    repo: UserRepo, sandbox: Sandbox, run_cli: RunCli, monkeypatch: pytest.MonkeyPatch
) -> None:
    sandbox.configure(validation_seconds=600)
    repo.write_job("nightly-eval", schedule="0 1 * * *", results="../results/{job}/{run}.jsonl")
    at(monkeypatch, "2026-12-01T01:00:10Z")
    assert run_cli("reconcile", *repo.args()).exit_code == 0

    repo.write_input("data/nightly-eval.jsonl", 4)
    sandbox.configure(validation_seconds=0.05)
    at(monkeypatch, "2026-12-01T01:30:00Z")
    sandbox.reset_counts()
    for _ in range(2):
        assert run_cli("reconcile", "--wait", "--timeout", "60", *repo.args()).exit_code == 0
    assert mutating(sandbox.request_counts()) == {"POST /v1/files": 1, CREATES: 1, CANCELS: 1}
    (edited,) = {b.metadata["reconciler_generation"] for b in batches(sandbox) if b.status == "completed"}
    rerun = f"2026-12-01T01:00:00Z+g{edited}"
    assert runs(sandbox) == ["2026-12-01T01:00:00Z", rerun]
    assert [(run, results) for run, results, _ in _history(repo)] == [
        (rerun, f"results/nightly-eval/2026-12-01T010000Z-g{edited}.jsonl"),
        ("2026-12-01T01:00:00Z", None),  # cancelled before it answered anything
    ]
    shown = run_cli("status", "nightly-eval", *repo.args()).stdout
    assert re.search(rf"{re.escape(rerun)} \(current\) +completed", shown), shown
    assert re.search(r"2026-12-01T01:00:00Z +cancel", shown), shown


@pytest.mark.slow
def test_an_edit_of_an_unscheduled_job_starts_a_run_of_its_own_and_keeps_the_last_ones_results_and_cost(
    repo: UserRepo, sandbox: Sandbox, run_cli: RunCli
) -> None:
    repo.write_job("nightly-eval", results="../results/{job}/{run}.jsonl")
    assert run_cli("reconcile", "--wait", "--timeout", "60", *repo.args()).exit_code == 0
    repo.write_input("data/nightly-eval.jsonl", 4)
    assert run_cli("reconcile", "--wait", "--timeout", "60", *repo.args()).exit_code == 0

    (edited,) = {b.metadata["reconciler_generation"] for b in batches(sandbox) if b.request_counts.total == 4}
    assert runs(sandbox) == ["default", f"default+g{edited}"]
    assert _history(repo) == [
        (f"default+g{edited}", f"results/nightly-eval/default-g{edited}.jsonl", True),
        ("default", "results/nightly-eval/default.jsonl", True),
    ]
    folder = repo.root / "results" / "nightly-eval"
    lines = {f.name: len(f.read_text().splitlines()) for f in folder.iterdir()}
    assert lines == {"default.jsonl": 3, f"default-g{edited}.jsonl": 4}


@pytest.mark.parametrize(
    ("macro", "due", "upcoming"),
    [
        ("@yearly", "2026-01-01T00:00:00+00:00", "2027-01-01T00:00:00+00:00"),
        ("@annually", "2026-01-01T00:00:00+00:00", "2027-01-01T00:00:00+00:00"),
        ("@monthly", "2026-03-01T00:00:00+00:00", "2026-04-01T00:00:00+00:00"),
        ("@weekly", "2026-03-15T00:00:00+00:00", "2026-03-22T00:00:00+00:00"),  # Sundays
        ("@daily", "2026-03-15T00:00:00+00:00", "2026-03-16T00:00:00+00:00"),
        ("@midnight", "2026-03-15T00:00:00+00:00", "2026-03-16T00:00:00+00:00"),
        ("@hourly", "2026-03-15T10:00:00+00:00", "2026-03-15T11:00:00+00:00"),
    ],
)
def test_a_schedule_macro_runs_the_slots_kubernetes_gives_it_and_the_plan_shows_it_as_written(
    repo: UserRepo,
    sandbox: Sandbox,
    run_cli: RunCli,
    monkeypatch: pytest.MonkeyPatch,
    macro: str,
    due: str,
    upcoming: str,
) -> None:
    repo.write_job("nightly-eval", schedule=macro)
    at(monkeypatch, "2026-03-15T10:20:00Z")
    assert run_cli("validate", *repo.args()).exit_code == 0
    plan = run_cli("plan", *repo.args())
    assert plan.exit_code == 0, plan.stderr
    assert f"run {due} (schedule {macro}): 3 requests" in plan.stdout
    assert f"Next run of nightly-eval: {upcoming} (schedule {macro})" in plan.stdout
    assert run_cli("apply", "--auto-approve", *repo.args()).exit_code == 0
    slot = due.replace("+00:00", "Z")
    assert runs(sandbox) == [slot]


def test_a_daily_macro_is_midnight_in_the_schedules_time_zone(
    repo: UserRepo, run_cli: RunCli, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo.write_job("nightly-eval", schedule="@daily", timezone="Europe/Berlin")
    at(monkeypatch, "2026-12-01T23:30:00Z")  # 00:30 on 2 December in Berlin
    plan = run_cli("plan", *repo.args())
    assert "run 2026-12-02T00:00:00+01:00 (schedule @daily)" in plan.stdout
    assert "Next run of nightly-eval: 2026-12-03T00:00:00+01:00 (schedule @daily)" in plan.stdout


@pytest.mark.slow
def test_a_run_whose_results_file_a_later_run_wrote_over_no_longer_claims_it(
    repo: UserRepo, sandbox: Sandbox, run_cli: RunCli, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`results:` without {run}: each run writes the same file, so only the latest holds it."""
    repo.write_job("nightly-eval", schedule="0 1 * * *", results="../results/{job}.jsonl")
    for slot in ("2026-12-01T01:00:10Z", "2026-12-02T01:00:10Z"):
        at(monkeypatch, slot)
        assert run_cli("reconcile", "--wait", "--timeout", "60", *repo.args()).exit_code == 0
    assert runs(sandbox) == ["2026-12-01T01:00:00Z", "2026-12-02T01:00:00Z"]

    history = state_of(repo.root)["jobs"]["nightly-eval"]["history"]
    assert [(h["run"], h["results"], h.get("results_overwritten_by")) for h in history] == [
        ("2026-12-02T01:00:00Z", "results/nightly-eval.jsonl", None),
        ("2026-12-01T01:00:00Z", None, "2026-12-02T01:00:00Z"),
    ]
    shown = run_cli("status", "nightly-eval", *repo.args()).stdout
    assert re.search(r"2026-12-01T01:00:00Z +completed .* overwritten by run 2026-12-02T01:00:00Z", shown), (
        shown
    )
    document = json.loads(run_cli("output", "nightly-eval", "--json", *repo.args()).stdout)
    jsonschema.Draft202012Validator(OUTPUT_SCHEMA).validate(document)
    older = document["jobs"]["nightly-eval"]["runs"][1]
    assert (older["results"], older["results_overwritten_by"]) == (None, "2026-12-02T01:00:00Z")
