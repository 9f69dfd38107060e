"""Item 2: `reconciler apply` of new jobs against a sandbox with injected latency, against the
sequential floor (every request one after another: jobs x 2 x latency), and against the same
requests sent by a bare httpx script with the same concurrency: what any Python client gets
from this sandbox on this machine."""

from __future__ import annotations

import sys
import time

from tests.bench.context import Context
from tests.bench.data import BenchRepo, repo_with_jobs
from tests.bench.procs import Run, bench_env, cpu_seconds_of, reconciler_argv, run, warm_bytecode
from tests.bench.rivals import SDK_THREADS_SCRIPT
from tests.bench.sandbox import FAST_TIMELINE, ExternalSandbox, external_sandbox, total
from tests.bench.table import Row, info, ratio, seconds

MUTATING = ("POST /v1/files", "POST /v1/batches")
PARALLELISM = 16  # the reconciler's default

# Upload + create per input file, PARALLELISM at a time: the requests apply sends, nothing else.
BARE = """
import sys, pathlib, httpx
from concurrent.futures import ThreadPoolExecutor
url, workers, files = sys.argv[1], int(sys.argv[2]), sorted(pathlib.Path(sys.argv[3]).glob("*.jsonl"))
client = httpx.Client(base_url=url, verify=False, limits=httpx.Limits(max_connections=64))
def one(path):
    with path.open("rb") as f:
        uploaded = client.post("/files", data={"purpose": "batch"}, files={"file": (path.name, f)}).json()
    body = {"input_file_id": uploaded["id"], "endpoint": "/v1/chat/completions", "completion_window": "24h"}
    client.post("/batches", json=body).raise_for_status()
with ThreadPoolExecutor(workers) as pool:
    list(pool.map(one, files))
"""


def measure(ctx: Context) -> list[Row]:
    jobs, latency = ctx.scale.apply_jobs, ctx.scale.latency
    warm_bytecode()
    folder = ctx.folder("apply")
    with external_sandbox(folder / "sandbox", latency_seconds=latency, **FAST_TIMELINE) as sandbox:
        best: tuple[Run, dict[str, int], float] | None = None
        bare: Run | None = None
        sdk: Run | None = None
        for attempt in range(ctx.scale.repeats):
            repo = repo_with_jobs(folder / f"repo-{attempt}", jobs)
            _settle(sandbox)
            applied, counts, server_cpu = apply_new_jobs(sandbox, repo, owner=f"bench/apply-{attempt}")
            if best is None or applied.seconds < best[0].seconds:
                best = (applied, counts, server_cpu)
            _settle(sandbox)
            script = run([sys.executable, "-c", BARE, sandbox.base_url, str(PARALLELISM), str(repo.data)])
            bare = script if bare is None or script.seconds < bare.seconds else bare
            _settle(sandbox)
            env = bench_env({"OPENAI_BASE_URL": sandbox.base_url, "OPENAI_API_KEY": "sk-bench"})
            threads = run([sys.executable, "-c", SDK_THREADS_SCRIPT, str(repo.data)], env=env)
            sdk = threads if sdk is None or threads.seconds < sdk.seconds else sdk
    assert best is not None and bare is not None and sdk is not None
    applied, counts, server_cpu = best
    floor = jobs * len(MUTATING) * latency
    speedup = floor / applied.seconds
    per_job = total(counts, *MUTATING) / jobs
    return [
        info("2", f"sequential floor: {jobs} jobs x 2 requests x {latency * 1000:.0f} ms", seconds(floor)),
        info(
            "2",
            f"same uploads + creates from a bare httpx script, {PARALLELISM} threads",
            f"{seconds(bare.seconds)} ({ratio(floor / bare.seconds)} the floor)",
            "what this sandbox serves on this machine, start-up included",
        ),
        Row(
            "2",
            f"apply {jobs} new jobs ({latency * 1000:.0f} ms latency), speed-up over the floor",
            "≥ 8x",
            f"{ratio(speedup)} ({seconds(applied.seconds)})",
            speedup >= 8,
            f"whole CLI run; client CPU {seconds(applied.cpu_seconds)}, sandbox CPU {seconds(server_cpu)}",
        ),
        Row(
            "2",
            f"apply vs an `openai` SDK script, {PARALLELISM} threads, same uploads + creates",
            "≥ 1.5x faster",
            f"{ratio(sdk.seconds / applied.seconds)} ({seconds(sdk.seconds)} for the script)",
            sdk.seconds / applied.seconds >= 1.5,
            "issue 19",
        ),
        Row(
            "2",
            "apply: upload + create requests per job",
            "≤ 2",
            f"{per_job:.2f} ({total(counts)} requests in all)",
            per_job <= 2,
            _shown(counts),
        ),
    ]


def apply_new_jobs(
    sandbox: ExternalSandbox, repo: BenchRepo, owner: str
) -> tuple[Run, dict[str, int], float]:
    """One `apply --auto-approve` as a subprocess: the run, the sandbox's request counts for
    just that run, and the CPU seconds the sandbox spent serving it."""
    env = bench_env({"RECONCILER_SANDBOX_URL": sandbox.base_url, "RECONCILER_OWNER": owner})
    sandbox.reset_counts()
    before = cpu_seconds_of(sandbox.pid)
    applied = run(reconciler_argv("apply", "--auto-approve", *repo.args()), env=env)
    return applied, sandbox.counts(), cpu_seconds_of(sandbox.pid) - before


def _settle(sandbox: ExternalSandbox) -> None:
    time.sleep(0.2)  # earlier batches finish their (fast) timeline…
    sandbox.settle()  # …and the sandbox writes their results now, not during the next run


def _shown(counts: dict[str, int]) -> str:
    return ", ".join(f"{route} {n}" for route, n in sorted(counts.items()))
