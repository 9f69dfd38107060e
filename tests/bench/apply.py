"""Item 2: `reconciler apply` of new jobs against a sandbox with injected latency, against the
sequential floor (every request one after another: jobs x 2 x latency), against the same
requests sent by a bare httpx script and by an `openai` SDK script with 16 threads (what any
Python client gets from this sandbox on this machine), and with the old default of 16
requests at once.  Then how soon each of them sends its first request (first_request.py)."""

from __future__ import annotations

import statistics
import sys
import time

from tests.bench.context import Context
from tests.bench.data import BenchRepo, repo_with_jobs
from tests.bench.first_request import first_request_after, listener
from tests.bench.procs import Run, bench_env, cpu_seconds_of, reconciler_argv, run, warm_bytecode
from tests.bench.rivals import SDK_THREADS_SCRIPT
from tests.bench.sandbox import FAST_TIMELINE, ExternalSandbox, external_sandbox, total
from tests.bench.table import Row, info, load, ratio, seconds

MUTATING = ("POST /v1/files", "POST /v1/batches")
PARALLELISM = 16  # the scripts' threads, and the reconciler's default before the third round
FIRST_REQUEST_RUNS = 7

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
    return measure_throughput(ctx) + measure_first_request(ctx)


def measure_throughput(ctx: Context) -> list[Row]:
    jobs, latency = ctx.scale.apply_jobs, ctx.scale.latency
    warm_bytecode()
    folder = ctx.folder("apply")
    with external_sandbox(folder / "sandbox", latency_seconds=latency, **FAST_TIMELINE) as sandbox:
        best: tuple[Run, dict[str, int], float] | None = None
        bare: Run | None = None
        sdk: Run | None = None
        sixteen: Run | None = None
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
            _settle(sandbox)
            again = repo_with_jobs(folder / f"repo-{attempt}-16", jobs)
            old, _, _ = apply_new_jobs(sandbox, again, f"bench/apply16-{attempt}", "--parallelism", "16")
            sixteen = old if sixteen is None or old.seconds < sixteen.seconds else sixteen
    assert best is not None and bare is not None and sdk is not None and sixteen is not None
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
            f"best of {ctx.scale.repeats} each, same sandbox; {load()}",
        ),
        info(
            "2",
            "apply with --parallelism 16 (the default before), over the default",
            f"{ratio(sixteen.seconds / applied.seconds)} ({seconds(sixteen.seconds)})",
            f"best of {ctx.scale.repeats}",
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
    sandbox: ExternalSandbox, repo: BenchRepo, owner: str, *extra: str
) -> tuple[Run, dict[str, int], float]:
    """One `apply --auto-approve` as a subprocess: the run, the sandbox's request counts for
    just that run, and the CPU seconds the sandbox spent serving it."""
    env = bench_env({"RECONCILER_SANDBOX_URL": sandbox.base_url, "RECONCILER_OWNER": owner})
    sandbox.reset_counts()
    before = cpu_seconds_of(sandbox.pid)
    applied = run(reconciler_argv("apply", "--auto-approve", *extra, *repo.args()), env=env)
    return applied, sandbox.counts(), cpu_seconds_of(sandbox.pid) - before


def measure_first_request(ctx: Context) -> list[Row]:
    """How soon `apply` of new jobs sends its first request (their inputs already checked,
    as after a `plan`), against the SDK script's and the bare httpx script's first request and
    a bare `python -c pass`.  Medians, interleaved."""
    repo = repo_with_jobs(ctx.folder("first-request") / "repo", ctx.scale.apply_jobs)
    run(reconciler_argv("validate", *repo.args()))  # the inputs' digests, as a plan leaves them
    times: dict[str, list[float]] = {"ours": [], "sdk": [], "bare": [], "python": []}
    with listener() as served:
        ours = reconciler_argv("apply", "--auto-approve", *repo.args())
        ours_env = bench_env({"RECONCILER_SANDBOX_URL": served.base_url})
        sdk_env = bench_env({"OPENAI_BASE_URL": served.base_url, "OPENAI_API_KEY": "sk-bench"})
        bare = [sys.executable, "-c", BARE, served.base_url, str(PARALLELISM), str(repo.data)]
        sdk = [sys.executable, "-c", SDK_THREADS_SCRIPT, str(repo.data)]
        for _ in range(FIRST_REQUEST_RUNS):
            times["ours"].append(first_request_after(ours, ours_env, served))
            times["sdk"].append(first_request_after(sdk, sdk_env, served))
            times["bare"].append(first_request_after(bare, bench_env(), served))
            started = time.perf_counter()
            run([sys.executable, "-c", "pass"])
            times["python"].append(time.perf_counter() - started)
    median = {name: statistics.median(values) for name, values in times.items()}
    shown = f"median of {FIRST_REQUEST_RUNS}, interleaved"
    return [
        info("2", "first request of an `openai` SDK script (16 threads)", seconds(median["sdk"]), shown),
        info("2", "first request of a bare httpx script (16 threads)", seconds(median["bare"]), shown),
        info("2", "`python -c pass`", seconds(median["python"]), shown),
        Row(
            "2",
            f"apply of {ctx.scale.apply_jobs} new jobs: its first request leaves after",
            "≤ 0.2 s",
            f"{seconds(median['ours'])} ({ratio(median['ours'] / median['sdk'])} the SDK script's)",
            median["ours"] <= 0.2,
            f"{shown}; from process start; {load()}",
        ),
    ]


def _settle(sandbox: ExternalSandbox) -> None:
    time.sleep(0.2)  # earlier batches finish their (fast) timeline…
    sandbox.settle()  # …and the sandbox writes their results now, not during the next run


def _shown(counts: dict[str, int]) -> str:
    return ", ".join(f"{route} {n}" for route, n in sorted(counts.items()))
