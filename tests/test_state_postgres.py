"""The PostgreSQL state backend, against a real server (tests/fixtures/postgres.py).

The same document as the state file, every serial kept as a version, writes that refuse a
lost update, the owner's writer lock naming its holder, and credentials that come only
through the environment and go nowhere else.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from reconciler.common.errors import StateError
from reconciler.engine.workspace import open_backend
from reconciler.sandbox import Sandbox
from reconciler.specs.identity import owner_tag
from reconciler.state.database import MIGRATIONS
from reconciler.state.model import IntentKey, IntentState, JobState, PendingCreate, State
from tests.fixtures.postgres import StateDb
from tests.fixtures.repo import RunCli, UserRepo
from tests.fixtures.sandbox import cli_env
from tests.reconcile_helpers import OWNER, batches, use_sandbox


@pytest.fixture
def pg_repo(
    user_repo: UserRepo, sandbox: Sandbox, state_db: StateDb, monkeypatch: pytest.MonkeyPatch
) -> UserRepo:
    use_sandbox(monkeypatch, sandbox)
    monkeypatch.setenv("RECONCILER_STATE_URL", state_db.url)
    return user_repo


@pytest.mark.slow
def test_apply_keeps_the_state_in_the_database_with_every_serial_as_a_version(
    pg_repo: UserRepo, sandbox: Sandbox, state_db: StateDb, run_cli: RunCli
) -> None:
    applied = run_cli("apply", "--auto-approve", *pg_repo.args())
    assert applied.exit_code == 0, applied.stderr
    assert run_cli("reconcile", *pg_repo.args()).exit_code == 0
    assert not pg_repo.state.exists()  # no state file: the database is the state

    document = json.loads(run_cli("status", "--json", "--offline", *pg_repo.args()).stdout)  # as recorded
    assert document["owner"] == owner_tag(OWNER) and document["format_version"] == 5
    recorded = [b["batch_id"] for b in document["jobs"]["nightly-eval"]["batches"]]
    assert recorded == [b.id for b in batches(sandbox)]

    history = json.loads(run_cli("state", "history", "--json", *pg_repo.args()).stdout)
    serials = [v["serial"] for v in history["versions"]]
    assert serials == list(range(document["serial"], 0, -1))  # every serial kept, newest first
    assert {v["lineage"] for v in history["versions"]} == {document["lineage"]}
    assert all(v["written_by"].startswith("reconciler ") for v in history["versions"])
    assert history["state"] == state_db.bare_url  # shown without its password
    table = run_cli("state", "history", *pg_repo.args()).stdout
    assert table.splitlines()[0].split() == ["SERIAL", "WRITTEN", "JOBS", "LINEAGE", "BY"]

    first = json.loads(run_cli("state", "show", "1", *pg_repo.args()).stdout)
    assert first["serial"] == 1 and first["jobs"]["nightly-eval"]["pending"]  # the intent, before its POST
    latest = json.loads(run_cli("state", "show", str(document["serial"]), *pg_repo.args()).stdout)
    assert latest == document
    missing = run_cli("state", "show", "999", *pg_repo.args())
    assert missing.exit_code == 1 and missing.stderr.count("\n") == 1 and "no serial 999" in missing.stderr


@pytest.mark.slow
def test_a_write_from_a_stale_read_is_refused_and_loses_nothing(state_db: StateDb, tmp_path: Path) -> None:
    with open_backend(tmp_path / "unused.json", state_db.url, "tag-a") as one:
        with open_backend(tmp_path / "unused.json", state_db.url, "tag-a") as two:
            read_by_one, read_by_two = one.read(), two.read()
            written = one.write(read_by_one)
            with pytest.raises(StateError, match="moved on to serial 1 while this pass worked from serial 0"):
                two.write(read_by_two)
            assert two.write(two.read()).serial == written.serial + 1
            with pytest.raises(StateError, match="nothing written"):
                one.write(written)
        assert [v.serial for v in one.history(10)] == [2, 1]
    with open_backend(tmp_path / "unused.json", state_db.url, "tag-b") as other_owner:
        assert other_owner.read().serial == 0  # keyed by owner: another repo's state is apart


def test_a_second_writer_waits_then_fails_naming_the_holder(
    pg_repo: UserRepo, sandbox: Sandbox, state_db: StateDb, run_cli: RunCli, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RECONCILER_LOCK_TIMEOUT", "0.3")
    with (
        open_backend(pg_repo.state, state_db.url, owner_tag(OWNER)) as held,
        held.writer_lock("reconciler apply (test holder)"),
    ):
        result = run_cli("apply", "--auto-approve", *pg_repo.args())
        plan = run_cli("plan", *pg_repo.args())  # read-only: takes no lock
    assert result.exit_code == 1
    (line,) = result.stderr.strip().splitlines()
    assert (
        line.startswith("error: state is locked by pid ") and "reconciler apply (test holder), since" in line
    )
    assert state_db.bare_url in line
    assert batches(sandbox) == []
    assert plan.exit_code == 0 and "+ create" in plan.stdout


def test_a_password_outside_the_environment_is_refused_before_anything_runs(
    user_repo: UserRepo, sandbox: Sandbox, state_db: StateDb, run_cli: RunCli, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_sandbox(monkeypatch, sandbox)
    flag = run_cli("apply", "--auto-approve", "--state-url", state_db.url, *user_repo.args())
    (user_repo.root / "reconciler.yaml").write_text(f"state: {state_db.url}\n")
    settings = run_cli("plan", *user_repo.args())
    for result in (flag, settings):
        assert result.exit_code == 1
        (line,) = result.stderr.strip().splitlines()
        assert "holds a password" in line and "$PGPASSWORD" in line
        assert state_db.password not in result.stderr + result.stdout
    assert batches(sandbox) == [] and not user_repo.state.exists()


@pytest.mark.slow
def test_credentials_from_the_environment_reach_no_file_output_log_or_row(
    user_repo: UserRepo,
    sandbox: Sandbox,
    state_db: StateDb,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    run_cli: RunCli,
) -> None:
    """The password in $RECONCILER_STATE_URL (or $PGPASSWORD with a bare URL in reconciler.yaml)."""
    use_sandbox(monkeypatch, sandbox)
    outputs = []
    monkeypatch.setenv("PGPASSWORD", state_db.password)
    (user_repo.root / "reconciler.yaml").write_text(f"state: {state_db.bare_url}\n")
    for args in (("apply", "--auto-approve"), ("status",), ("state", "history")):
        result = run_cli(*args, *user_repo.args())
        assert result.exit_code == 0, result.stderr
        outputs.append(result.stdout + result.stderr)
    monkeypatch.delenv("PGPASSWORD")
    (user_repo.root / "reconciler.yaml").unlink()
    env = cli_env() | {"RECONCILER_STATE_URL": state_db.url, "RECONCILER_OWNER": OWNER}
    child = subprocess.run(
        [sys.executable, "-m", "reconciler", "reconcile", *user_repo.args()],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert child.returncode == 0, child.stderr
    outputs.append(child.stdout + child.stderr)
    wrong_user = state_db.bare_url.replace("reconciler@", "nobody@")
    refused = run_cli("status", "--state-url", wrong_user, *user_repo.args())
    assert refused.exit_code == 1 and "cannot connect" in refused.stderr
    outputs.append(refused.stdout + refused.stderr)
    monkeypatch.setenv(
        "RECONCILER_STATE_URL", state_db.url.replace(state_db.password, state_db.password + "x")
    )
    bad_password = run_cli("status", *user_repo.args())
    assert bad_password.exit_code == 1 and "password authentication failed" in bad_password.stderr
    outputs.append(bad_password.stdout + bad_password.stderr)

    assert all(state_db.password not in text for text in outputs)
    for path in tmp_path.rglob("*"):
        if path.is_file():
            assert state_db.password.encode() not in path.read_bytes(), path
    rows = state_db.query(
        "SELECT document::text || coalesce(written_by, '') FROM reconciler_state_versions "
        "UNION ALL SELECT holder::text FROM reconciler_lock_holders"
    )
    assert rows and all(state_db.password not in str(row[0]) for row in rows)


def test_a_state_file_lists_its_latest_serial_and_backup_and_refuses_older_ones(
    user_repo: UserRepo, sandbox: Sandbox, run_cli: RunCli, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_sandbox(monkeypatch, sandbox)
    assert run_cli("apply", "--auto-approve", *user_repo.args()).exit_code == 0
    history = json.loads(run_cli("state", "history", "--json", *user_repo.args()).stdout)
    latest = json.loads(user_repo.state.read_text())["serial"]
    (newest, backup) = [v["serial"] for v in history["versions"]]
    assert newest == latest and backup < latest - 1  # the file before the command: its writes in between
    shown = json.loads(run_cli("state", "show", str(backup), *user_repo.args()).stdout)
    assert shown["serial"] == backup
    gone = run_cli("state", "show", str(latest - 1), *user_repo.args())  # journaled, then folded in
    assert (
        gone.exit_code == 1 and gone.stderr.count("\n") == 1 and "keeps only its latest serial" in gone.stderr
    )


def test_a_document_nested_too_deeply_is_damage_in_one_line_not_a_traceback(
    pg_repo: UserRepo, state_db: StateDb, run_cli: RunCli
) -> None:
    assert run_cli("apply", "--auto-approve", *pg_repo.args()).exit_code == 0
    deep = "[" * 5000 + "]" * 5000  # deeper than JSON decoding follows, shallower than the server refuses
    state_db.query(  # serial 1's whole document, and the job's row the current state is read from
        "UPDATE reconciler_state_versions SET document = jsonb_set(document, '{jobs}', %s::jsonb) "
        "WHERE document IS NOT NULL RETURNING serial",
        deep,
    )
    state_db.query("UPDATE reconciler_state_jobs SET record = %s::jsonb RETURNING name", deep)
    env = cli_env() | {"RECONCILER_STATE_URL": state_db.url, "RECONCILER_OWNER": OWNER}
    for command in (["status"], ["plan"], ["state", "show", "1"]):  # a process that never read it
        result = subprocess.run(
            [sys.executable, "-m", "reconciler", *command, *pg_repo.args()],
            env=env | {"RECONCILER_SANDBOX_URL": os.environ["RECONCILER_SANDBOX_URL"]},
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert result.returncode == 1, (command, result.stdout)
        (line,) = result.stderr.strip().splitlines()
        assert line == (
            f"error: {state_db.bare_url}: state is damaged (nested too deeply); kept as is; "
            "rebuild it from the live list with `reconciler reconcile --rebuild-state`"
        )


@pytest.mark.slow
def test_a_state_row_locked_by_someone_else_fails_apply_in_bounded_time_not_forever(
    pg_repo: UserRepo, sandbox: Sandbox, state_db: StateDb, run_cli: RunCli
) -> None:
    assert run_cli("apply", "--auto-approve", *pg_repo.args()).exit_code == 0
    pg_repo.write_job("second-job")
    env = cli_env() | {"RECONCILER_STATE_URL": state_db.url, "RECONCILER_OWNER": OWNER}
    env["RECONCILER_SANDBOX_URL"] = sandbox.base_url
    sandbox.reset_counts()
    with state_db.server.admin(state_db.name) as holder, holder.transaction():
        holder.execute("SELECT * FROM reconciler_state_heads FOR UPDATE")  # kept until the block ends
        child = subprocess.run(
            [sys.executable, "-m", "reconciler", "apply", "--auto-approve", *pg_repo.args()],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,  # without a lock_timeout the write waits as long as the row stays locked
            check=False,
        )
    assert child.returncode == 1, child.stdout
    (line,) = child.stderr.strip().splitlines()
    assert line == (
        f"error: {state_db.bare_url}: canceling statement due to lock timeout "
        "(another session held a state row past 10s); run again"
    )
    assert sandbox.request_counts().get("POST /v1/batches", 0) == 0  # the intent comes first


READ_ELSEWHERE = """
import json, sys
from pathlib import Path
from reconciler.engine.workspace import open_backend
with open_backend(Path("unused.json"), sys.argv[1], sys.argv[2]) as backend:
    state = backend.read()
