"""Items 5 and 7: the daemon (`reconciler reconcile --watch`) as a subprocess.

5: a spec file written → its batch live at the sandbox; the batch is seen by polling the
   newest batch every 10 ms, so the figure is an upper bound by at most that.
7: finished jobs watched while nothing changes: requests at the sandbox and the daemon's
   CPU time (from /proc) over the idle period.
"""

from __future__ import annotations

import functools
import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from tests.bench.context import Context
from tests.bench.daemon import running_daemon, wait_for
from tests.bench.data import BenchRepo, make_repo, repo_with_jobs, write_chat_input
from tests.bench.procs import bench_env, cpu_seconds_of, peak_rss_mb_of, reconciler_argv, run, warm_bytecode
from tests.bench.sandbox import FAST_TIMELINE, ExternalSandbox, external_sandbox, total
from tests.bench.seed import seed_owned
from tests.bench.table import Row, info, mib, seconds

POLL_SECONDS = 0.01


def spec_to_batch_latencies(
    ctx: Context,
    repo: BenchRepo,
    client: httpx.Client,
    done: Callable[[str], bool],
    *,
    timeout: float,
    prefix: str = "trial",
) -> list[float]:
    """Seconds from each trial spec (`<prefix>-NN`) written to its batch live, one trial at a
    time; `done(name)`: the watcher has finished with that trial (a daemon: its pass logged)."""
    latencies: list[float] = []
    for trial in range(ctx.scale.watch_trials):
        name = f"{prefix}-{trial:02d}"
        write_chat_input(repo.data / f"{name}.jsonl", 5, 1024)
        time.sleep(0.3)  # an input no spec names yet wakes nobody; make sure of it
        started = time.perf_counter()
        repo.write_job(name, f"{name}.jsonl")
        wait_for_batch(client, name, started + timeout)
        latencies.append(time.perf_counter() - started)
        wait_for(functools.partial(done, name), timeout, f"the pass that created {name}")
        time.sleep(0.3)
    return latencies


def measure_latency(ctx: Context) -> list[Row]:
    warm_bytecode()
    folder = ctx.folder("watch-latency")
    repo = make_repo(folder / "repo")
    write_chat_input(repo.data / "first.jsonl", 5, 1024)
    repo.write_job("first", "first.jsonl")
    with (
        external_sandbox(folder / "sandbox", **FAST_TIMELINE) as sandbox,
        running_daemon(sandbox, repo) as daemon,
    ):
        wait_for(lambda: daemon.logged("action", "first"), 60, "the daemon's first pass")
        with httpx.Client(base_url=sandbox.base_url, timeout=30) as client:
            latencies = spec_to_batch_latencies(ctx, repo, client, daemon.created, timeout=30)
    p50 = statistics.median(latencies)
    p95 = percentile(latencies, 0.95)
    shown = f"{len(latencies)} trials, no injected latency"
    return [
        Row("5", f"watch: spec written → batch created, p50 ({shown})", "≤ 0.5 s", seconds(p50), p50 <= 0.5),
        Row("5", "watch: spec written → batch created, p95", "≤ 1 s", seconds(p95), p95 <= 1.0),
        info("5", "watch latency, best / worst", f"{seconds(min(latencies))} / {seconds(max(latencies))}"),
    ]


def wait_for_batch(client: httpx.Client, job: str, deadline: float) -> None:
    while time.perf_counter() < deadline:
        newest = client.get("/batches", params={"limit": 1}).json()["data"]
        if newest and (newest[0].get("metadata") or {}).get("reconciler_job") == job:
            return
        time.sleep(POLL_SECONDS)
    raise RuntimeError(f"no batch for {job}")


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def measure_idle(ctx: Context) -> list[Row]:
    warm_bytecode()
    jobs, idle = ctx.scale.idle_jobs, ctx.scale.idle_seconds
    folder = ctx.folder("watch-idle")
    with external_sandbox(folder / "sandbox", **FAST_TIMELINE) as sandbox:
        repo = finished_jobs(sandbox, folder / "repo", jobs)
        with running_daemon(sandbox, repo) as daemon:
            serial = serial_of(repo)
            wait_for(lambda: serial_of(repo) > serial, 120, "the daemon's first pass")
            time.sleep(3.0)  # a pass the first one scheduled, if any, is done by now
            sandbox.reset_counts()
            cpu_before = cpu_seconds_of(daemon.process.pid)
            time.sleep(idle)
            cpu = cpu_seconds_of(daemon.process.pid) - cpu_before
            requests = total(sandbox.counts())
            rss = peak_rss_mb_of(daemon.process.pid)
    share = cpu / idle
    shown = f"{jobs:,} finished jobs, {idle:.0f} s"
    return [
        Row("7", f"idle daemon: requests ({shown})", "0", str(requests), requests == 0),
        Row("7", "idle daemon: CPU", "< 1%", f"{share:.2%} ({cpu:.2f} s)", share < 0.01),
        info("7", "idle daemon: peak RSS", mib(rss)),
    ]


def finished_jobs(sandbox: ExternalSandbox, root: Path, count: int) -> BenchRepo:
    """`count` jobs whose batches completed, recorded as completed in the state."""
    repo = repo_with_jobs(root, count, requests=5, shared_inputs=10)
    seed_owned(sandbox, repo)
    time.sleep(0.3)
    sandbox.settle()
    run(
        reconciler_argv("reconcile", *repo.args()),
        env=bench_env({"RECONCILER_SANDBOX_URL": sandbox.base_url}),
    )
    statuses = {job["status"] for job in json.loads(repo.state.read_text())["jobs"].values()}
    if statuses != {"completed"}:
        raise RuntimeError(f"jobs not finished before the idle measurement: {sorted(statuses)}")
    return repo


def serial_of(repo: BenchRepo) -> int:
    try:
        return int(json.loads(repo.state.read_text())["serial"])
    except (OSError, ValueError, KeyError):
        return -1
