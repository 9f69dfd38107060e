"""Item 3: what a plan costs. Requests per plan with owned and foreign batches live, and plan
wall time over a growing number of converged specs (no injected latency: every list page
adds one round trip on top, which the request count bounds).

Batches stay `validating` here (a long validation knob), so the sandbox does no lazy work
while a plan lists them: the figures are the client's.
"""

from __future__ import annotations

import math
import statistics
import sys
from pathlib import Path

from tests.bench.context import Context
from tests.bench.data import BenchRepo, repo_with_jobs
from tests.bench.procs import Run, bench_env, best_of, reconciler_argv, run, warm_bytecode
from tests.bench.rivals import SDK_LIST_SCRIPT
from tests.bench.sandbox import ExternalSandbox, external_sandbox, total
from tests.bench.seed import seed_foreign, seed_owned
from tests.bench.table import Row, info, load, mib, ratio, seconds

STILL = {
    "validation_seconds": 30_000_000
}  # batches stay `validating` for the whole run (a year is the knob's cap)


def measure(ctx: Context) -> list[Row]:
    warm_bytecode()
    return measure_requests(ctx) + measure_curve(ctx)


def measure_requests(ctx: Context) -> list[Row]:
    owned, foreign = ctx.scale.plan_owned, ctx.scale.plan_foreign
    folder = ctx.folder("plan-requests")
    with external_sandbox(folder / "sandbox", **STILL) as sandbox:
        repo = converged_repo(sandbox, folder / "repo", owned)
        seed_foreign(sandbox, foreign)  # newer than ours: a plan must page past all of them
        bound = math.ceil((owned + foreign) / 100) + 3
        converged = plan_requests(sandbox, repo, [])
        lost = plan_requests(sandbox, repo, ["--state", str(folder / "elsewhere" / "state.json")])
    shown = f"{owned:,} owned + {foreign:,} foreign live"
    return [
        Row("3", f"plan requests, converged, {shown}", f"≤ {bound}", str(converged), converged <= bound),
        Row(
            "3",
            f"plan requests, state file lost, {shown}",
            f"≤ {bound}",
            str(lost),
            lost <= bound,
            "every owned batch found in the list (adopt)",
        ),
    ]


def measure_curve(ctx: Context) -> list[Row]:
    timings: dict[int, Run] = {}
    largest: list[Row] = []
    for count in ctx.scale.curve:
        folder = ctx.folder(f"plan-curve-{count}")
        with external_sandbox(folder / "sandbox", **STILL) as sandbox:
            repo = converged_repo(sandbox, folder / "repo", count)
            env = bench_env({"RECONCILER_SANDBOX_URL": sandbox.base_url})
            runs = 3 if count <= 1_000 else 2  # the best of several
            timings[count] = best_of(runs, plan_argv(repo, []), env=env)
            if count == max(ctx.scale.curve):
                largest = _against_sdk_listing(sandbox, repo, count, timings[count])
                largest += _per_job(timings, repo)
    rows = [
        info(
            "3",
            f"plan wall time, {n:,} converged specs",
            seconds(r.seconds),
            f"client CPU {seconds(r.cpu_seconds)}, peak RSS {r.peak_rss_mb:.0f} MiB",
        )
        for n, r in timings.items()
    ]
    if len(timings) >= 3:
        rows.append(_linearity(timings))
    if 1_000 in timings:
        took = timings[1_000].seconds
        rows.append(Row("3", "plan, 1,000 converged specs", "< 1.5 s", seconds(took), took < 1.5))
    return rows + largest


def _against_sdk_listing(sandbox: ExternalSandbox, repo: BenchRepo, count: int, plan: Run) -> list[Row]:
    """Issue 19: `plan` over `count` converged specs against an `openai` SDK script that only
    lists the same batches (every page), run right after it against the same sandbox."""
    env = bench_env({"OPENAI_BASE_URL": sandbox.base_url, "OPENAI_API_KEY": "sk-bench"})
    listing = best_of(3 if count <= 1_000 else 2, [sys.executable, "-c", SDK_LIST_SCRIPT], env=env)
    times = plan.seconds / listing.seconds
    return [
        info(
            "10",
            f"openai SDK script listing the same {count:,} batches",
            seconds(listing.seconds),
            f"CPU {seconds(listing.cpu_seconds)}",
        ),
        Row(
            "10",
            f"plan, {count:,} converged specs, over that script",
            "≤ 1.2x",
            f"{ratio(times)} ({seconds(plan.seconds)})",
            times <= 1.2,
            f"CPU {ratio(plan.cpu_seconds / listing.cpu_seconds)} the script's; best of 2 each; {load()}",
        ),
        Row(
            "10",
            f"plan, {count:,} converged specs: peak RSS",
            "≤ 120 MiB",
            mib(plan.peak_rss_mb),
            plan.peak_rss_mb <= 120,
        ),
    ]


