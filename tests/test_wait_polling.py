"""`reconcile --wait`: how often it looks, and when it leaves a job alone.

It polled the live list every second for up to its 25 h default (~86,000 list requests for a
long batch); it now looks every second at first and less often the longer it has waited.  And
it sent a create again on every pass after the server had named a wait (Retry-After past what a
request sleeps through); it now leaves that job alone until the wait is over.  Both are
measured in request counts over real HTTP.
"""

from __future__ import annotations

import subprocess
import time

import pytest

from reconciler.sandbox import Sandbox
from tests.fixtures.daemon import reconciler_command, reconciler_env
from tests.fixtures.repo import MakeRepo, RunCli
from tests.hostile_server import hostile_server
from tests.reconcile_helpers import wait_until

LISTS = "GET /v1/batches"
HALF = 30.0  # seconds: each half of a 60 s wait


@pytest.mark.slow
def test_wait_looks_less_often_the_longer_it_has_waited(make_repo: MakeRepo, sandbox: Sandbox) -> None:
    sandbox.configure(validation_seconds=600)  # the batch outlasts the wait
    repo = make_repo()
    repo.write_job("nightly-eval")
    command = reconciler_command("reconcile", "--wait", "--timeout", str(2 * HALF), *repo.args())
    process = subprocess.Popen(
        command, env=reconciler_env(sandbox), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    try:
        wait_until(lambda: sandbox.request_counts().get(LISTS, 0) > 0)
        time.sleep(HALF)
        first_half = sandbox.request_counts()[LISTS]
        _, stderr = process.communicate(timeout=4 * HALF)
    finally:
        process.kill()
    second_half = sandbox.request_counts()[LISTS] - first_half

    assert process.returncode == 1 and "--timeout ran out" in stderr, stderr
    # One look a second throughout made the halves equal (30 and 29 here); backing off by a
    # tenth of the time waited makes ~21 looks in the first half and ~8 in the second.
    assert first_half >= 10 and second_half * 3 <= first_half * 2, (first_half, second_half)
    assert sandbox.request_counts()["POST /v1/batches"] == 1


def test_wait_leaves_a_job_alone_while_its_provider_asks_to_wait(
    make_repo: MakeRepo, run_cli: RunCli, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RECONCILER_OWNER", "tests/wait-polling")
    with hostile_server() as hostile:
        hostile.script("/batches", {"object": "list", "data": [], "has_more": False})
        hostile.script("/files", {"object": "list", "data": [], "has_more": False})
        upload = {"id": "file-1", "object": "file", "bytes": 1, "filename": "x.jsonl", "purpose": "batch"}
        hostile.script("POST /files", upload)
        too_many = {"error": {"message": "too many batches"}}
        hostile.script("POST /batches", too_many, status=429, headers={"retry-after": "300"})
        repo = make_repo()
        repo.write_provider("busy", base_url=hostile.base_url("scripted"))
        repo.write_job("nightly-eval", provider="busy")

        result = run_cli("reconcile", "--wait", "--timeout", "6", *repo.args())

        assert hostile.calls["POST /batches"] == 1  # before: one more on every pass
        assert hostile.calls["GET /batches"] >= 3  # the wait went on looking meanwhile
    assert result.exit_code == 1
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(
        "error: --timeout ran out while waiting; still running: "
        "nightly-eval (its provider asked to wait 5m); nothing is lost"
    ), line
