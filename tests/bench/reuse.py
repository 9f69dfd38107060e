"""Item 13 (issue 23): incremental runs.  A 50,000-request embeddings job (5,000 at quick scale)
with `spec.reuse`, run once in full, then with 1% of its requests changed: the requests sent,
the bytes uploaded and the plan's wall time, against a full run (`--no-reuse`).

`reconcile --wait` read the full run's answers into the store; the first plan after the edit
hashes the new input's requests (their identities, kept beside the input index by its digest),
the next plans read them from there: both are shown.  A plan writes nothing else.  Vectors of 64 dimensions
keep the sandbox's output small: what is measured is the reconciler's work, not the model's.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx

from tests.bench.context import Context
from tests.bench.data import embedding_request, make_repo, write_lines
from tests.bench.procs import bench_env, best_of, reconciler_argv, run, warm_bytecode
from tests.bench.sandbox import FAST_TIMELINE, ExternalSandbox, external_sandbox
from tests.bench.table import Row, info, ratio, seconds

CHANGED_SHARE = 0.01
SPEC = """\
apiVersion: reconciler/v1
kind: BatchJob
metadata: {name: emb}
spec:
  endpoint: /v1/embeddings
  input: ../data/emb.jsonl
  results: ../results/emb-{run}.jsonl
  split: {max_requests: 50000}
  reuse: {max_age: 30d}
"""


def measure(ctx: Context) -> list[Row]:
    warm_bytecode()
    requests = ctx.scale.big_requests
    changed = max(1, int(requests * CHANGED_SHARE))
    folder = ctx.folder("reuse")
    with external_sandbox(folder / "sandbox", **FAST_TIMELINE) as sandbox:
        repo = make_repo(folder / "repo")
        (repo.specs / "emb.yaml").write_text(SPEC, encoding="utf-8")
        env = bench_env({"RECONCILER_SANDBOX_URL": sandbox.base_url, "RECONCILER_OWNER": "bench/reuse"})
        write_lines(repo.data / "emb.jsonl", (_request(i) for i in range(1, requests + 1)))
        full = _reconciled(sandbox, repo.args(), env)
        write_lines(
            repo.data / "emb.jsonl", (_request(i, edited=i <= changed) for i in range(1, requests + 1))
        )
        cold = run(reconciler_argv("plan", *repo.args()), env=env)
        warm = best_of(max(ctx.scale.repeats, 2), reconciler_argv("plan", *repo.args()), env=env)
        without = best_of(
            max(ctx.scale.repeats, 2), reconciler_argv("plan", "--no-reuse", *repo.args()), env=env
        )
        incremental = _reconciled(sandbox, repo.args(), env)
        results = _results_lines(repo.root)
    shown = f"{requests:,} embeddings requests, {changed:,} changed"
    return [
        Row(
            "13",
            f"requests sent, {shown}",
            f"= {changed:,}",
            f"{incremental['requests']:,} (full run: {full['requests']:,})",
            incremental["requests"] == changed,
            f"results file: {results:,} lines",
        ),
        Row(
            "13",
            "bytes uploaded, the same",
            f"≤ {ratio(CHANGED_SHARE * 2)} of a full run",
            f"{incremental['bytes']:,} B (full run: {full['bytes']:,} B)",
            incremental["bytes"] <= full["bytes"] * CHANGED_SHARE * 2,
        ),
        info(
            "13",
            "plan wall time with reuse: hashing the edited input once, then its identities kept",
            f"{seconds(cold.seconds)}, then {seconds(warm.seconds)}",
            f"client CPU {seconds(cold.cpu_seconds)} / {seconds(warm.cpu_seconds)}",
        ),
        info(
            "13",
            "plan wall time, --no-reuse (a full run's plan)",
            seconds(without.seconds),
            f"with reuse, warm: {ratio(warm.seconds / without.seconds)} of it",
        ),
    ]


def _request(index: int, *, edited: bool = False) -> dict[str, Any]:
    line = embedding_request(index)
    body = {**line["body"], "dimensions": 64}
    if edited:
        body["input"] = f"{body['input']} (edited)"
    return {**line, "body": body}


def _reconciled(sandbox: ExternalSandbox, args: list[str], env: dict[str, str]) -> dict[str, int]:
    """Runs `reconcile --wait`; the requests and bytes its new batches were sent."""
    before = set(_batches(sandbox))
    run(reconciler_argv("reconcile", "--wait", "--timeout", "1800", *args), env=env, timeout=1800)
    new = [b for b in _batches(sandbox).values() if b["id"] not in before]
    sent = sum((b.get("request_counts") or {}).get("total", 0) for b in new)
    uploaded = sum(_file_bytes(sandbox, b["input_file_id"]) for b in new)
    return {"requests": sent, "bytes": uploaded}


def _batches(sandbox: ExternalSandbox) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    after = None
    while True:
        params: dict[str, Any] = {"limit": 100} | ({"after": after} if after else {})
        page = httpx.get(f"{sandbox.base_url}/batches", params=params, timeout=600).json()
        found |= {b["id"]: b for b in page["data"]}
        if not page.get("has_more") or not page["data"]:
            return found
        after = page["data"][-1]["id"]


def _file_bytes(sandbox: ExternalSandbox, file_id: str) -> int:
    return int(httpx.get(f"{sandbox.base_url}/files/{file_id}", timeout=60).json()["bytes"])


def _results_lines(root: Path) -> int:
    state = json.loads((root / ".reconciler" / "state.json").read_text(encoding="utf-8"))
    path = root / state["jobs"]["emb"]["results"]["path"]
    with path.open("rb") as stream:
        return sum(1 for _ in stream)
