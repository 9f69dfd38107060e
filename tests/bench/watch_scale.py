"""Item 11 (issue 19): the daemon's reaction to a new spec while it holds many converged jobs
and foreign batches newer than theirs fill the live list: spec written → batch created.
The batch is seen by polling the newest batch every 10 ms (an upper bound by that much)."""

from __future__ import annotations

import statistics
import time

import httpx

from tests.bench.context import Context
from tests.bench.daemon import running_daemon, wait_for
from tests.bench.sandbox import FAST_TIMELINE, external_sandbox
from tests.bench.seed import seed_foreign
from tests.bench.table import Row, info, seconds
from tests.bench.watch import finished_jobs, percentile, serial_of, spec_to_batch_latencies


def measure(ctx: Context) -> list[Row]:
    jobs, foreign = ctx.scale.lookup_jobs, ctx.scale.lookup_foreign
    folder = ctx.folder("watch-scale")
    with external_sandbox(folder / "sandbox", **FAST_TIMELINE) as sandbox:
        repo = finished_jobs(sandbox, folder / "repo", jobs)
        seed_foreign(sandbox, foreign)
        with running_daemon(sandbox, repo) as daemon, httpx.Client(base_url=sandbox.base_url) as client:
            serial = serial_of(repo)
            wait_for(lambda: serial_of(repo) > serial, 120, "the daemon's first pass")
            time.sleep(1.0)
            latencies = spec_to_batch_latencies(ctx, repo, client, daemon.created, timeout=60)
    p50, p95 = statistics.median(latencies), percentile(latencies, 0.95)
    shown = f"{jobs:,} jobs + {foreign:,} foreign batches"
    return [
        Row(
            "11",
            f"watch at scale: spec written → batch created, p50 ({shown})",
            "≤ 0.3 s",
            seconds(p50),
            p50 <= 0.3,
        ),
        Row("11", "watch at scale: p95", "≤ 0.6 s", seconds(p95), p95 <= 0.6, f"{len(latencies)} trials"),
        info("11", "watch at scale, best / worst", f"{seconds(min(latencies))} / {seconds(max(latencies))}"),
    ]
