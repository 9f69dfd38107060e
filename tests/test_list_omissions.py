"""A batch list that leaves out batches of ours must never make a twin.

An eventually consistent list (here a real proxy in front of the sandbox, tests/forgetful_list.py)
may answer without batches the state records.  A plan made from the list alone then created
them again, and since paging stopped once the recorded (new) ids were seen, the older twin was
never read again and both ran.  A recorded batch missing from the list is now retrieved by id
before anything is created for its unit, and before a part is resumed or retried the whole list
is read, so a twin the duplicate guard cancelled is never taken for the part's latest attempt.
Batches are counted at the sandbox.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from reconciler.sandbox import Sandbox
from tests.fixtures.daemon import StartDaemon, reconciler_env
from tests.fixtures.repo import MakeRepo, RunCli, UserRepo, planned
from tests.forgetful_list import forgetful_list
from tests.reconcile_helpers import OWNER, batches, mutating, sdk, state_of, use_sandbox, wait_until

CREATES = "POST /v1/batches"


def _jobs(repo: UserRepo, count: int, requests: int = 3) -> list[str]:
    names = [f"job-{i:02d}" for i in range(count)]
    for name in names:
        repo.write_job(name, requests=requests)
    return names


def _point_at(monkeypatch: pytest.MonkeyPatch, base_url: str) -> None:
    monkeypatch.setenv("RECONCILER_SANDBOX_URL", base_url)
    monkeypatch.setenv("RECONCILER_OWNER", OWNER)


def test_recorded_batches_left_out_of_the_list_are_read_by_id_and_never_created_again(
    make_repo: MakeRepo, sandbox: Sandbox, run_cli: RunCli, monkeypatch: pytest.MonkeyPatch
) -> None:
    sandbox.configure(validation_seconds=600)  # all three stay running
    repo = make_repo()
    jobs = _jobs(repo, 3)
    with forgetful_list(sandbox.base_url) as proxy:
        _point_at(monkeypatch, proxy.base_url)
        assert run_cli("apply", "--auto-approve", *repo.args()).exit_code == 0
        ours = [b.id for b in batches(sandbox)]
        assert len(ours) == len(jobs)

        proxy.hide(ours)  # the next listings answer without any of them
        plan = run_cli("plan", "--detailed-exitcode", *repo.args())
        assert plan.exit_code == 0, plan.stdout + plan.stderr
        assert "+ create" not in plan.stdout
        sandbox.reset_counts()
        applied = run_cli("reconcile", *repo.args())
        assert applied.exit_code == 0, applied.stderr
        assert mutating(sandbox.request_counts()) == {}
        assert sandbox.request_counts()["GET /v1/batches/{id}"] == len(jobs)  # each read by id
        assert {job["status"] for job in state_of(repo.root)["jobs"].values()} == {"validating"}
        assert proxy.omitted >= 2 * len(jobs)

        proxy.hide(())  # the list catches up: nothing to dedupe, nothing to create
        again = run_cli("plan", "--detailed-exitcode", *repo.args())
        assert again.exit_code == 0, again.stdout
    assert len(batches(sandbox)) == len(jobs)


@pytest.mark.slow
def test_a_daemon_over_a_list_that_forgets_one_batch_in_twenty_creates_each_unit_once(
    make_repo: MakeRepo, sandbox: Sandbox, start_daemon: StartDaemon
) -> None:
    sandbox.configure(requests_per_second=3)  # each job runs for a few seconds: many passes see it
    repo = make_repo()
    jobs = _jobs(repo, 20, requests=15)
    with forgetful_list(sandbox.base_url) as proxy:
        proxy.forget_at(0.05, seed=25)
        # A create whose answer the loaded machine loses waits out its quarantine before it is
        # sent again (looked for in the list meanwhile): short here, so the test ends in time.
        env = reconciler_env(proxy, OWNER, RECONCILER_CREATE_QUARANTINE="10")
        daemon = start_daemon(repo, proxy, interval="0.2", owner=OWNER, env=env)
        daemon.eventually(
            lambda: (
                repo.state.exists()
                and {j["status"] for j in state_of(repo.root)["jobs"].values()} == {"completed"}
                and len(state_of(repo.root)["jobs"]) == len(jobs)
            ),
            timeout=60,
        )
        assert daemon.stop() == 0, daemon.log()
        assert proxy.omitted >= 10, proxy.omitted  # the list did leave batches out, many times
    assert sandbox.request_counts()[CREATES] == len(jobs)
    assert len(batches(sandbox)) == len(jobs)


def test_a_checkout_whose_twin_the_guard_cancelled_adopts_the_kept_batch_instead_of_resuming(
    make_repo: MakeRepo, sandbox: Sandbox, run_cli: RunCli, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Two checkouts with their own state files (the documented gap): B's list missed A's batch,
    so B made a twin; A's duplicate guard cancelled it.  B must not resume its cancelled twin."""
    sandbox.configure(validation_seconds=600)
    one = make_repo("checkout-a")
    one.write_job("nightly-eval", requests=3)
    two = UserRepo(tmp_path / "checkout-b")
    shutil.copytree(one.root, two.root)
    use_sandbox(monkeypatch, sandbox)
    assert run_cli("apply", "--auto-approve", *one.args()).exit_code == 0
    (kept,) = batches(sandbox)

    with forgetful_list(sandbox.base_url) as proxy:
        _point_at(monkeypatch, proxy.base_url)
        proxy.hide([kept.id])
        assert run_cli("apply", "--auto-approve", *two.args()).exit_code == 0  # B's twin
    twin = next(b for b in batches(sandbox) if b.id != kept.id)

    use_sandbox(monkeypatch, sandbox)
    change = planned(run_cli, one)["nightly-eval"]
    assert (change["reason_code"], change["cancel"]) == ("dedupe", [twin.id])
    assert (change["reason_data"]["kept"], change["reason_data"]["cancelling"]) == (kept.id, [twin.id])
    guarded = run_cli("reconcile", *one.args())
    assert guarded.exit_code == 0, guarded.stderr
    wait_until(lambda: sandbox_status(sandbox, twin.id) == "cancelled")

    sandbox.reset_counts()
    for _ in range(2):
        for checkout in (two, one):
            done = run_cli("reconcile", *checkout.args())
            assert done.exit_code == 0, done.stderr
            assert "resume" not in done.stdout
    assert CREATES not in sandbox.request_counts()
    assert [b["batch_id"] for b in state_of(two.root)["jobs"]["nightly-eval"]["batches"]] == [kept.id]
    running = [b.id for b in batches(sandbox) if b.status not in ("cancelling", "cancelled")]
    assert running == [kept.id]


def sandbox_status(sandbox: Sandbox, batch_id: str) -> str:
    return str(sdk(sandbox).batches.retrieve(batch_id).status)
