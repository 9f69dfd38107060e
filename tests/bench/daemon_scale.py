"""Item 15 (issue 24): the daemon's reaction to a new spec while it holds 1,000 converged jobs
(and 450 foreign batches newer than theirs) and 10,000: spec written → its batch created, p50
and p95, beside the floor in the same run: a script that watches the specs folder with
watchfiles and, for each spec written, parses it, uploads its input and creates its batch with
httpx — what any watcher must at least do.  Both are seen the same way, by polling the
newest batch every 10 ms (an upper bound by that much), one trial at a time.  The daemon's CPU
per added spec is read from /proc over the trials."""

from __future__ import annotations

import contextlib
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.bench.context import Context
from tests.bench.daemon import running_daemon, wait_for
from tests.bench.data import BenchRepo, make_repo
from tests.bench.procs import bench_env, cpu_seconds_of, peak_rss_mb_of, warm_bytecode
from tests.bench.sandbox import FAST_TIMELINE, ExternalSandbox, external_sandbox
from tests.bench.seed import seed_foreign
from tests.bench.table import Row, info, mib
from tests.bench.watch import finished_jobs, percentile, spec_to_batch_latencies

# Jobs held, and foreign batches beside them, per scale: the two daemon rows.
SIZES = {"full": ((1_000, 450), (10_000, 0)), "quick": ((200, 90), (1_000, 0))}
TARGET_P50 = 0.3

# The floor: watchfiles' defaults (a burst ends after 50 ms without a change), one httpx client.
FLOOR_SCRIPT = """
import pathlib, sys, httpx, yaml
from watchfiles import Change, watch
specs = pathlib.Path(sys.argv[1])
client = httpx.Client(base_url=sys.argv[2], headers={"Authorization": "Bearer sk-bench"})
print("ready", flush=True)
for changes in watch(specs):
    for path in sorted({pathlib.Path(p) for change, p in changes if change != Change.deleted}):
        if path.suffix != ".yaml":
            continue
        spec = yaml.safe_load(path.read_text())
        name = spec["metadata"]["name"]
        data = (path.parent / spec["spec"]["input"]).read_bytes()
        upload = client.post("/files", files={"file": (name + ".jsonl", data)}, data={"purpose": "batch"})
        client.post("/batches", json={
            "input_file_id": upload.json()["id"], "endpoint": spec["spec"]["endpoint"],
            "completion_window": "24h", "metadata": {"reconciler_job": name},
        }).raise_for_status()
"""


def measure(ctx: Context) -> list[Row]:
    warm_bytecode()
    rows: list[Row] = []
    for jobs, foreign in SIZES[ctx.scale.name]:
        rows += _measure_size(ctx, jobs, foreign)
    return rows


def _measure_size(ctx: Context, jobs: int, foreign: int) -> list[Row]:
    folder = ctx.folder(f"daemon-scale-{jobs}")
    with external_sandbox(folder / "sandbox", **FAST_TIMELINE) as sandbox:
        repo = finished_jobs(sandbox, folder / "repo", jobs)
        if foreign:
            seed_foreign(sandbox, foreign)
        reaction = daemon_reaction(ctx, sandbox, repo, "trial")
        floor = floor_latencies(ctx, sandbox, folder / "floor")
    return _rows(jobs, foreign, reaction, floor)


@dataclass(frozen=True)
class Reaction:
    """A daemon started over a converged repo: its first (whole) pass, then one spec added at a
    time."""

    first_pass: float  # seconds from its start to its first pass done
    first_cpu: float  # CPU seconds by then
    latencies: list[float]  # spec written → its batch at the sandbox, one per trial
    cpu_per_spec: float  # the daemon's CPU over the trials, per trial
    peak_rss: float  # MiB, at the end


