"""Thousands of live batches, fast: created straight over HTTP with the metadata the reconciler
would have given them, then adopted into the state by one `reconciler reconcile`.

Setting up 10,000 converged jobs through `apply` would cost 20,000 requests; here one upload
serves every batch (the plan never looks at input file ids), so the suite stays in minutes.
What is measured afterwards, a plan or an idle daemon, cannot tell the difference.
"""

from __future__ import annotations

import io
import os
import uuid
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx

from reconciler.common import ownership
from reconciler.engine.workspace import prepare
from reconciler.specs import identity
from reconciler.specs.repo import resolve_paths
from tests.bench.data import BenchRepo, chat_request, to_jsonl
from tests.bench.procs import OWNER, bench_env, reconciler_argv, run
from tests.bench.sandbox import ExternalSandbox

THREADS = 8


def seed_owned(sandbox: ExternalSandbox, repo: BenchRepo, owner: str = OWNER) -> int:
    """One live batch per job of `repo`, as `apply` would create it; the state adopts them."""
    previous = os.environ.get(identity.OWNER_ENV)
    os.environ[identity.OWNER_ENV] = owner
    try:
        ws = prepare(resolve_paths(str(repo.root), None, None))
    finally:
        os.environ.pop(identity.OWNER_ENV)
        if previous is not None:
            os.environ[identity.OWNER_ENV] = previous
    tag = identity.owner_tag(owner)
    metadata = [
        {
            ownership.KEY_JOB: job.name,
            ownership.KEY_GENERATION: job.generation,
            ownership.KEY_OWNER: tag,
            ownership.KEY_ATTEMPT: uuid.uuid4().hex[:12],
            ownership.KEY_PART: "0",
            ownership.KEY_RETRY: "1",
            **job.metadata,
        }
        for job in ws.desired.values()
    ]
    create_batches(sandbox, metadata)
    env = bench_env({"RECONCILER_SANDBOX_URL": sandbox.base_url, identity.OWNER_ENV: owner})
    run(reconciler_argv("reconcile", *repo.args()), env=env, timeout=4 * 3600.0)  # 100,000 jobs: long
    return len(metadata)


def seed_foreign(sandbox: ExternalSandbox, count: int) -> None:
    """Batches that are not ours: half without metadata, half another owner's."""
    foreign = {ownership.KEY_JOB: "theirs", ownership.KEY_OWNER: "0" * 16}
    create_batches(sandbox, [foreign if i % 2 else None for i in range(count)])


def create_batches(sandbox: ExternalSandbox, metadata: Sequence[dict[str, str] | None]) -> None:
    with httpx.Client(base_url=sandbox.base_url, timeout=120) as client:
        lines = to_jsonl([chat_request(i, 1024) for i in range(3)])
        files = {"file": ("seed.jsonl", io.BytesIO(lines))}
        upload = client.post("/files", data={"purpose": "batch"}, files=files).json()

        def create(meta: dict[str, str] | None) -> None:
            body: dict[str, Any] = {
                "input_file_id": upload["id"],
                "endpoint": "/v1/chat/completions",
                "completion_window": "24h",
                "metadata": meta,
            }
            client.post("/batches", json=body).raise_for_status()

        with ThreadPoolExecutor(THREADS) as pool:
            list(pool.map(create, metadata))
