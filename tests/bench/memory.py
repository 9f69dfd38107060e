"""Item 6: peak RSS of the CLI while it uploads the big input, and while it downloads a big
output and writes the merged results. The sandbox runs in its own process, so its memory
(reported apart, from its VmHWM reset just before) is not mixed into the client's.

The output side uses embeddings: a 1,536-float vector per request makes a ~200 MB output
from an input well under the request limit (chat answers of the tiny model are short).
"""

from __future__ import annotations

import io
import math
import time
from typing import Any

import httpx

from tests.bench.context import MIB, Context
from tests.bench.data import EMBEDDINGS, embedding_request, make_repo, to_jsonl, write_embedding_input
from tests.bench.procs import Run, bench_env, reconciler_argv, run, warm_bytecode
from tests.bench.sandbox import FAST_TIMELINE, ExternalSandbox, external_sandbox
from tests.bench.table import Row, info, mib, seconds

LIMIT_MIB = 150


def measure(ctx: Context) -> list[Row]:
    warm_bytecode()
    return _upload(ctx) + _results(ctx)


def _upload(ctx: Context) -> list[Row]:
    repo = ctx.big_input_repo()
    size = (repo.data / "big.jsonl").stat().st_size
    with external_sandbox(ctx.folder("memory-upload"), **FAST_TIMELINE) as sandbox:
        sandbox.reset_peak_rss()
        applied = _cli(sandbox, "apply", "--auto-approve", *repo.args())
        server = sandbox.peak_rss_mb()
    return [
        Row(
            "6",
            f"apply uploading a {size / MIB:.0f} MiB input: CLI peak RSS",
            f"< {LIMIT_MIB} MiB",
            mib(applied.peak_rss_mb),
            applied.peak_rss_mb < LIMIT_MIB,
            f"{seconds(applied.seconds)}; sandbox's own peak {mib(server)}",
        )
    ]


def _results(ctx: Context) -> list[Row]:
    folder = ctx.folder("memory-results")
    repo = make_repo(folder / "repo")
    with external_sandbox(folder / "sandbox", **FAST_TIMELINE) as sandbox:
        requests = math.ceil(ctx.scale.output_mib * MIB / _output_line_bytes(sandbox))
        write_embedding_input(repo.data / "vectors.jsonl", requests)
        repo.write_job("vectors", "vectors.jsonl", endpoint=EMBEDDINGS, results="vectors.jsonl")
        _cli(sandbox, "apply", "--auto-approve", *repo.args())
        output = _wait_until_complete(sandbox)
        collected = _cli(sandbox, "reconcile", *repo.args())
    written = (repo.root / "results" / "vectors.jsonl").stat().st_size
    return [
        info("6", "output file (embeddings)", f"{output / MIB:.0f} MiB, {requests:,} requests"),
        Row(
            "6",
            "reconcile downloading it and writing merged results: CLI peak RSS",
            f"< {LIMIT_MIB} MiB",
            mib(collected.peak_rss_mb),
            collected.peak_rss_mb < LIMIT_MIB,
            f"{seconds(collected.seconds)}; results file {written / MIB:.0f} MiB",
        ),
    ]


def _cli(sandbox: ExternalSandbox, *args: str) -> Run:
    return run(reconciler_argv(*args), env=bench_env({"RECONCILER_SANDBOX_URL": sandbox.base_url}))


def _output_line_bytes(sandbox: ExternalSandbox, sample: int = 20) -> float:
    """The size of one output line, from a small batch on the same sandbox."""
    with httpx.Client(base_url=sandbox.base_url, timeout=60) as client:
        files = {"file": ("sample.jsonl", io.BytesIO(to_jsonl(embedding_request(i) for i in range(sample))))}
        upload = client.post("/files", data={"purpose": "batch"}, files=files).json()
        body = {"input_file_id": upload["id"], "endpoint": EMBEDDINGS, "completion_window": "24h"}
        client.post("/batches", json=body).raise_for_status()
    return _wait_until_complete(sandbox) / sample


def _wait_until_complete(sandbox: ExternalSandbox) -> int:
    """Waits (reading with a long timeout: the sandbox writes the output inside that request)
    until the one batch completed; returns its output file's size."""
    with httpx.Client(base_url=sandbox.base_url, timeout=900) as client:
        deadline = time.monotonic() + 900
        while time.monotonic() < deadline:
            batch: dict[str, Any] = client.get("/batches", params={"limit": 1}).json()["data"][0]
            if batch["status"] == "completed":
                found = client.get(f"/files/{batch['output_file_id']}").json()
                return int(found["bytes"])
            time.sleep(0.2)
    raise RuntimeError("the batch did not complete")
