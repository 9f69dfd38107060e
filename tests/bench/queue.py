"""Item 15 (issue 22): 100 jobs through a batch queue that holds 10 at a time.

The daemon (`reconcile --watch`, its poll interval ten minutes) runs 100 equal jobs against an
external sandbox enforcing a queue limit of ten jobs' prompt tokens.  The sandbox sends its
`batch.completed` webhooks to the daemon's `POST /webhooks/openai`, as OpenAI would, so a batch
that finishes wakes the daemon at once (without them, only the queue's own estimate of when a
batch ends brings the next jobs in, a second or two late each round).  A sampler lists the
sandbox's batches every 0.1 s:

- queue utilisation: the prompt tokens of the unfinished batches over the limit, averaged over
  the samples from the first batch seen to the last one finished (target ≥ 90%);
- makespan: from the first batch seen to the last one finished, against the ideal of ten
  back-to-back rounds of one batch's duration (validation + its requests at the sandbox's rate
  + finalizing) (target within 10%);
- refusals: batches the sandbox refused (`token_limit_exceeded`): none expected.
"""

from __future__ import annotations

import json
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from tests.bench.context import Context
from tests.bench.procs import bench_env, reconciler_argv
from tests.bench.sandbox import external_sandbox
from tests.bench.table import Row, seconds

JOBS, FITS = 100, 10
REQUESTS = 10  # a job's requests
CHARS = 1_600  # a request of 407 prompt tokens (400 of text, 7 of the chat format)
JOB_TOKENS = REQUESTS * (CHARS // 4 + 7)
LIMIT = FITS * JOB_TOKENS + JOB_TOKENS // 100
VALIDATION, FINALIZING = 0.2, 0.0
UTILISATION_TARGET, MAKESPAN_TARGET = 0.90, 1.10
RUNNING = frozenset({"validating", "in_progress", "finalizing"})
SAMPLE_SECONDS = 0.1
# A fixed test secret (Standard Webhooks' whsec_ + base64), not a credential: the sandbox signs
# with it and the daemon's Provider verifies with it.
WEBHOOK_SECRET = "whsec_" + "cXVldWUtYmVuY2gtd2ViaG9vay1zZWNyZXQ="
SECRET_VARIABLE = "QUEUE_BENCH_WEBHOOK_SECRET"


def measure(ctx: Context) -> list[Row]:
    rate = 1.0 if ctx.scale.name == "quick" else 0.5  # requests a second: rounds of 10 s or 20 s
    duration = VALIDATION + REQUESTS / rate + FINALIZING
    repo = _repo(ctx.folder("queue"))
    knobs = {
        "validation_seconds": VALIDATION,
        "finalizing_seconds": FINALIZING,
        "requests_per_second": rate,
        "limits": json.dumps({"gpt-4o-mini": {"enqueued_tokens": LIMIT}}),
    }
    port = _free_port()
    with external_sandbox(ctx.folder("queue-sandbox"), **knobs) as sandbox:
        sandbox.configure(
            webhook_url=f"http://127.0.0.1:{port}/webhooks/openai", webhook_secret=WEBHOOK_SECRET
        )
        (repo / "specs" / "provider.yaml").write_text(_provider(sandbox.base_url), encoding="utf-8")
        sampler = Sampler(sandbox.base_url)
        watch = ("reconcile", "--watch", "--interval", "600", "--health-port", str(port))
        daemon = subprocess.Popen(
            reconciler_argv(*watch, "--repo", str(repo)),
            env=bench_env({SECRET_VARIABLE: WEBHOOK_SECRET}),
            stdout=subprocess.DEVNULL,
            stderr=(repo / "daemon.log").open("wb"),
        )
        try:
            sampler.run(deadline=time.monotonic() + 3 * FITS * duration + 120)
        finally:
            daemon.terminate()
            daemon.wait(timeout=30)
    makespan = sampler.ended - sampler.began
    ideal = JOBS / FITS * duration
    utilisation = sum(sampler.samples) / len(sampler.samples) if sampler.samples else 0.0
    done = f"{sampler.completed}/{JOBS} completed, {sampler.refused} refused"
    return [
        Row(
            "16",
            f"queue utilisation, {JOBS} jobs through a queue of {FITS} (admitted tokens / limit, mean)",
            f">= {UTILISATION_TARGET:.0%}",
            f"{utilisation:.1%}",
            utilisation >= UTILISATION_TARGET and sampler.completed == JOBS and not sampler.refused,
            done,
        ),
        Row(
            "16",
            f"makespan, {JOBS} jobs through a queue of {FITS}",
            f"<= {MAKESPAN_TARGET:.2f}x ideal ({seconds(ideal)})",
            f"{seconds(makespan)} ({makespan / ideal:.2f}x)",
            makespan <= MAKESPAN_TARGET * ideal and sampler.completed == JOBS,
            f"ideal: {JOBS // FITS} rounds of {seconds(duration)}",
        ),
    ]


class Sampler:
    """What the sandbox's queue holds, every SAMPLE_SECONDS, until every job has finished."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.samples: list[float] = []
        self.began = self.ended = 0.0
        self.completed = self.refused = 0

    def run(self, deadline: float) -> None:
        with httpx.Client(base_url=self.base_url, timeout=60) as http:
            while time.monotonic() < deadline:
                at = time.monotonic()
                listed = _all(http)
                running = sum(1 for b in listed if b["status"] in RUNNING)
                self.completed = sum(1 for b in listed if b["status"] == "completed")
                self.refused = sum(1 for b in listed if b["status"] == "failed")
                if listed and not self.began:
                    self.began = at
                if self.began:
                    self.samples.append(running * JOB_TOKENS / LIMIT)
                if self.completed == JOBS:
                    self.ended = at
                    return
                threading.Event().wait(max(SAMPLE_SECONDS - (time.monotonic() - at), 0.0))
        self.ended = time.monotonic()


def _all(http: httpx.Client) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    after = None
    while True:
        page = http.get("/batches", params={"limit": 100} | ({"after": after} if after else {})).json()
        found += page["data"]
        if not page["has_more"] or not page["data"]:
            return found
        after = page["data"][-1]["id"]


def _repo(root: Path) -> Path:
    (root / "specs").mkdir(parents=True)
    (root / "data").mkdir()
    text = ("Summarise the ticket. " * 100)[:CHARS]
    for index in range(JOBS):
        name = f"queued-{index:03d}"
        lines = [
            json.dumps(
                {
                    "custom_id": f"{name}-{i}",
                    "method": "POST",
                    "url": "/v1/chat/completions",
                    "body": {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": text}]},
                }
            )
            for i in range(REQUESTS)
        ]
        (root / "data" / f"{name}.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
        (root / "specs" / f"{name}.yaml").write_text(
            f"apiVersion: reconciler/v1\nkind: BatchJob\nmetadata: {{name: {name}}}\nspec:\n"
            f"  provider: queue\n  endpoint: /v1/chat/completions\n  input: ../data/{name}.jsonl\n",
            encoding="utf-8",
        )
    return root


def _free_port() -> int:
    with socket.create_server(("127.0.0.1", 0)) as server:
        port: int = server.getsockname()[1]
        return port


def _provider(base_url: str) -> str:
    return (
        "apiVersion: reconciler/v1\nkind: Provider\nmetadata: {name: queue}\nspec:\n"
        f"  base_url: {base_url}\n  webhook_secret: ${{{SECRET_VARIABLE}}}\n"
        f"  limits:\n    gpt-4o-mini: {{enqueued_tokens: {LIMIT}}}\n"
    )