def daemon_reaction(
    ctx: Context,
    sandbox: ExternalSandbox,
    repo: BenchRepo,
    prefix: str,
    env: Mapping[str, str] | None = None,
    timeout: float = 600.0,
) -> Reaction:
    """Starts the daemon (`env`: a PostgreSQL state's URL, say), waits out its first pass and
    adds `ctx.scale.watch_trials` specs named `<prefix>-NN`."""
    with running_daemon(sandbox, repo, env) as daemon, httpx.Client(base_url=sandbox.base_url) as client:
        wait_for(lambda: daemon.logged("ready"), timeout, "the daemon's first pass")
        first_pass, first_cpu = daemon.arrived["ready"] - daemon.started, cpu_seconds_of(daemon.process.pid)
        time.sleep(1.0)
        cpu_before = cpu_seconds_of(daemon.process.pid)
        latencies = spec_to_batch_latencies(ctx, repo, client, daemon.created, timeout=timeout, prefix=prefix)
        cpu = (cpu_seconds_of(daemon.process.pid) - cpu_before) / len(latencies)
        rss = peak_rss_mb_of(daemon.process.pid)
    return Reaction(first_pass, first_cpu, latencies, cpu, rss)


def floor_latencies(ctx: Context, sandbox: ExternalSandbox, root: Path) -> list[float]:
    """The watchfiles + httpx floor's latencies, measured as the daemon's are."""
    repo = make_repo(root)
    with _floor(repo, sandbox) as started, httpx.Client(base_url=sandbox.base_url) as client:
        time.sleep(1.0)  # the watch is set up by now
        return spec_to_batch_latencies(
            ctx, repo, client, lambda name: started.poll() is None, timeout=120.0, prefix="floor"
        )


@contextlib.contextmanager
def _floor(repo: BenchRepo, sandbox: ExternalSandbox) -> Iterator[subprocess.Popen[str]]:
    argv = [sys.executable, "-c", FLOOR_SCRIPT, str(repo.specs), sandbox.base_url]
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True, env=bench_env())
    try:
        assert process.stdout is not None
        if process.stdout.readline().strip() != "ready":
            raise RuntimeError("the watchfiles + httpx floor did not start")
        yield process
    finally:
        process.terminate()
        process.wait(timeout=10)


def _rows(jobs: int, foreign: int, reaction: Reaction, floor: list[float]) -> list[Row]:
    held = f"{jobs:,} jobs" + (f" + {foreign:,} foreign" if foreign else "")
    return reaction_rows("15", held, reaction, floor)


def reaction_rows(item: str, held: str, reaction: Reaction, floor: list[float]) -> list[Row]:
    latencies = reaction.latencies
    p50, p95 = statistics.median(latencies), percentile(latencies, 0.95)
    floor50, floor95 = statistics.median(floor), percentile(floor, 0.95)
    return [
        info(
            item,
            f"daemon, {held}: first pass",
            _seconds(reaction.first_pass),
            f"CPU {_seconds(reaction.first_cpu)} (start-up included)",
        ),
        Row(
            item,
            f"daemon: spec written → batch created, p50 ({held})",
            f"≤ {TARGET_P50} s",
            _seconds(p50),
            p50 <= TARGET_P50,
            f"{len(latencies)} trials; load {_load()}",
        ),
        info(item, f"daemon, {held}: p95", _seconds(p95), f"best {_seconds(min(latencies))}"),
        info(
            item,
            "watchfiles + httpx floor, same run: p50 / p95",
            f"{_seconds(floor50)} / {_seconds(floor95)}",
        ),
        info(
            item,
            f"daemon, {held}: CPU per added spec",
            _seconds(reaction.cpu_per_spec),
            f"peak RSS {mib(reaction.peak_rss)}",
        ),
    ]


def _seconds(value: float) -> str:
    return f"{value:.3f} s"


def _load() -> str:
    """The load average (1, 5, 15 minutes): how busy the shared machine was."""
    return "/".join(f"{figure:.1f}" for figure in os.getloadavg())