print(json.dumps(state.model_dump(mode="json"), sort_keys=True))
"""


def _jobs(count: int) -> dict[str, JobState]:
    return {
        f"job-{i:03d}": JobState(generation="g1", provider="sandbox", status="completed")
        for i in range(count)
    }


def _read_elsewhere(state_db: StateDb, tag: str) -> dict[str, object]:
    done = subprocess.run(
        [sys.executable, "-c", READ_ELSEWHERE, state_db.url, tag],
        env=cli_env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    read: dict[str, object] = json.loads(done.stdout)
    return read


def test_a_write_stores_only_the_rows_of_the_jobs_it_changed(state_db: StateDb, tmp_path: Path) -> None:
    with (
        open_backend(tmp_path / "unused.json", state_db.url, "tag-a") as backend,
        backend.writer_lock("test"),
    ):
        first = backend.write(backend.read().with_jobs(_jobs(50)))
        state = backend.read()
        assert state is first  # the head did not move: no row of jobs read again
        changed = state.jobs["job-007"].model_copy(update={"status": "cancelled"})
        second = backend.write(state.with_jobs({**state.jobs, "job-007": changed}))
        third = backend.write(second.with_jobs({k: v for k, v in second.jobs.items() if k != "job-010"}))

    rows = state_db.query("SELECT name, serial FROM reconciler_state_jobs WHERE owner = 'tag-a'")
    assert len(rows) == 49 and {name for name, serial in rows if serial != first.serial} == {"job-007"}
    log = state_db.query(
        "SELECT serial, document IS NOT NULL, changes FROM reconciler_state_versions WHERE owner = 'tag-a' "
        "ORDER BY serial"
    )
    assert [(serial, whole) for serial, whole, _ in log] == [(1, True), (2, False), (3, False)]
    assert log[1][2] == {"jobs": {"job-007": changed.model_dump(mode="json")}, "set": {}}
    assert log[2][2] == {"jobs": {"job-010": None}, "set": {}}
    assert _read_elsewhere(state_db, "tag-a") == third.model_dump(mode="json")
    with open_backend(tmp_path / "unused.json", state_db.url, "tag-a") as backend:
        assert backend.version(2) == second and backend.version(1) == first  # rebuilt from the log
        assert [v.jobs for v in backend.history(5)] == [49, 50, 50]


def test_a_database_of_the_first_schema_is_read_then_written_as_rows(
    state_db: StateDb, tmp_path: Path
) -> None:
    with psycopg.connect(state_db.url, autocommit=True) as conn:  # what reconciler 0.x left behind
        conn.execute(MIGRATIONS[0])
        conn.execute("CREATE TABLE reconciler_schema (id integer PRIMARY KEY, version integer NOT NULL)")
        conn.execute("INSERT INTO reconciler_schema VALUES (1, 1)")
        document = State(serial=4, lineage="old", owner="tag-a").with_jobs(_jobs(3)).model_dump(mode="json")
        conn.execute(
            "INSERT INTO reconciler_state_versions (owner, serial, lineage, document) VALUES (%s, 4, 'old', %s)",
            ("tag-a", json.dumps(document)),
        )
        conn.execute("INSERT INTO reconciler_state_heads VALUES ('tag-a', 4, 'old')")

    with (
        open_backend(tmp_path / "unused.json", state_db.url, "tag-a") as backend,
        backend.writer_lock("test"),
    ):
        state = backend.read()
        assert state.serial == 4 and sorted(state.jobs) == ["job-000", "job-001", "job-002"]
        backend.write(state)
    assert state_db.query("SELECT version FROM reconciler_schema") == [(len(MIGRATIONS),)]
    assert state_db.query("SELECT count(*) FROM reconciler_state_jobs") == [(3,)]
    assert _read_elsewhere(state_db, "tag-a")["serial"] == 5
    with open_backend(tmp_path / "unused.json", state_db.url, "tag-a") as backend:
        assert backend.version(4).jobs == state.jobs  # the old versions stay readable


def test_a_job_row_written_before_intents_had_a_state_reads_as_todays(
    state_db: StateDb, tmp_path: Path
) -> None:
    intent = PendingCreate.planned("a-1", IntentKey.of("job-000", "g1", None, 0, 1), 5).uploaded("file-1")
    with (
        open_backend(tmp_path / "unused.json", state_db.url, "tag-a") as backend,
        backend.writer_lock("test"),
    ):
        job = JobState(generation="g1", provider="sandbox", status="pending", pending=(intent,))
        backend.write(backend.read().with_jobs({"job-000": job}))
    state_db.query(  # as format 3 wrote it
        "UPDATE reconciler_state_jobs SET record = record #- '{pending,0,state}' RETURNING name"
    )

    read = _read_elsewhere(state_db, "tag-a")  # a new process: the rows read, none remembered
    (stored,) = read["jobs"]["job-000"]["pending"]  # type: ignore[index]
    assert (stored["state"], stored["input_file_id"]) == (IntentState.UPLOADED, "file-1")