def measure_with_foreign(ctx: Context) -> list[Row]:
    """`plan` over converged specs with foreign batches newer than ours in the list, against
    an `openai` SDK script listing the same batches: medians of 5 each, interleaved."""
    owned, foreign = ctx.scale.lookup_jobs, ctx.scale.lookup_foreign
    folder = ctx.folder("plan-foreign")
    with external_sandbox(folder / "sandbox", **STILL) as sandbox:
        repo = converged_repo(sandbox, folder / "repo", owned)
        seed_foreign(sandbox, foreign)
        env = bench_env({"RECONCILER_SANDBOX_URL": sandbox.base_url})
        sdk_env = bench_env({"OPENAI_BASE_URL": sandbox.base_url, "OPENAI_API_KEY": "sk-bench"})
        run(plan_argv(repo, []), env=env)
        plans, listings = [], []
        for _ in range(5):
            plans.append(run(plan_argv(repo, []), env=env).seconds)
            listings.append(run([sys.executable, "-c", SDK_LIST_SCRIPT], env=sdk_env).seconds)
    took, listed = statistics.median(plans), statistics.median(listings)
    shown = f"{owned:,} converged + {foreign:,} foreign live"
    return [
        info(
            "10",
            f"openai SDK script listing the same {owned + foreign:,} batches",
            seconds(listed),
            "median of 5",
        ),
        Row(
            "10",
            f"plan, {shown}, over that script",
            "≤ 0.8x",
            f"{ratio(took / listed)} ({seconds(took)})",
            took / listed <= 0.8,
            f"median of 5 each, interleaved; {load()}",
        ),
    ]


def _per_job(timings: dict[int, Run], repo: BenchRepo) -> list[Row]:
    """Peak RSS a thousand more converged jobs add to a plan (between the two largest points of
    the curve), and the state file's size per job."""
    small, large = sorted(timings)[-2:]
    grown = (timings[large].peak_rss_mb - timings[small].peak_rss_mb) / (large - small) * 1000
    state = repo.state.stat().st_size
    return [
        Row(
            "10",
            f"plan: peak RSS per 1,000 converged jobs ({small:,} → {large:,})",
            "≤ 7 MiB",
            f"{grown:.1f} MiB",
            grown <= 7,
            f"{mib(timings[small].peak_rss_mb)} → {mib(timings[large].peak_rss_mb)}",
        ),
        info(
            "10",
            "state file per job (file backend)",
            f"{state / large / 1024:.2f} KiB",
            f"{state / 2**20:.1f} MiB for {large:,} jobs",
        ),
    ]


def _linearity(timings: dict[int, Run]) -> Row:
    """Client CPU for one more spec in the largest step against the first step: 1x is linear.
    CPU, not wall time: the sandbox's list pages cost it more as it holds more batches."""
    small, middle, large = sorted(timings)[:1] + sorted(timings)[-2:]
    first = (timings[middle].cpu_seconds - timings[small].cpu_seconds) / (middle - small)
    last = (timings[large].cpu_seconds - timings[middle].cpu_seconds) / (large - middle)
    growth = last / max(first, 1e-9)
    return Row(
        "3",
        f"plan: client CPU per added spec, {middle:,}→{large:,} vs {small:,}→{middle:,}",
        "≤ 1.5x (1x = linear; the rest is noise)",
        f"{growth:.2f}x ({first * 1000:.2f} → {last * 1000:.2f} ms a spec)",
        growth <= 1.5,
    )


def converged_repo(sandbox: ExternalSandbox, root: Path, count: int) -> BenchRepo:
    """`count` jobs sharing ten small inputs, each with its batch live and recorded."""
    repo = repo_with_jobs(root, count, requests=5, shared_inputs=10)
    seed_owned(sandbox, repo)
    return repo


def plan_requests(sandbox: ExternalSandbox, repo: BenchRepo, extra: list[str]) -> int:
    env = bench_env({"RECONCILER_SANDBOX_URL": sandbox.base_url})
    sandbox.reset_counts()
    run(plan_argv(repo, extra), env=env)
    return total(sandbox.counts())


def plan_argv(repo: BenchRepo, extra: list[str]) -> list[str]:
    return reconciler_argv("plan", *repo.args(*extra))
