"""Item 14: 100,000 jobs, measured rather than projected.  `plan` over 100,000 converged jobs
(their batches created over HTTP, adopted by one `reconcile` and finished, as item 15's are),
with the state in a file and in PostgreSQL: wall time, CPU and peak RSS against an `openai`
SDK script listing the same batches, and what the state takes per job in each backend.  Then
the daemon over the same jobs on each backend, as item 15 measures it: its first (whole) pass,
a spec added at a time (spec written → its batch created, beside the watchfiles + httpx floor
in the same run), its CPU per added spec and its peak RSS.

The PostgreSQL server is a throwaway cluster (tests/fixtures/postgres.py); its size per job
is the database's growth over the adopting `reconcile`, whatever the schema keeps."""

from __future__ import annotations

import sys
import time

from tests.bench.context import Context
from tests.bench.daemon_scale import daemon_reaction, floor_latencies, reaction_rows
from tests.bench.plans import plan_argv
from tests.bench.procs import Run, bench_env, reconciler_argv, run, warm_bytecode
from tests.bench.rivals import SDK_LIST_SCRIPT
from tests.bench.sandbox import FAST_TIMELINE, external_sandbox
from tests.bench.table import Row, info, load, mib, ratio, seconds
from tests.bench.watch import finished_jobs
from tests.fixtures.postgres import StateDb, new_database, running_server

LONG = 4 * 3600.0  # a safety net for one run at this size on a busy machine


def measure(ctx: Context) -> list[Row]:
    warm_bytecode()
    count = ctx.scale.huge_jobs
    folder = ctx.folder("huge")
    with external_sandbox(folder / "sandbox", **FAST_TIMELINE) as sandbox:
        started = time.perf_counter()
        repo = finished_jobs(sandbox, folder / "repo", count)
        seeded = time.perf_counter() - started
        env = bench_env({"RECONCILER_SANDBOX_URL": sandbox.base_url})
        on_file = run(plan_argv(repo, []), env=env, timeout=LONG)
        sdk_env = bench_env({"OPENAI_BASE_URL": sandbox.base_url, "OPENAI_API_KEY": "sk-bench"})
        listing = run([sys.executable, "-c", SDK_LIST_SCRIPT], env=sdk_env, timeout=LONG)
        state_bytes = repo.state.stat().st_size
        floor = floor_latencies(ctx, sandbox, folder / "floor")
        on_file_daemon = daemon_reaction(ctx, sandbox, repo, "file-trial", timeout=LONG)
        with running_server() as server, new_database(server) as db:
            pg_env = env | {"RECONCILER_STATE_URL": db.url}
            before = _database_bytes(db)
            adopted = run(reconciler_argv("reconcile", *repo.args()), env=pg_env, timeout=LONG)
            database_bytes = _database_bytes(db) - before
            in_postgres = run(plan_argv(repo, []), env=pg_env, timeout=LONG)
            in_postgres_daemon = daemon_reaction(
                ctx, sandbox, repo, "pg-trial", {"RECONCILER_STATE_URL": db.url}, timeout=LONG
            )
    shown = f"{count:,} converged jobs"
    return [
        info("14", f"{shown}: batches created and adopted (set-up)", seconds(seeded)),
        info(
            "14",
            f"openai SDK script listing the same {count:,} batches",
            seconds(listing.seconds),
            f"CPU {seconds(listing.cpu_seconds)}",
        ),
        *_plan_rows(f"plan, {shown}, state file", on_file, listing),
        info(
            "14",
            "state file per job",
            f"{state_bytes / count / 1024:.2f} KiB",
            f"{state_bytes / 2**20:.0f} MiB",
        ),
        info(
            "14",
            f"reconcile adopting {count:,} jobs into PostgreSQL",
            seconds(adopted.seconds),
            f"CPU {seconds(adopted.cpu_seconds)}, peak RSS {mib(adopted.peak_rss_mb)}",
        ),
        *_plan_rows(f"plan, {shown}, state in PostgreSQL", in_postgres, listing),
        info(
            "14",
            "PostgreSQL: database growth per job",
            f"{database_bytes / count / 1024:.2f} KiB",
            f"{database_bytes / 2**20:.0f} MiB over the adopting reconcile",
        ),
        *reaction_rows("14", f"{count:,} jobs, state file", on_file_daemon, floor),
        *reaction_rows("14", f"{count:,} jobs, state in PostgreSQL", in_postgres_daemon, floor),
    ]


def _plan_rows(figure: str, plan: Run, listing: Run) -> list[Row]:
    times = plan.seconds / listing.seconds
    return [
        Row(
            "14",
            f"{figure}, over that script",
            "≤ 1.2x",
            f"{ratio(times)} ({seconds(plan.seconds)})",
            times <= 1.2,
            f"CPU {seconds(plan.cpu_seconds)}; one run each; {load()}",
        ),
        info("14", f"{figure}: peak RSS", mib(plan.peak_rss_mb)),
    ]


def _database_bytes(db: StateDb) -> int:
    (size,) = db.query("SELECT pg_database_size(current_database())")[0]
    assert isinstance(size, int)
    return size
